//! The cloud's data model on [`OrderedKv`]: tenants, users, API keys, projects, devices,
//! timelines, and each project's versionstamped event log with its indexes (time, per-path
//! history, checkpoints, global feed), device sync cursors and indexer cursors, and the record
//! of MCP tool calls the cloud served.
//!
//! Invariants:
//! - Every key of a tenant's data starts with `("t", prefix)`, where `prefix` is the short
//!   integer allocated to the tenant when it was created. Every API takes a [`TenantId`] and
//!   builds keys from that tenant's prefix only, so no call reaches another tenant's keys.
//! - A device's events are appended **exactly once**, in seq order, on an unbroken hash
//!   chain: the device cursor is read, checked and advanced in the same transaction as the
//!   writes, so a retried batch (a lost answer, an unknown commit result) writes nothing
//!   twice.
//! - The log is append-only and versionstamped, so anything at or below a committed
//!   version never changes: reads "as of version v" may span several transactions.
//!
//! Key layout ([`keys`]) is ARCHITECTURE.md's, tuple-encoded.

mod admin;
mod approvals;
mod error;
mod ingest;
pub mod keys;
mod mcp_calls;
mod query;
mod records;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

pub use admin::NewApiKey;
pub use approvals::{
    ApprovalFilter, ApprovalRecord, ApprovalState, CloudDecision, DecidedIn, DecisionEntry,
    MAX_APPROVALS, MAX_DECISIONS, REQUEST_ID_LEN, parse_request_id,
};
pub use error::LedgerError;
use horde_core::TenantId;
pub use horde_kv::tuple::Versionstamp;
use horde_kv::{KeyValue, OrderedKv, RangeBatch, RangeOption, Transaction};
pub use ingest::{
    AppendAck, AppendBatch, MAX_BATCH_BYTES, MAX_BATCH_EVENTS, MAX_TX_BYTES, MAX_TX_EVENTS,
};
pub use mcp_calls::{MAX_MCP_CALL_BYTES, MAX_MCP_CALLS_PAGE, McpCall, McpCallEntry};
pub use query::{
    CheckpointRef, EventFilter, EventPage, FeedEntry, LoggedEvent, MAX_READ_EVENTS, Manifest,
    stamp_version,
};
pub use records::{ApiKey, Device, FileVersion, Project, Role, Tenant, Timeline, User};
use serde::de::DeserializeOwned;

/// The ledger over one store. Cheap to clone.
pub struct Ledger<K: OrderedKv> {
    kv: Arc<K>,
    /// Tenant id → key prefix. Prefixes never change once allocated.
    prefixes: Arc<RwLock<HashMap<TenantId, i64>>>,
}

impl<K: OrderedKv> Clone for Ledger<K> {
    fn clone(&self) -> Self {
        Ledger {
            kv: self.kv.clone(),
            prefixes: self.prefixes.clone(),
        }
    }
}

impl<K: OrderedKv> Ledger<K> {
    pub fn new(kv: K) -> Self {
        Ledger {
            kv: Arc::new(kv),
            prefixes: Arc::default(),
        }
    }

    /// The store underneath.
    pub fn kv(&self) -> &K {
        &self.kv
    }

    /// One key, read alone (a snapshot read in its own transaction).
    pub(crate) async fn read_key(&self, key: Vec<u8>) -> Result<Option<Vec<u8>>, LedgerError> {
        let (v, _) = self
            .kv
            .transact(|tx, _| {
                let key = key.clone();
                async move { tx.get(&key, true).await }
            })
            .await?;
        Ok(v)
    }

    /// One batch of a range, read alone.
    pub(crate) async fn read_batch(&self, range: RangeOption) -> Result<RangeBatch, LedgerError> {
        let (batch, _) = self
            .kv
            .transact(|tx, _| {
                let range = range.clone();
                async move { tx.get_range(&range, true).await }
            })
            .await?;
        Ok(batch)
    }

    /// A whole range known to be small, read alone.
    pub(crate) async fn read_all(&self, range: RangeOption) -> Result<Vec<KeyValue>, LedgerError> {
        let (kvs, _) = self
            .kv
            .transact(|tx, _| {
                let range = range.clone();
                async move { tx.get_all(range, true).await }
            })
            .await?;
        Ok(kvs)
    }

    /// The JSON record at `key`, or `missing`.
    pub(crate) async fn read_record<T: DeserializeOwned>(
        &self,
        what: &str,
        key: Vec<u8>,
        missing: LedgerError,
    ) -> Result<T, LedgerError> {
        let v = self.read_key(key).await?.ok_or(missing)?;
        records::from_json(what, &v)
    }

    /// Every JSON record under `prefix`.
    pub(crate) async fn read_records<T: DeserializeOwned>(
        &self,
        what: &str,
        prefix: &[u8],
    ) -> Result<Vec<T>, LedgerError> {
        self.read_all(RangeOption::prefix(prefix))
            .await?
            .iter()
            .map(|kv| records::from_json(what, &kv.value))
            .collect()
    }
}
