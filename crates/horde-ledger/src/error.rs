use horde_core::{DeviceId, ProjectId, TenantId, TimelineId};
use horde_kv::{KvError, TxError};

/// What a ledger call refused or could not do. Nothing was written when it returns one.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LedgerError {
    #[error("no tenant {0}")]
    TenantNotFound(TenantId),
    #[error("a tenant named {0:?} already exists")]
    TenantExists(String),
    #[error("no project {0} in this tenant")]
    ProjectNotFound(ProjectId),
    #[error("a project named {0:?} already exists in this tenant")]
    ProjectExists(String),
    #[error("no timeline {0} in this project")]
    TimelineNotFound(TimelineId),
    #[error(
        "timeline {id} already exists in this project with {}",
        describe_origin(*parent, *fork_version)
    )]
    TimelineExists {
        id: TimelineId,
        parent: Option<TimelineId>,
        fork_version: Option<u64>,
    },
    #[error("a user with email {0:?} already exists in this tenant")]
    UserExists(String),
    #[error("no user {0} in this tenant")]
    UserNotFound(String),
    #[error("device {0} is not registered in this tenant")]
    DeviceNotRegistered(DeviceId),
    #[error("device {0} is registered with another public key")]
    DeviceKeyMismatch(DeviceId),
    #[error("invalid input: {0}")]
    Invalid(String),
    #[error("event {index} of the batch: {reason}")]
    BadEvent { index: usize, reason: String },
    #[error(
        "batch has {events} events and {bytes} bytes; the limits are {max_events} events and {max_bytes} bytes"
    )]
    BatchTooLarge {
        events: usize,
        bytes: usize,
        max_events: usize,
        max_bytes: usize,
    },
    #[error("expected seq {expected} next for this device, got seq {got}")]
    SeqGap { expected: u64, got: u64 },
    #[error("seq {seq}: prev_hash does not match the hash of seq {} (broken chain)", seq - 1)]
    ChainBroken { seq: u64 },
    #[error("seq {seq} was already acknowledged with a different hash (the device's chain forked)")]
    SeqConflict { seq: u64 },
    #[error("signed head: {0}")]
    BadHead(String),
    #[error("version {asked} is past the last committed version {last}")]
    VersionInFuture { asked: u64, last: u64 },
    #[error("no approval request {0} in this project")]
    ApprovalNotFound(String),
    #[error("approval request {id} was already {} by {by}; it cannot be decided again", state_word(*state))]
    ApprovalDecided {
        id: String,
        state: crate::ApprovalState,
        by: String,
    },
    #[error(
        "approval request {id} expired (at {expires_at} µs since the epoch); the agent has to ask again"
    )]
    ApprovalExpired { id: String, expires_at: i64 },
    #[error("stored data is damaged: {0}")]
    Corrupt(String),
    #[error(transparent)]
    Kv(#[from] KvError),
}

impl TxError for LedgerError {
    fn as_kv(&self) -> Option<&KvError> {
        match self {
            LedgerError::Kv(e) => Some(e),
            _ => None,
        }
    }
}

fn state_word(s: crate::ApprovalState) -> &'static str {
    match s {
        crate::ApprovalState::Pending => "pending",
        crate::ApprovalState::Granted => "granted",
        crate::ApprovalState::Denied => "denied",
        crate::ApprovalState::Expired => "expired",
    }
}

fn describe_origin(parent: Option<TimelineId>, fork_version: Option<u64>) -> String {
    match (parent, fork_version) {
        (Some(p), Some(v)) => format!("parent {p} at version {v}"),
        _ => "no parent (a main timeline)".to_owned(),
    }
}

pub(crate) fn corrupt(what: impl std::fmt::Display) -> LedgerError {
    LedgerError::Corrupt(what.to_string())
}
