//! Content-addressed blobs: bytes named by their SHA-256, on the local filesystem (`fs:DIR`)
//! or in an S3 bucket (`s3://BUCKET/prefix`). The cloud's `PUT/HEAD/GET /v1/blobs/{sha256}`
//! API stores through [`BlobStore`]; nothing else here knows about HTTP or tenants.
//!
//! Invariants, the same on every backend (checked by `tests/conformance.rs`):
//! - **Verified before visible.** A blob becomes readable under its hash only after the whole
//!   upload hashed to that name. A hash mismatch, a body over `max_size` or a body that fails
//!   mid-way leaves nothing behind: no object, no temporary file, no open multipart upload.
//! - **Streamed.** `put` hashes as the body arrives and stops as soon as it passes `max_size`;
//!   `get` streams. Memory per upload is bounded (S3: one 8 MiB part buffer).
//! - **Immutable.** A blob that exists is never rewritten: `put` of an existing hash answers
//!   `created: false` without reading the body.
//! - **Namespaces are disjoint.** Every call names a namespace (the cloud passes the tenant id);
//!   nothing stored in one is visible from another. Namespaces are 1–64 chars of `[a-z0-9-]`,
//!   so they can never form a path or key that escapes their place.
//!
//! Start at [`BlobStore`]; the backends are `fs.rs` and `s3.rs`. With the `testing` feature,
//! `testing::S3sServer` starts a local S3-compatible server (`s3s-fs`) for tests.

use std::pin::Pin;

use bytes::Bytes;
use futures::Stream;
use horde_core::BlobHasher;

pub use horde_core::BlobHash;

mod fs;
mod s3;
#[cfg(feature = "testing")]
pub mod testing;

pub use fs::FsBlobs;
pub use s3::S3Blobs;

/// A body being uploaded or downloaded, in pieces. An `Err` item ends it (for an upload: the
/// client went away); the upload then fails with [`BlobError::Io`] and stores nothing.
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, std::io::Error>> + Send>>;

/// Longest namespace accepted (a hyphenated UUID is 36).
pub const MAX_NAMESPACE_LEN: usize = 64;

/// Where an `s3://` store connects and with which credentials. `None` fields fall back to the
/// AWS SDK's usual environment/profile chain (`AWS_REGION`, `AWS_ACCESS_KEY_ID`,
/// `AWS_ENDPOINT_URL`, `~/.aws/config`, instance roles, …).
#[derive(Debug, Clone, Default)]
pub struct S3Config {
    /// e.g. `http://127.0.0.1:9000` for an S3-compatible server.
    pub endpoint: Option<String>,
    /// When neither this nor the SDK chain names a region, `us-east-1`.
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    /// Path-style addressing (`endpoint/bucket/key`), which most S3-compatible servers need.
    pub path_style: bool,
}

/// A blob store. Cloning is cheap (the backends hold an `Arc`).
#[derive(Clone, Debug)]
pub enum BlobStore {
    Fs(FsBlobs),
    S3(S3Blobs),
}

/// What `put` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PutOutcome {
    /// Size of the stored blob in bytes.
    pub size: u64,
    /// `false` when the blob already existed: nothing was rewritten.
    pub created: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// The upload's content does not hash to the name it was sent under; nothing was stored.
    #[error("blob content hashes to {actual} but was uploaded as {expected}; nothing was stored")]
    HashMismatch {
        expected: BlobHash,
        actual: BlobHash,
    },
    /// The upload passed `max_size`; nothing was stored.
    #[error("blob is larger than the limit of {limit} bytes; nothing was stored")]
    TooLarge { limit: u64 },
    #[error(
        "invalid blob namespace {0:?}: expected 1-{MAX_NAMESPACE_LEN} characters of a-z, 0-9 and '-'"
    )]
    BadNamespace(String),
    /// The store location (or its S3 settings) cannot be used.
    #[error("invalid blob store location: {0}")]
    BadLocation(String),
    /// A local filesystem error, or the body stream failed (e.g. the client disconnected).
    #[error("blob i/o: {0}")]
    Io(#[from] std::io::Error),
    /// An S3 request failed; the message names the request and the key.
    #[error("blob backend: {0}")]
    Backend(String),
}

impl BlobStore {
    /// Opens `fs:DIR` (the directory is created if missing) or `s3://BUCKET` /
    /// `s3://BUCKET/key/prefix`. Opening S3 does not contact it; see [`BlobStore::ready`].
    pub async fn open(location: &str, s3: &S3Config) -> Result<BlobStore, BlobError> {
        match parse_location(location)? {
            Location::Fs(dir) => Ok(BlobStore::Fs(FsBlobs::open(dir).await?)),
            Location::S3 { bucket, prefix } => {
                Ok(BlobStore::S3(S3Blobs::open(bucket, prefix, s3).await?))
            }
        }
    }

    /// `fs:/abs/path` or `s3://bucket/prefix`, for logs (never credentials).
    pub fn describe(&self) -> String {
        match self {
            BlobStore::Fs(b) => b.describe(),
            BlobStore::S3(b) => b.describe(),
        }
    }

    /// Whether the store can take writes now: the directory is writable, or the bucket answers
    /// HeadBucket. For `/readyz`.
    pub async fn ready(&self) -> Result<(), BlobError> {
        match self {
            BlobStore::Fs(b) => b.ready().await,
            BlobStore::S3(b) => b.ready().await,
        }
    }

    /// The size of the blob, if `ns` holds it.
    pub async fn head(&self, ns: &str, hash: &BlobHash) -> Result<Option<u64>, BlobError> {
        check_namespace(ns)?;
        match self {
            BlobStore::Fs(b) => b.head(ns, hash).await,
            BlobStore::S3(b) => b.head(ns, hash).await,
        }
    }

    /// Stores `body` as blob `hash` in `ns`, verifying as it streams that it hashes to `hash`
    /// and is at most `max_size` bytes. If the blob already exists the body is not read.
    pub async fn put(
        &self,
        ns: &str,
        hash: &BlobHash,
        body: ByteStream,
        max_size: u64,
    ) -> Result<PutOutcome, BlobError> {
        check_namespace(ns)?;
        let outcome = match self {
            BlobStore::Fs(b) => b.put(ns, hash, body, max_size).await,
            BlobStore::S3(b) => b.put(ns, hash, body, max_size).await,
        };
        match &outcome {
            Ok(o) => {
                tracing::debug!(ns, blob = %hash.short(), size = o.size, created = o.created, "blob put")
            }
            Err(e) => tracing::debug!(ns, blob = %hash.short(), error = %e, "blob put failed"),
        }
        outcome
    }

    /// The blob's size and its content, streamed, if `ns` holds it.
    pub async fn get(
        &self,
        ns: &str,
        hash: &BlobHash,
    ) -> Result<Option<(u64, ByteStream)>, BlobError> {
        check_namespace(ns)?;
        match self {
            BlobStore::Fs(b) => b.get(ns, hash).await,
            BlobStore::S3(b) => b.get(ns, hash).await,
        }
    }
}

fn check_namespace(ns: &str) -> Result<(), BlobError> {
    let ok = !ns.is_empty()
        && ns.len() <= MAX_NAMESPACE_LEN
        && ns
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(BlobError::BadNamespace(ns.to_owned()))
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Location {
    Fs(String),
    S3 {
        bucket: String,
        prefix: Option<String>,
    },
}

fn parse_location(location: &str) -> Result<Location, BlobError> {
    let bad = |why: &str| BlobError::BadLocation(format!("{location:?}: {why}"));
    if let Some(dir) = location.strip_prefix("fs:") {
        if dir.is_empty() {
            return Err(bad("expected fs:DIR, the directory is missing"));
        }
        return Ok(Location::Fs(dir.to_owned()));
    }
    if let Some(rest) = location.strip_prefix("s3://") {
        let (bucket, prefix) = match rest.split_once('/') {
            Some((b, p)) => (b, p.trim_end_matches('/')),
            None => (rest, ""),
        };
        // AWS's rules for new buckets, which S3-compatible servers accept too.
        let bucket_ok = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
            && !bucket.starts_with(['-', '.'])
            && !bucket.ends_with(['-', '.']);
        if !bucket_ok {
            return Err(bad(
                "expected s3://BUCKET[/prefix], BUCKET 3-63 characters of a-z, 0-9, '-' and '.'",
            ));
        }
        if !prefix.is_empty()
            && prefix
                .split('/')
                .any(|p| p.is_empty() || p == "." || p == "..")
        {
            return Err(bad(
                "the key prefix has an empty, '.' or '..' part (or starts with '/')",
            ));
        }
        return Ok(Location::S3 {
            bucket: bucket.to_owned(),
            prefix: (!prefix.is_empty()).then(|| prefix.to_owned()),
        });
    }
    Err(bad("expected fs:DIR or s3://BUCKET[/prefix]"))
}

/// Counts and hashes an upload as it arrives; the one place `max_size` and the name are
/// enforced, for every backend.
struct Intake {
    hasher: BlobHasher,
    size: u64,
    limit: u64,
}

impl Intake {
    fn new(limit: u64) -> Self {
        Self {
            hasher: BlobHasher::new(),
            size: 0,
            limit,
        }
    }

    /// Takes the next piece; `TooLarge` as soon as the total passes the limit.
    fn take(&mut self, chunk: &[u8]) -> Result<(), BlobError> {
        self.size = self.size.saturating_add(chunk.len() as u64);
        if self.size > self.limit {
            return Err(BlobError::TooLarge { limit: self.limit });
        }
        self.hasher.update(chunk);
        Ok(())
    }

    /// The size, if everything taken hashes to `expected`.
    fn finish(self, expected: &BlobHash) -> Result<u64, BlobError> {
        assert!(self.size <= self.limit, "take() enforces the limit");
        let actual = self.hasher.finish();
        if actual != *expected {
            return Err(BlobError::HashMismatch {
                expected: *expected,
                actual,
            });
        }
        Ok(self.size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces() {
        for ok in ["a", "0190f3c2-7a1b-7c3d-8e4f-a1b2c3d4e5f6", &"x".repeat(64)] {
            assert!(check_namespace(ok).is_ok(), "{ok:?}");
        }
        for bad in [
            "",
            "../x",
            "A",
            "a/b",
            "a_b",
            "a.b",
            "a b",
            "é",
            &"x".repeat(65),
        ] {
            assert!(
                matches!(check_namespace(bad), Err(BlobError::BadNamespace(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn locations() {
        assert_eq!(
            parse_location("fs:/var/blobs").expect("fs"),
            Location::Fs("/var/blobs".into())
        );
        assert_eq!(
            parse_location("s3://my-bucket").expect("s3"),
            Location::S3 {
                bucket: "my-bucket".into(),
                prefix: None
            }
        );
        assert_eq!(
            parse_location("s3://my.bucket/a/b/").expect("s3 prefix"),
            Location::S3 {
                bucket: "my.bucket".into(),
                prefix: Some("a/b".into())
            }
        );
        for bad in [
            "",
            "fs:",
            "ftp://x",
            "s3://",
            "s3:///x",
            "s3://ab",
            "s3://Bucket",
            "s3://b_b/x",
            "s3://bucket//x",
            "s3://bucket/a/../b",
            "s3://-bucket",
            "/tmp/x",
            "S3://bucket",
        ] {
            assert!(
                matches!(parse_location(bad), Err(BlobError::BadLocation(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn intake_limit_is_inclusive_and_hash_checked() {
        let data = b"hello world";
        let mut at_limit = Intake::new(data.len() as u64);
        at_limit.take(&data[..5]).expect("under");
        at_limit.take(&data[5..]).expect("at the limit");
        assert_eq!(
            at_limit.finish(&BlobHash::of(data)).expect("hash"),
            data.len() as u64
        );

        let mut over = Intake::new(data.len() as u64 - 1);
        assert!(matches!(
            over.take(data),
            Err(BlobError::TooLarge { limit: 10 })
        ));

        let mut wrong = Intake::new(100);
        wrong.take(data).expect("under");
        match wrong.finish(&BlobHash::of(b"other")) {
            Err(BlobError::HashMismatch { expected, actual }) => {
                assert_eq!(expected, BlobHash::of(b"other"));
                assert_eq!(actual, BlobHash::of(data));
            }
            other => panic!("expected a mismatch, got {other:?}"),
        }
    }
}
