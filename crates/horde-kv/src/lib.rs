//! `OrderedKv`: an ordered, transactional key-value store with FoundationDB's semantics.
//!
//! Keys and values are bytes; keys sort bytewise. All work happens in transactions that see
//! one consistent snapshot (their *read version*), read their own writes, and commit
//! atomically or not at all. A read-write transaction whose reads were overwritten by a
//! transaction that committed after its read version fails with the retryable
//! [`KvError::NotCommitted`]; [`OrderedKv::transact`] runs a transaction body again on every
//! retryable error, so callers never write retry loops (and a body must be a pure function of
//! what it reads).
//!
//! Backends:
//! - [`sqlite::SqliteKv`]: the embedded default, one file, one process. Same data model,
//!   same limits and same error kinds as FoundationDB.
//! - `fdb::FdbKv` (cargo feature `fdb`): a FoundationDB 7.3 cluster.
//!
//! One conformance suite (`tests/conformance.rs`) runs against both.
//!
//! Keys are built with the FoundationDB tuple layer ([`tuple`], the `foundationdb-tuple`
//! crate), so keys written by one backend mean the same on the other. Versionstamped keys and
//! values use the tuple layer's encoding: the key (or value) carries a 10-byte placeholder and
//! ends with the placeholder's offset as a 4-byte little-endian integer
//! ([`tuple::pack_with_versionstamp`]); the store fills in the commit versionstamp.

mod error;
pub mod sqlite;
mod types;

#[cfg(feature = "fdb")]
pub mod fdb;

use std::future::Future;
use std::time::Duration;

pub use error::{KvError, TxError};
pub use foundationdb_tuple as tuple;
use futures::Stream;
pub use types::{
    CommitStamp, Committed, KeySelector, KeyValue, MAX_KEY_BYTES, MAX_TRANSACTION_BYTES,
    MAX_TRANSACTION_DURATION, MAX_VALUE_BYTES, RangeBatch, RangeOption, strinc,
};

/// How many times [`OrderedKv::transact`] runs a body before giving up on retryable errors.
pub const MAX_RETRIES: u32 = 100;
/// Backoff between retries: doubles from the first value up to the cap (FoundationDB's
/// `on_error` does the same).
const FIRST_BACKOFF: Duration = Duration::from_millis(2);
const MAX_BACKOFF: Duration = Duration::from_millis(500);

/// Whether an earlier attempt of this transaction may have committed: the previous commit
/// ended in [`KvError::CommitUnknownResult`]. Bodies that are not idempotent by construction
/// must check what they wrote before writing again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaybeCommitted(pub bool);

/// An ordered key-value store with FoundationDB's semantics.
pub trait OrderedKv: Send + Sync + 'static {
    type Tx: Transaction;

    /// Starts a transaction. Its read version is taken at the first read (or now).
    fn begin(&self) -> impl Future<Output = Result<Self::Tx, KvError>> + Send;

    /// Runs `body` in a transaction and commits it, retrying the whole body on retryable
    /// errors (conflicts, a transaction older than 5 s, an unknown commit result) with
    /// exponential backoff, at most [`MAX_RETRIES`] times.
    ///
    /// The body gets its own handle to the transaction; it must not keep it after it returns.
    fn transact<F, Fut, T, E>(
        &self,
        mut body: F,
    ) -> impl Future<Output = Result<(T, Committed), E>> + Send
    where
        F: FnMut(Self::Tx, MaybeCommitted) -> Fut + Send,
        Fut: Future<Output = Result<T, E>> + Send,
        T: Send,
        E: TxError + Send,
    {
        async move {
            let mut maybe_committed = false;
            let mut backoff = FIRST_BACKOFF;
            let mut attempt = 0u32;
            loop {
                attempt += 1;
                let result: Result<(T, Committed), E> = async {
                    let tx = self.begin().await?;
                    let value = body(tx.clone(), MaybeCommitted(maybe_committed)).await?;
                    let committed = tx.commit().await?;
                    Ok((value, committed))
                }
                .await;
                let err = match result {
                    Ok(done) => return Ok(done),
                    Err(e) => e,
                };
                let retry = match err.as_kv() {
                    Some(kv) if kv.is_retryable() => {
                        maybe_committed |= kv.is_maybe_committed();
                        true
                    }
                    _ => false,
                };
                if !retry {
                    return Err(err);
                }
                if attempt >= MAX_RETRIES {
                    tracing::warn!(attempt, error = %err.as_kv().map(ToString::to_string).unwrap_or_default(), "transaction gave up");
                    return Err(E::from(KvError::TooManyRetries { attempts: attempt }));
                }
                tracing::debug!(attempt, "transaction retried");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// One transaction. Handles are cheap clones of one transaction; [`Transaction::commit`]
/// needs every other clone to be dropped.
///
/// Writes are buffered and never fail on the spot: an invalid write (a key over 10,000
/// bytes, a key in the system range `\xff…`, a bad versionstamp offset) makes the commit fail
/// with its error, and nothing of the transaction is written.
pub trait Transaction: Clone + Send + Sync + 'static {
    /// The version this transaction reads at.
    fn read_version(&self) -> impl Future<Output = Result<u64, KvError>> + Send;

    /// The value of `key`, seeing this transaction's own writes. `snapshot` reads add no read
    /// conflict.
    fn get(
        &self,
        key: &[u8],
        snapshot: bool,
    ) -> impl Future<Output = Result<Option<Vec<u8>>, KvError>> + Send;

    /// One batch of the range `[begin, end)` as the selectors resolve, in order (reverse:
    /// descending), at most `limit` pairs. `more` says whether the range goes on; use
    /// [`Transaction::get_ranges`] to stream the whole range.
    fn get_range(
        &self,
        range: &RangeOption,
        snapshot: bool,
    ) -> impl Future<Output = Result<RangeBatch, KvError>> + Send;

    fn set(&self, key: &[u8], value: &[u8]);
    fn clear(&self, key: &[u8]);
    /// Clears `[begin, end)`.
    fn clear_range(&self, begin: &[u8], end: &[u8]);
    /// Adds `param` to the value as little-endian integers of `param`'s width (a missing value
    /// is zero; the result is as wide as `param`, wrapping on overflow). Adds no read
    /// conflict: concurrent adds never conflict.
    fn atomic_add(&self, key: &[u8], param: &[u8]);
    /// Sets a key that contains the commit versionstamp: `key` is in the tuple layer's
    /// incomplete-versionstamp form (placeholder + 4-byte little-endian offset at the end).
    /// The key is not readable in this transaction.
    fn set_versionstamped_key(&self, key: &[u8], value: &[u8]);
    /// Sets a value that contains the commit versionstamp (same form as above, in the value).
    /// Reading the key in this transaction fails with [`KvError::AccessedUnreadable`].
    fn set_versionstamped_value(&self, key: &[u8], value: &[u8]);

    /// Commits. Returns the commit version and, for a transaction that wrote, its 10-byte
    /// versionstamp (commit version + order within the commit batch).
    fn commit(self) -> impl Future<Output = Result<Committed, KvError>> + Send;

    /// The whole of a range, streamed in batches (the range's `limit` caps the total).
    fn get_ranges(
        &self,
        range: RangeOption,
        snapshot: bool,
    ) -> impl Stream<Item = Result<Vec<KeyValue>, KvError>> + Send {
        let tx = self.clone();
        futures::stream::try_unfold(Some(range), move |next| {
            let tx = tx.clone();
            async move {
                let Some(range) = next else { return Ok(None) };
                let batch = tx.get_range(&range, snapshot).await?;
                let next = range.next_range(&batch);
                if batch.kvs.is_empty() && next.is_none() {
                    return Ok(None);
                }
                Ok(Some((batch.kvs, next)))
            }
        })
    }

    /// Every pair of a range in one vector (for ranges known to be small).
    fn get_all(
        &self,
        range: RangeOption,
        snapshot: bool,
    ) -> impl Future<Output = Result<Vec<KeyValue>, KvError>> + Send {
        use futures::TryStreamExt;
        let stream = self.get_ranges(range, snapshot);
        async move {
            let batches: Vec<Vec<KeyValue>> = stream.try_collect().await?;
            Ok(batches.into_iter().flatten().collect())
        }
    }
}
