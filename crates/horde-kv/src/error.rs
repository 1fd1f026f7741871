//! Errors, with FoundationDB's error codes so that both backends fail the same way.

/// What went wrong in a transaction. [`KvError::code`] is FoundationDB's error code for the
/// same condition; [`KvError::is_retryable`] says whether running the transaction again can
/// succeed (and [`crate::OrderedKv::transact`] does so).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KvError {
    #[error("key is {size} bytes; the limit is 10,000 (FoundationDB error 2102, key_too_large)")]
    KeyTooLarge { size: usize },
    #[error(
        "value is {size} bytes; the limit is 100,000 (FoundationDB error 2103, value_too_large)"
    )]
    ValueTooLarge { size: usize },
    #[error(
        "transaction is {size} bytes; the limit is 10,000,000 — split the work into smaller transactions (FoundationDB error 2101, transaction_too_large)"
    )]
    TransactionTooLarge { size: usize },
    #[error("transaction is older than 5 seconds (FoundationDB error 1007, transaction_too_old)")]
    TransactionTooOld,
    #[error(
        "transaction conflicted with another and was not committed (FoundationDB error 1020, not_committed)"
    )]
    NotCommitted,
    #[error(
        "the commit may or may not have happened (FoundationDB error 1021, commit_unknown_result)"
    )]
    CommitUnknownResult,
    #[error(
        "read of a key whose value holds this transaction's versionstamp (FoundationDB error 1036, accessed_unreadable)"
    )]
    AccessedUnreadable,
    #[error(
        "key is outside the legal range: keys must sort below \\xff (FoundationDB error 2004, key_outside_legal_range)"
    )]
    KeyOutsideLegalRange,
    #[error("invalid operation: {what} (FoundationDB error 2000, client_invalid_operation)")]
    InvalidOperation { what: String },
    #[error(
        "transaction was used after commit or while committing (FoundationDB error 2017, used_during_commit)"
    )]
    UsedDuringCommit,
    #[error("transaction still failed after {attempts} attempts")]
    TooManyRetries { attempts: u32 },
    /// Any other FoundationDB error, as the cluster reported it.
    #[error("FoundationDB error {code}: {message}")]
    Fdb {
        code: i32,
        message: String,
        retryable: bool,
        maybe_committed: bool,
    },
    /// The embedded store's file could not be read or written.
    #[error("storage: {0}")]
    Storage(String),
}

impl KvError {
    /// FoundationDB's error code for this condition (0 where FoundationDB has none).
    pub fn code(&self) -> i32 {
        match self {
            KvError::KeyTooLarge { .. } => 2102,
            KvError::ValueTooLarge { .. } => 2103,
            KvError::TransactionTooLarge { .. } => 2101,
            KvError::TransactionTooOld => 1007,
            KvError::NotCommitted => 1020,
            KvError::CommitUnknownResult => 1021,
            KvError::AccessedUnreadable => 1036,
            KvError::KeyOutsideLegalRange => 2004,
            KvError::InvalidOperation { .. } => 2000,
            KvError::UsedDuringCommit => 2017,
            KvError::Fdb { code, .. } => *code,
            KvError::TooManyRetries { .. } | KvError::Storage(_) => 0,
        }
    }

    /// Running the transaction again may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            KvError::TransactionTooOld | KvError::NotCommitted | KvError::CommitUnknownResult => {
                true
            }
            KvError::Fdb { retryable, .. } => *retryable,
            _ => false,
        }
    }

    /// The failed commit may nevertheless have been applied.
    pub fn is_maybe_committed(&self) -> bool {
        match self {
            KvError::CommitUnknownResult => true,
            KvError::Fdb {
                maybe_committed, ..
            } => *maybe_committed,
            _ => false,
        }
    }
}

/// Errors a transaction body may return: its own, or a [`KvError`] (which
/// [`crate::OrderedKv::transact`] looks at to decide whether to retry).
pub trait TxError: From<KvError> {
    fn as_kv(&self) -> Option<&KvError>;
}

impl TxError for KvError {
    fn as_kv(&self) -> Option<&KvError> {
        Some(self)
    }
}
