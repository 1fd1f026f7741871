//! The vocabulary every other part of horde shares: id newtypes, [`RepoPath`], [`BlobHash`] and
//! [`EventHash`], building and hashing events, per-device hash chains, device keys and signed
//! chain heads, and the verification that names the first bad seq.
//!
//! Invariants:
//! - An event's hash is SHA-256 of its encoded body, exactly as stored; bodies are never
//!   re-encoded after hashing.
//! - A chain is per (project, device): seq runs 1, 2, 3, … without gaps and each event names
//!   the hash of the previous one.
//! - This crate knows nothing about storage or the network.

pub mod chain;
pub mod event;
pub mod hash;
pub mod ids;
pub mod json;
pub mod keys;
pub mod path;
pub mod time;

pub use chain::{ChainError, ChainTip, ChainVerifier, HeadError, check_heads};
pub use event::{
    BuiltEvent, DecodeError, Draft, EventError, MAX_EVENT_BYTES, PAYLOAD_KINDS, build_event,
    decode_event, payload_kind, referenced_blobs, shared_blobs,
};
pub use hash::{BlobHash, BlobHasher, EventHash, HashParseError};
pub use horde_proto::v1 as proto;
pub use ids::{
    ApiKeyId, DeviceId, EventId, IdParseError, ProjectId, TaskId, TenantId, TimelineId, UserId,
};
pub use keys::{DeviceKey, KeyError, verify_head};
pub use path::{PathError, RepoPath};
