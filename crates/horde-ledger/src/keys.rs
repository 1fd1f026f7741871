//! Key layout (tuple-encoded; `T` is the tenant's short prefix, `VS` a versionstamp):
//!
//! | key | value |
//! |---|---|
//! | `("tenant", tenant_id)` | [`crate::Tenant`] (JSON) |
//! | `("tenant_name", name)` | tenant id |
//! | `("tenant_prefix")` | the last prefix allocated |
//! | `("apikey", sha256(secret))` | [`crate::ApiKey`] (JSON): lookup by secret |
//! | `("t", T, "user", user_id)` / `("t", T, "email", email)` | [`crate::User`] / user id |
//! | `("t", T, "key", key_id)` | sha256 of the key's secret |
//! | `("t", T, "project", P)` / `("t", T, "project_name", name)` | [`crate::Project`] / id |
//! | `("t", T, "device", D)` | [`crate::Device`] (public key) |
//! | `("t", T, "p", P, "log", VS)` | `SignedEvent` (protobuf) |
//! | `("t", T, "p", P, "time", ts_ms, VS)` | empty |
//! | `("t", T, "p", P, "eid", event_id, VS)` | empty (event id → its place in the log) |
//! | `("t", T, "p", P, "path", timeline, path, VS)` | [`crate::FileVersion`] (tuple) |
//! | `("t", T, "p", P, "ckpt", D, timeline, seq)` | `(VS, manifest blob hash)`: each `Checkpoint` event |
//! | `("t", T, "p", P, "dev", D)` | cursor: `(last_seq, last_hash)` |
//! | `("t", T, "p", P, "head", D)` | the device's last signed `ChainHead` (protobuf) |
//! | `("t", T, "p", P, "tl", timeline)` | [`crate::Timeline`] (JSON) |
//! | `("t", T, "p", P, "appr", request_id, VS)` | `SignedEvent` (protobuf): each `Approval` event |
//! | `("t", T, "p", P, "apdec", request_id)` | [`crate::CloudDecision`] (JSON): decided through the API |
//! | `("t", T, "p", P, "apdecv", VS)` | request id: cloud decisions in decision order |
//! | `("t", T, "p", P, "mcp", VS)` | [`crate::McpCall`] (JSON): MCP tool calls served by the cloud |
//! | `("t", T, "p", P, "mcptok", token)` | empty: a recorded call's token (a retried commit writes nothing twice) |
//! | `("feed", VS)` | `(tenant_id, T, project_id, events)`: one per append transaction |
//! | `("idx", indexer)` | the indexer's cursor: the last feed versionstamp it consumed |

use horde_core::{ApiKeyId, DeviceId, EventId, ProjectId, TenantId, TimelineId, UserId};
use horde_kv::tuple::{Subspace, Versionstamp};

pub fn tenant(id: TenantId) -> Vec<u8> {
    horde_kv::tuple::pack(&("tenant", id.uuid()))
}

pub fn tenant_name(name: &str) -> Vec<u8> {
    horde_kv::tuple::pack(&("tenant_name", name))
}

pub fn tenant_prefix_counter() -> Vec<u8> {
    horde_kv::tuple::pack(&("tenant_prefix",))
}

pub fn api_key(secret_hash: &[u8]) -> Vec<u8> {
    horde_kv::tuple::pack(&("apikey", secret_hash))
}

pub fn feed() -> Subspace {
    Subspace::all().subspace(&("feed",))
}

pub fn indexer(name: &str) -> Vec<u8> {
    horde_kv::tuple::pack(&("idx", name))
}

/// Everything of one tenant.
#[derive(Debug, Clone)]
pub struct TenantKeys {
    prefix: i64,
    space: Subspace,
}

impl TenantKeys {
    pub fn new(prefix: i64) -> Self {
        TenantKeys {
            prefix,
            space: Subspace::all().subspace(&("t", prefix)),
        }
    }
    pub fn prefix(&self) -> i64 {
        self.prefix
    }
    pub fn space(&self) -> &Subspace {
        &self.space
    }
    pub fn user(&self, id: UserId) -> Vec<u8> {
        self.space.pack(&("user", id.uuid()))
    }
    pub fn users(&self) -> Subspace {
        self.space.subspace(&("user",))
    }
    pub fn email(&self, email: &str) -> Vec<u8> {
        self.space.pack(&("email", email))
    }
    pub fn key(&self, id: ApiKeyId) -> Vec<u8> {
        self.space.pack(&("key", id.uuid()))
    }
    pub fn keys(&self) -> Subspace {
        self.space.subspace(&("key",))
    }
    pub fn project(&self, id: ProjectId) -> Vec<u8> {
        self.space.pack(&("project", id.uuid()))
    }
    pub fn projects(&self) -> Subspace {
        self.space.subspace(&("project",))
    }
    pub fn project_name(&self, name: &str) -> Vec<u8> {
        self.space.pack(&("project_name", name))
    }
    pub fn device(&self, id: DeviceId) -> Vec<u8> {
        self.space.pack(&("device", id.uuid()))
    }
    pub fn devices(&self) -> Subspace {
        self.space.subspace(&("device",))
    }
    pub fn p(&self, project: ProjectId) -> ProjectKeys {
        ProjectKeys {
            space: self.space.subspace(&("p", project.uuid())),
        }
    }
}

/// Everything of one project.
#[derive(Debug, Clone)]
pub struct ProjectKeys {
    space: Subspace,
}

impl ProjectKeys {
    pub fn log(&self) -> Subspace {
        self.space.subspace(&("log",))
    }
    /// The log key of the `i`-th event of the committing transaction.
    pub fn log_new(&self, i: u16) -> Vec<u8> {
        self.space
            .pack_with_versionstamp(&("log", Versionstamp::incomplete(i)))
    }
    pub fn log_at(&self, vs: &Versionstamp) -> Vec<u8> {
        self.space.pack(&("log", vs))
    }
    pub fn time(&self) -> Subspace {
        self.space.subspace(&("time",))
    }
    pub fn time_new(&self, ts_ms: i64, i: u16) -> Vec<u8> {
        self.space
            .pack_with_versionstamp(&("time", ts_ms, Versionstamp::incomplete(i)))
    }
    /// Where event `id` is in the log.
    pub fn event_id(&self, id: EventId) -> Subspace {
        self.space.subspace(&("eid", id.uuid()))
    }
    pub fn event_id_new(&self, id: EventId, i: u16) -> Vec<u8> {
        self.space
            .pack_with_versionstamp(&("eid", id.uuid(), Versionstamp::incomplete(i)))
    }
    /// All versions of one path in one timeline.
    pub fn path(&self, timeline: TimelineId, path: &str) -> Subspace {
        self.space.subspace(&("path", timeline.uuid(), path))
    }
    /// All paths of one timeline.
    pub fn paths(&self, timeline: TimelineId) -> Subspace {
        self.space.subspace(&("path", timeline.uuid()))
    }
    pub fn path_new(&self, timeline: TimelineId, path: &str, i: u16) -> Vec<u8> {
        self.space.pack_with_versionstamp(&(
            "path",
            timeline.uuid(),
            path,
            Versionstamp::incomplete(i),
        ))
    }
    /// The `Checkpoint` event at `seq` of `device` on `timeline`; its value holds the
    /// event's versionstamp, written with `set_versionstamped_value`.
    pub fn checkpoint(&self, device: DeviceId, timeline: TimelineId, seq: u64) -> Vec<u8> {
        self.space
            .pack(&("ckpt", device.uuid(), timeline.uuid(), seq_key(seq)))
    }
    /// All `Checkpoint` events of `device` on `timeline`, by seq.
    pub fn checkpoints(&self, device: DeviceId, timeline: TimelineId) -> Subspace {
        self.space
            .subspace(&("ckpt", device.uuid(), timeline.uuid()))
    }
    pub fn cursor(&self, device: DeviceId) -> Vec<u8> {
        self.space.pack(&("dev", device.uuid()))
    }
    pub fn head(&self, device: DeviceId) -> Vec<u8> {
        self.space.pack(&("head", device.uuid()))
    }
    pub fn timeline(&self, id: TimelineId) -> Vec<u8> {
        self.space.pack(&("tl", id.uuid()))
    }
    pub fn timelines(&self) -> Subspace {
        self.space.subspace(&("tl",))
    }
    /// Every `Approval` event, by request id then log order.
    pub fn approvals(&self) -> Subspace {
        self.space.subspace(&("appr",))
    }
    /// The `Approval` events of one request.
    pub fn approval(&self, request_id: &[u8]) -> Subspace {
        self.space.subspace(&("appr", request_id))
    }
    pub fn approval_new(&self, request_id: &[u8], i: u16) -> Vec<u8> {
        self.space
            .pack_with_versionstamp(&("appr", request_id, Versionstamp::incomplete(i)))
    }
    /// A decision taken through the API on one request.
    pub fn decision(&self, request_id: &[u8]) -> Vec<u8> {
        self.space.pack(&("apdec", request_id))
    }
    pub fn decisions(&self) -> Subspace {
        self.space.subspace(&("apdec",))
    }
    /// Cloud decisions in the order they were taken.
    pub fn decisions_by_version(&self) -> Subspace {
        self.space.subspace(&("apdecv",))
    }
    pub fn decision_new(&self) -> Vec<u8> {
        self.space
            .pack_with_versionstamp(&("apdecv", Versionstamp::incomplete(0)))
    }
    /// MCP tool calls the cloud served, in call order.
    pub fn mcp_calls(&self) -> Subspace {
        self.space.subspace(&("mcp",))
    }
    pub fn mcp_call_new(&self) -> Vec<u8> {
        self.space
            .pack_with_versionstamp(&("mcp", Versionstamp::incomplete(0)))
    }
    /// The token of one recorded MCP call.
    pub fn mcp_call_token(&self, token: &[u8; 16]) -> Vec<u8> {
        self.space.pack(&("mcptok", &token[..]))
    }
}

/// A seq as a tuple integer (seqs stay far below `i64::MAX`; larger ones sort last).
pub fn seq_key(seq: u64) -> i64 {
    i64::try_from(seq).unwrap_or(i64::MAX)
}

pub fn feed_new() -> Vec<u8> {
    feed().pack_with_versionstamp(&(Versionstamp::incomplete(0),))
}

/// The smallest versionstamp of commit version `version` (a bound for version ranges).
pub fn version_floor(version: u64) -> Versionstamp {
    Versionstamp::complete(horde_kv::CommitStamp::new(version, 0).0, 0)
}
