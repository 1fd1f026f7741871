//! The FoundationDB backend: [`FdbKv`] runs [`OrderedKv`] on a FoundationDB 7.3 cluster
//! through the `foundationdb` crate (cargo feature `fdb`). It owns the process's
//! FoundationDB client network (started once, on the first [`FdbKv::open`], and kept until the
//! process exits), one `Database` handle per [`FdbKv`], and the translation between this
//! crate's model and FoundationDB's: selectors and ranges, error codes ([`KvError`]),
//! versionstamps, and the retry loop ([`OrderedKv::transact`] uses FoundationDB's `on_error`,
//! so retries get FoundationDB's backoff).
//!
//! Building with the feature needs libclang (bindings are generated from the bundled 7.3
//! headers); linking and running need the FoundationDB client library `libfdb_c` 7.3 or newer,
//! since the client selects API version 730. The cluster file is the one given to
//! [`FdbKv::open`]; with `None`, FoundationDB's own default applies: the `FDB_CLUSTER_FILE`
//! environment variable, else `fdb.cluster` in the working directory, else the system file
//! (`/etc/foundationdb/fdb.cluster` on Linux).
//!
//! Writes are checked when they are made, as [`crate::sqlite`] checks them (key and value
//! sizes, keys below `\xff`, versionstamp offsets): an invalid write is not sent to
//! FoundationDB, later reads still work, and the commit fails with the first invalid write's
//! error, with its real size. Versionstamped keys and values are measured as FoundationDB
//! measures them: with their 4-byte offset.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use foundationdb::api::{FdbApiBuilder, NetworkAutoStop};
use foundationdb::options::{MutationType, StreamingMode};
use foundationdb::{Database, FdbError, TransactionCommitError};

use crate::{
    CommitStamp, Committed, KeySelector, KeyValue, KvError, MAX_KEY_BYTES, MAX_RETRIES,
    MAX_VALUE_BYTES, MaybeCommitted, OrderedKv, RangeBatch, RangeOption, Transaction, TxError,
};

/// The end of the user key space.
const KEYSPACE_END: &[u8] = b"\xff";
/// FoundationDB's `internal_error`, for answers the client library should never give.
const INTERNAL_ERROR: i32 = 4100;

/// The client network: started by the first [`FdbKv::open`], never stopped. An `Err` is kept
/// too: FoundationDB's API version can be selected only once per process, so a failed start
/// cannot be retried.
static NETWORK: OnceLock<Result<NetworkAutoStop, KvError>> = OnceLock::new();

fn start_network() -> Result<(), KvError> {
    let started = NETWORK.get_or_init(|| {
        // `build` panics if the API version was already selected in this process; this
        // closure is the only place that selects it, and `get_or_init` runs it at most once.
        let builder = FdbApiBuilder::default().build().map_err(|e| {
            fdb_error(
                "select FoundationDB API version 730 (libfdb_c must be 7.3 or newer)",
                e,
            )
        })?;
        #[allow(unsafe_code)]
        // SAFETY: `boot` starts FoundationDB's network thread. Its contract has two parts.
        // (1) At most once per process: this closure runs at most once (`OnceLock::get_or_init`,
        //     also under concurrent `open`s), and `FdbApiBuilder::build` above has already
        //     claimed the process's one API-version selection. Nothing else in the process
        //     boots FoundationDB.
        // (2) The returned guard stops the network when dropped, and must be dropped before the
        //     process exits. We store it in the static `NETWORK`, so it is never dropped: the
        //     network thread outlives every `Database`, transaction and future created through
        //     it, and none of them can ever wait on a stopped network (the hazard of dropping the
        //     guard early, e.g. while another `FdbKv` is still in use). The part we knowingly do
        //     not meet is "stop before exit": the process exits with the network thread still
        //     running. At worst that thread races libfdb_c's exit-time destructors, i.e. the
        //     process can crash while exiting, after `main` is done; that is a client crash,
        //     which FoundationDB's transactions are built to survive (a commit in flight either
        //     happened or did not), not memory unsafety this program can observe while it runs.
        let guard = unsafe { builder.boot() }
            .map_err(|e| fdb_error("start the FoundationDB client network", e))?;
        tracing::info!("FoundationDB client network started (API version 730)");
        Ok(guard)
    });
    match started {
        Ok(_) => Ok(()),
        Err(e) => Err(e.clone()),
    }
}

/// A FoundationDB error from setting up the client, with what was being done.
fn fdb_error(what: &str, e: FdbError) -> KvError {
    KvError::Fdb {
        code: e.code(),
        message: format!("{what}: {}", e.message()),
        retryable: false,
        maybe_committed: false,
    }
}

/// FoundationDB's error as a [`KvError`]. Sizes FoundationDB does not report are 0.
fn kv_error(e: FdbError) -> KvError {
    match e.code() {
        2102 => KvError::KeyTooLarge { size: 0 },
        2103 => KvError::ValueTooLarge { size: 0 },
        2101 => KvError::TransactionTooLarge { size: 0 },
        1007 => KvError::TransactionTooOld,
        1020 => KvError::NotCommitted,
        1021 => KvError::CommitUnknownResult,
        1036 => KvError::AccessedUnreadable,
        2004 => KvError::KeyOutsideLegalRange,
        2017 => KvError::UsedDuringCommit,
        2000 => KvError::InvalidOperation {
            what: e.message().to_string(),
        },
        code => KvError::Fdb {
            code,
            message: e.message().to_string(),
            retryable: e.is_retryable(),
            maybe_committed: e.is_maybe_committed(),
        },
    }
}

fn internal(message: String) -> KvError {
    KvError::Fdb {
        code: INTERNAL_ERROR,
        message,
        retryable: false,
        maybe_committed: false,
    }
}

fn to_version(v: i64) -> Result<u64, KvError> {
    u64::try_from(v).map_err(|_| {
        internal(format!(
            "FoundationDB answered with the negative version {v}"
        ))
    })
}

/// A FoundationDB cluster. Cheap to clone; clones share one `Database` handle.
#[derive(Clone)]
pub struct FdbKv {
    db: Arc<Database>,
    cluster_file: Option<PathBuf>,
}

impl std::fmt::Debug for FdbKv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FdbKv")
            .field("cluster_file", &self.cluster_file)
            .finish_non_exhaustive()
    }
}

impl FdbKv {
    /// Opens the cluster that `cluster_file` describes (`None`: FoundationDB's default cluster
    /// file, see the module docs). Starts the client network on first use. Does not contact
    /// the cluster: an unreachable cluster shows as transactions that wait.
    pub fn open(cluster_file: Option<&Path>) -> Result<FdbKv, KvError> {
        start_network()?;
        let path = match cluster_file {
            None => None,
            Some(p) => match p.to_str() {
                Some(s) if !s.contains('\0') => Some(s),
                _ => {
                    return Err(KvError::InvalidOperation {
                        what: format!(
                            "cluster file path {} is not valid UTF-8 without NUL bytes",
                            p.display()
                        ),
                    });
                }
            },
        };
        let what = match path {
            Some(p) => format!("open the FoundationDB cluster file {p}"),
            None => "open the default FoundationDB cluster file".to_string(),
        };
        let db = Database::new(path).map_err(|e| fdb_error(&what, e))?;
        tracing::debug!(
            cluster_file = path.unwrap_or("(default)"),
            "FoundationDB database opened"
        );
        Ok(FdbKv {
            db: Arc::new(db),
            cluster_file: cluster_file.map(Path::to_path_buf),
        })
    }

    fn create_trx(&self) -> Result<foundationdb::Transaction, KvError> {
        self.db.create_trx().map_err(kv_error)
    }
}

impl OrderedKv for FdbKv {
    type Tx = FdbTx;

    async fn begin(&self) -> Result<FdbTx, KvError> {
        Ok(FdbTx::new(self.create_trx()?))
    }

    /// As the trait's default (same retries, [`MaybeCommitted`], [`MAX_RETRIES`]), but a
    /// retry goes through FoundationDB's `on_error`: FoundationDB's backoff (with jitter, and
    /// longer for throttling), on the same transaction object, reset.
    async fn transact<F, Fut, T, E>(&self, mut body: F) -> Result<(T, Committed), E>
    where
        F: FnMut(FdbTx, MaybeCommitted) -> Fut + Send,
        Fut: Future<Output = Result<T, E>> + Send,
        T: Send,
        E: TxError + Send,
    {
        let mut maybe_committed = false;
        let mut tx = self.create_trx()?;
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let handle = FdbTx::new(tx);
            let (err, reusable) = match body(handle.clone(), MaybeCommitted(maybe_committed)).await
            {
                Ok(value) => {
                    let Ok(inner) = Arc::try_unwrap(handle.inner) else {
                        return Err(E::from(KvError::UsedDuringCommit));
                    };
                    match inner.commit().await {
                        Ok(committed) => return Ok((value, committed)),
                        Err(failed) => (E::from(failed.error), failed.reusable),
                    }
                }
                // The body should have dropped its handle; if it kept one, retry on a new
                // transaction and leave that one to it.
                Err(e) => (
                    e,
                    Arc::try_unwrap(handle.inner)
                        .ok()
                        .map(|inner| Reusable::Open(inner.tx)),
                ),
            };
            let code = match err.as_kv() {
                Some(kv) if kv.is_retryable() => {
                    maybe_committed |= kv.is_maybe_committed();
                    if attempt >= MAX_RETRIES {
                        tracing::warn!(attempt, error = %kv, "transaction gave up");
                        return Err(E::from(KvError::TooManyRetries { attempts: attempt }));
                    }
                    kv.code()
                }
                _ => return Err(err),
            };
            tracing::debug!(attempt, code, "transaction retried");
            let reusable = match reusable {
                Some(r) => r,
                None => Reusable::Open(self.create_trx()?),
            };
            // `on_error` waits out the backoff and resets the transaction, or gives the error
            // back if FoundationDB does not retry it.
            tx = reusable
                .on_error(code)
                .await
                .map_err(|e| E::from(kv_error(e)))?;
        }
    }
}

/// A transaction on [`FdbKv`]. Clones are handles to one FoundationDB transaction.
#[derive(Clone)]
pub struct FdbTx {
    inner: Arc<TxInner>,
}

impl std::fmt::Debug for FdbTx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FdbTx")
            .field("wrote", &self.inner.wrote.load(Ordering::Relaxed))
            .field("invalid_write", &self.inner.invalid.get())
            .finish_non_exhaustive()
    }
}

struct TxInner {
    tx: foundationdb::Transaction,
    /// A write was sent to FoundationDB: the commit has a commit version and a versionstamp.
    wrote: AtomicBool,
    /// The first invalid write; the commit fails with it.
    invalid: OnceLock<KvError>,
}

/// A commit that failed, with what [`FdbKv::transact`] needs to retry it.
struct Failed {
    error: KvError,
    reusable: Option<Reusable>,
}

/// A transaction FoundationDB's `on_error` can reset for a retry.
enum Reusable {
    Open(foundationdb::Transaction),
    CommitFailed(TransactionCommitError),
}

impl Reusable {
    async fn on_error(self, code: i32) -> Result<foundationdb::Transaction, FdbError> {
        match self {
            Reusable::Open(tx) => tx.on_error(FdbError::from_code(code)).await,
            Reusable::CommitFailed(e) => e.on_error().await,
        }
    }
}

impl TxInner {
    async fn commit(self) -> Result<Committed, Failed> {
        let TxInner { tx, wrote, invalid } = self;
        if let Some(error) = invalid.into_inner() {
            return Err(Failed {
                error,
                reusable: None,
            });
        }
        if !wrote.into_inner() {
            // Nothing to commit: FoundationDB would answer at once, without a commit version.
            return match tx.get_read_version().await {
                Ok(v) => match to_version(v) {
                    Ok(version) => Ok(Committed {
                        version,
                        versionstamp: None,
                    }),
                    Err(error) => Err(Failed {
                        error,
                        reusable: None,
                    }),
                },
                Err(e) => Err(Failed {
                    error: kv_error(e),
                    reusable: Some(Reusable::Open(tx)),
                }),
            };
        }
        // Both must be asked for before the commit starts (afterwards they fail with
        // used_during_commit); the versionstamp is ready once the commit succeeded.
        let stamp = tx.get_versionstamp();
        let size = tx.get_approximate_size();
        let committed = match tx.commit().await {
            Ok(committed) => committed,
            Err(e) => {
                let mut error = kv_error(*e);
                if let KvError::TransactionTooLarge { size: s } = &mut error {
                    *s = size
                        .await
                        .ok()
                        .and_then(|n| usize::try_from(n).ok())
                        .unwrap_or(0);
                }
                tracing::debug!(code = e.code(), %error, "commit failed");
                return Err(Failed {
                    error,
                    reusable: Some(Reusable::CommitFailed(e)),
                });
            }
        };
        // The commit happened: errors from here on must not be retried.
        let done = |message: String| Failed {
            error: KvError::Fdb {
                code: INTERNAL_ERROR,
                message,
                retryable: false,
                maybe_committed: true,
            },
            reusable: None,
        };
        let stamp = stamp.await.map_err(|e| {
            done(format!(
                "committed, but the versionstamp is unavailable: {} ({})",
                e.message(),
                e.code()
            ))
        })?;
        let stamp = CommitStamp(<[u8; 10]>::try_from(&stamp[..]).map_err(|_| {
            done(format!(
                "committed, but the versionstamp has {} bytes, not 10",
                stamp.len()
            ))
        })?);
        let version = committed.committed_version().map_err(|e| {
            done(format!(
                "committed, but the commit version is unavailable: {}",
                e.message()
            ))
        })?;
        // The commit version is the versionstamp's first 8 bytes; a negative one (a read-only
        // commit) cannot come with a versionstamp.
        let version = u64::try_from(version).unwrap_or_else(|_| stamp.version());
        Ok(Committed {
            version,
            versionstamp: Some(stamp),
        })
    }
}

/// A key that may be written: at most [`MAX_KEY_BYTES`], below `\xff`.
fn check_key(key: &[u8]) -> Result<(), KvError> {
    if key >= KEYSPACE_END {
        return Err(KvError::KeyOutsideLegalRange);
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(KvError::KeyTooLarge { size: key.len() });
    }
    Ok(())
}

fn check_value(value: &[u8]) -> Result<(), KvError> {
    if value.len() > MAX_VALUE_BYTES {
        return Err(KvError::ValueTooLarge { size: value.len() });
    }
    Ok(())
}

/// A tuple-layer incomplete-versionstamp encoding: ends with a 4-byte little-endian offset,
/// and the 10-byte placeholder at that offset fits before it.
fn check_versionstamp(bytes: &[u8]) -> Result<(), KvError> {
    let invalid = |what: &str| KvError::InvalidOperation {
        what: what.to_string(),
    };
    let Some(body_len) = bytes.len().checked_sub(4) else {
        return Err(invalid(
            "versionstamped key or value shorter than its 4-byte offset",
        ));
    };
    let offset: [u8; 4] = bytes[body_len..].try_into().expect("the last 4 bytes");
    let offset = u32::from_le_bytes(offset) as usize;
    if offset.checked_add(10).is_none_or(|end| end > body_len) {
        return Err(invalid(
            "versionstamp offset points past the end of the key or value",
        ));
    }
    Ok(())
}

/// A read key as FoundationDB sees it: no key is longer than [`MAX_KEY_BYTES`], so a longer
/// one orders against every stored key as its first `MAX_KEY_BYTES + 1` bytes do
/// (FoundationDB cuts it the same way).
fn read_key(key: &[u8]) -> &[u8] {
    &key[..key.len().min(MAX_KEY_BYTES + 1)]
}

fn selector(s: &KeySelector) -> foundationdb::KeySelector<'_> {
    foundationdb::KeySelector::new(Cow::Borrowed(read_key(&s.key)), s.or_equal, s.offset)
}

impl FdbTx {
    fn new(tx: foundationdb::Transaction) -> FdbTx {
        FdbTx {
            inner: Arc::new(TxInner {
                tx,
                wrote: AtomicBool::new(false),
                invalid: OnceLock::new(),
            }),
        }
    }

    fn tx(&self) -> &foundationdb::Transaction {
        &self.inner.tx
    }

    /// Checks a write; true if it may go to FoundationDB, else remembers the error (the first
    /// one wins) for the commit.
    fn valid(&self, check: Result<(), KvError>) -> bool {
        match check {
            Ok(()) => {
                self.inner.wrote.store(true, Ordering::Relaxed);
                true
            }
            Err(e) => {
                tracing::debug!(error = %e, "invalid write; the commit will fail");
                let _ = self.inner.invalid.set(e);
                false
            }
        }
    }
}

impl Transaction for FdbTx {
    async fn read_version(&self) -> Result<u64, KvError> {
        to_version(self.tx().get_read_version().await.map_err(kv_error)?)
    }

    async fn get(&self, key: &[u8], snapshot: bool) -> Result<Option<Vec<u8>>, KvError> {
        if key >= KEYSPACE_END {
            return Err(KvError::KeyOutsideLegalRange);
        }
        if key.len() > MAX_KEY_BYTES {
            // No such key can exist (FoundationDB answers the same, without a read).
            return Ok(None);
        }
        let value = self.tx().get(key, snapshot).await.map_err(kv_error)?;
        Ok(value.map(|v| v.to_vec()))
    }

    async fn get_range(&self, range: &RangeOption, snapshot: bool) -> Result<RangeBatch, KvError> {
        // `\xff` itself is a fine bound ("the end of the keys"); past it are the system and
        // special key spaces.
        if range.begin.key.as_slice() > KEYSPACE_END || range.end.key.as_slice() > KEYSPACE_END {
            return Err(KvError::KeyOutsideLegalRange);
        }
        if range.limit == Some(0) {
            // FoundationDB reads a limit of 0 as "no limit".
            return Ok(RangeBatch::default());
        }
        let read = {
            let opt = foundationdb::RangeOption {
                begin: selector(&range.begin),
                end: selector(&range.end),
                limit: range.limit,
                reverse: range.reverse,
                // Each call is one request with no memory of earlier batches, so `Iterator`
                // mode would stay at its first, smallest batch size; `WantAll` asks for large
                // batches from the start (the row limit still applies).
                mode: StreamingMode::WantAll,
                ..foundationdb::RangeOption::default()
            };
            self.tx().get_range(&opt, 1, snapshot)
        };
        let values = read.await.map_err(kv_error)?;
        let kvs: Vec<KeyValue> = values
            .iter()
            .map(|kv| KeyValue {
                key: kv.key().to_vec(),
                value: kv.value().to_vec(),
            })
            .collect();
        let more = values.more() && range.limit.is_none_or(|limit| kvs.len() < limit);
        Ok(RangeBatch { kvs, more })
    }

    fn set(&self, key: &[u8], value: &[u8]) {
        if self.valid(check_key(key).and_then(|()| check_value(value))) {
            self.tx().set(key, value);
        }
    }

    fn clear(&self, key: &[u8]) {
        if self.valid(check_key(key)) {
            self.tx().clear(key);
        }
    }

    fn clear_range(&self, begin: &[u8], end: &[u8]) {
        let check = if begin >= KEYSPACE_END || end > KEYSPACE_END {
            Err(KvError::KeyOutsideLegalRange)
        } else if let Some(k) = [begin, end]
            .into_iter()
            .find(|k| k.len() > MAX_KEY_BYTES + 1)
        {
            // The end of a range may be one byte longer than a key (the key after it).
            Err(KvError::KeyTooLarge { size: k.len() })
        } else if begin >= end {
            // Empty: nothing to clear (FoundationDB would fail an inverted range with
            // inverted_range, 2005; like the SQLite backend, it is a no-op here).
            return;
        } else {
            Ok(())
        };
        if self.valid(check) {
            self.tx().clear_range(begin, end);
        }
    }

    fn atomic_add(&self, key: &[u8], param: &[u8]) {
        if self.valid(check_key(key).and_then(|()| check_value(param))) {
            self.tx().atomic_op(key, param, MutationType::Add);
        }
    }

    fn set_versionstamped_key(&self, key: &[u8], value: &[u8]) {
        // FoundationDB limits the key as given, with its 4-byte offset.
        let check = check_key(key)
            .and_then(|()| check_value(value))
            .and_then(|()| check_versionstamp(key));
        if self.valid(check) {
            self.tx()
                .atomic_op(key, value, MutationType::SetVersionstampedKey);
        }
    }

    fn set_versionstamped_value(&self, key: &[u8], value: &[u8]) {
        // FoundationDB limits the value as given, with its 4-byte offset.
        let check = check_key(key)
            .and_then(|()| check_value(value))
            .and_then(|()| check_versionstamp(value));
        if self.valid(check) {
            self.tx()
                .atomic_op(key, value, MutationType::SetVersionstampedValue);
        }
    }

    async fn commit(self) -> Result<Committed, KvError> {
        let inner = Arc::try_unwrap(self.inner).map_err(|_| KvError::UsedDuringCommit)?;
        inner.commit().await.map_err(|failed| failed.error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versionstamp_offsets_are_checked() {
        let mut ok = vec![b'k'; 3];
        ok.extend_from_slice(&[0xff; 10]);
        ok.extend_from_slice(&3u32.to_le_bytes());
        assert_eq!(check_versionstamp(&ok), Ok(()));
        let mut past = ok.clone();
        let n = past.len();
        past[n - 4..].copy_from_slice(&4u32.to_le_bytes());
        assert!(matches!(
            check_versionstamp(&past),
            Err(KvError::InvalidOperation { .. })
        ));
        let mut huge = ok.clone();
        huge[n - 4..].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            check_versionstamp(&huge),
            Err(KvError::InvalidOperation { .. })
        ));
        assert!(matches!(
            check_versionstamp(b"abc"),
            Err(KvError::InvalidOperation { .. })
        ));
    }

    #[test]
    fn write_checks_match_the_limits() {
        assert_eq!(check_key(&vec![b'a'; MAX_KEY_BYTES]), Ok(()));
        assert_eq!(
            check_key(&vec![b'a'; MAX_KEY_BYTES + 1]),
            Err(KvError::KeyTooLarge {
                size: MAX_KEY_BYTES + 1
            })
        );
        assert_eq!(check_key(b"\xff/x"), Err(KvError::KeyOutsideLegalRange));
        assert_eq!(check_key(b"\xfe\xff"), Ok(()));
        assert_eq!(check_value(&vec![0; MAX_VALUE_BYTES]), Ok(()));
        assert_eq!(
            check_value(&vec![0; MAX_VALUE_BYTES + 1]),
            Err(KvError::ValueTooLarge {
                size: MAX_VALUE_BYTES + 1
            })
        );
    }

    #[test]
    fn long_read_keys_are_cut_after_the_key_limit() {
        let long = vec![b'z'; MAX_KEY_BYTES + 50];
        assert_eq!(read_key(&long).len(), MAX_KEY_BYTES + 1);
        assert_eq!(read_key(b"short"), b"short");
    }
}
