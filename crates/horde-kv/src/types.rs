//! Selectors, ranges, results and FoundationDB's limits.

use std::time::Duration;

use foundationdb_tuple::Versionstamp;

/// Largest key (FoundationDB: 10,000 bytes).
pub const MAX_KEY_BYTES: usize = 10_000;
/// Largest value (FoundationDB: 100,000 bytes).
pub const MAX_VALUE_BYTES: usize = 100_000;
/// Largest transaction: keys and values written plus conflict ranges (FoundationDB:
/// 10,000,000 bytes).
pub const MAX_TRANSACTION_BYTES: usize = 10_000_000;
/// Longest transaction, from its read version to its commit (FoundationDB: 5 s).
pub const MAX_TRANSACTION_DURATION: Duration = Duration::from_secs(5);

/// A key selector: "the `offset`-th key after the last key `< key`" (`<= key` if
/// `or_equal`). The four usual ones have constructors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySelector {
    pub key: Vec<u8>,
    pub or_equal: bool,
    pub offset: i32,
}

impl KeySelector {
    pub fn first_greater_or_equal(key: impl Into<Vec<u8>>) -> Self {
        KeySelector {
            key: key.into(),
            or_equal: false,
            offset: 1,
        }
    }
    pub fn first_greater_than(key: impl Into<Vec<u8>>) -> Self {
        KeySelector {
            key: key.into(),
            or_equal: true,
            offset: 1,
        }
    }
    pub fn last_less_or_equal(key: impl Into<Vec<u8>>) -> Self {
        KeySelector {
            key: key.into(),
            or_equal: true,
            offset: 0,
        }
    }
    pub fn last_less_than(key: impl Into<Vec<u8>>) -> Self {
        KeySelector {
            key: key.into(),
            or_equal: false,
            offset: 0,
        }
    }
    /// The same selector moved by `by` keys.
    pub fn moved(mut self, by: i32) -> Self {
        self.offset += by;
        self
    }
}

/// A range read: `[begin, end)` as the selectors resolve, at most `limit` pairs (`None`: no
/// limit), descending if `reverse`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeOption {
    pub begin: KeySelector,
    pub end: KeySelector,
    pub limit: Option<usize>,
    pub reverse: bool,
}

impl RangeOption {
    /// Every key in `[begin, end)`.
    pub fn new(begin: impl Into<Vec<u8>>, end: impl Into<Vec<u8>>) -> Self {
        RangeOption {
            begin: KeySelector::first_greater_or_equal(begin),
            end: KeySelector::first_greater_or_equal(end),
            limit: None,
            reverse: false,
        }
    }
    /// Every key that starts with `prefix`.
    pub fn prefix(prefix: &[u8]) -> Self {
        RangeOption::new(prefix.to_vec(), strinc(prefix))
    }
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = Some(limit);
        self
    }
    pub fn reverse(mut self) -> Self {
        self.reverse = true;
        self
    }

    /// The rest of the range after `batch` was read, or `None` if it is done.
    pub fn next_range(&self, batch: &RangeBatch) -> Option<RangeOption> {
        if !batch.more {
            return None;
        }
        let last = batch.kvs.last()?;
        let mut next = self.clone();
        if let Some(limit) = next.limit {
            let left = limit.saturating_sub(batch.kvs.len());
            if left == 0 {
                return None;
            }
            next.limit = Some(left);
        }
        if self.reverse {
            next.end = KeySelector::first_greater_or_equal(last.key.clone());
        } else {
            next.begin = KeySelector::first_greater_than(last.key.clone());
        }
        Some(next)
    }
}

/// The first key after every key that starts with `prefix` (FoundationDB's `strinc`): drop
/// trailing `0xff` bytes and add one to the last byte. A prefix of only `0xff` bytes (or an
/// empty one) has no such key; `\xff` (the end of the user key space) is returned.
pub fn strinc(prefix: &[u8]) -> Vec<u8> {
    let mut out = prefix.to_vec();
    while let Some(&last) = out.last() {
        if last == 0xff {
            out.pop();
        } else {
            *out.last_mut().expect("not empty") += 1;
            return out;
        }
    }
    vec![0xff]
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
}

/// One batch of a range read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RangeBatch {
    pub kvs: Vec<KeyValue>,
    /// The range has more pairs after this batch (within its limit).
    pub more: bool,
}

/// A commit versionstamp: the 8-byte big-endian commit version and the 2-byte big-endian
/// order of the transaction within its commit batch. Versionstamps of later commits sort
/// after earlier ones, as bytes and as tuples.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CommitStamp(pub [u8; 10]);

impl CommitStamp {
    pub fn new(version: u64, order: u16) -> Self {
        let mut b = [0u8; 10];
        b[..8].copy_from_slice(&version.to_be_bytes());
        b[8..].copy_from_slice(&order.to_be_bytes());
        CommitStamp(b)
    }
    pub fn version(&self) -> u64 {
        u64::from_be_bytes(self.0[..8].try_into().expect("8 bytes"))
    }
    pub fn order(&self) -> u16 {
        u16::from_be_bytes(self.0[8..].try_into().expect("2 bytes"))
    }
    /// The complete tuple-layer versionstamp of the `user_version`-th key written with this
    /// commit.
    pub fn with_user_version(&self, user_version: u16) -> Versionstamp {
        Versionstamp::complete(self.0, user_version)
    }
}

/// What a commit returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Committed {
    /// The commit version; for a read-only transaction, its read version.
    pub version: u64,
    /// The commit versionstamp; `None` for a read-only transaction.
    pub versionstamp: Option<CommitStamp>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strinc_skips_trailing_ff() {
        assert_eq!(strinc(b"ab"), b"ac");
        assert_eq!(strinc(b"a\xff\xff"), b"b");
        assert_eq!(strinc(b"\xff"), b"\xff");
        assert_eq!(strinc(b""), b"\xff");
    }

    #[test]
    fn stamps_sort_by_version_then_order() {
        let a = CommitStamp::new(5, 9);
        let b = CommitStamp::new(6, 0);
        assert!(a < b && a.0 < b.0);
        assert_eq!((b.version(), b.order()), (6, 0));
    }
}
