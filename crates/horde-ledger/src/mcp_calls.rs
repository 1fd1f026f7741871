//! The cloud's record of MCP tool calls: one entry per `tools/call` served at a project's
//! `/mcp` endpoint, kept under the project's keys (so under the tenant's prefix) in call
//! order. The cloud holds no device key, so it cannot put these on a device's signed chain;
//! they live beside the log, like cloud approval decisions.
//!
//! Invariants: a record is written exactly once (a call token, written in the same
//! transaction, makes a retried commit a no-op); a record larger than [`MAX_MCP_CALL_BYTES`]
//! is refused and nothing is written; listing is oldest first and bounded per page.

use horde_core::{ApiKeyId, ProjectId, TenantId, UserId};
use horde_kv::tuple::Versionstamp;
use horde_kv::{OrderedKv, RangeOption, Transaction};
use serde::{Deserialize, Serialize};

use crate::Ledger;
use crate::error::{LedgerError, corrupt};
use crate::records::{from_json, to_json};

/// Largest stored record (its JSON).
pub const MAX_MCP_CALL_BYTES: usize = 16 * 1024;
/// Most records one listing returns.
pub const MAX_MCP_CALLS_PAGE: usize = 1_000;

/// One MCP tool call as the cloud recorded it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct McpCall {
    /// When the call was answered (µs since the epoch, the server's clock).
    pub at: i64,
    /// The API key that made the call, and its user.
    pub key: ApiKeyId,
    pub user: UserId,
    /// The MCP client's name (`clientInfo.name`), or "unknown".
    pub client: String,
    /// The JSON-RPC id of the call.
    pub call_id: String,
    pub tool: String,
    /// `name=value` per argument, each bounded by the MCP layer.
    pub args: Vec<String>,
    pub summary: String,
    /// Why the call was refused, when it was.
    pub error: Option<String>,
    pub duration_ms: u64,
}

/// A recorded call and where it is in the record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct McpCallEntry {
    /// Pass as `after` to read on from here.
    pub cursor: Versionstamp,
    pub call: McpCall,
}

impl<K: OrderedKv> Ledger<K> {
    /// Records one call in `project`'s MCP call record. Refused (nothing written) when the
    /// project is not the tenant's or the record is larger than [`MAX_MCP_CALL_BYTES`].
    pub async fn record_mcp_call(
        &self,
        tenant: TenantId,
        project: ProjectId,
        call: &McpCall,
    ) -> Result<(), LedgerError> {
        let value = to_json(call);
        if value.len() > MAX_MCP_CALL_BYTES {
            return Err(LedgerError::Invalid(format!(
                "an MCP call record of {} bytes is larger than {MAX_MCP_CALL_BYTES}",
                value.len()
            )));
        }
        let p = self.project_keys(tenant, project).await?;
        let mut token = [0u8; 16];
        getrandom::fill(&mut token)
            .map_err(|e| LedgerError::Invalid(format!("no randomness for a call token: {e}")))?;
        self.kv
            .transact(|tx, maybe_committed| {
                let (p, value) = (p.clone(), value.clone());
                async move {
                    let seen = p.mcp_call_token(&token);
                    // Only an earlier attempt of this very call can have written the token.
                    if maybe_committed.0 && tx.get(&seen, false).await?.is_some() {
                        return Ok(());
                    }
                    tx.set(&seen, b"");
                    tx.set_versionstamped_key(&p.mcp_call_new(), &value);
                    Ok::<(), LedgerError>(())
                }
            })
            .await?;
        Ok(())
    }

    /// `project`'s recorded MCP calls after `after` (a cursor of an earlier entry), oldest
    /// first, at most `limit` (capped at [`MAX_MCP_CALLS_PAGE`]).
    pub async fn mcp_calls(
        &self,
        tenant: TenantId,
        project: ProjectId,
        after: Option<&Versionstamp>,
        limit: usize,
    ) -> Result<Vec<McpCallEntry>, LedgerError> {
        let p = self.project_keys(tenant, project).await?;
        let space = p.mcp_calls();
        let begin = match after {
            Some(vs) => {
                let mut k = space.pack(&(vs,));
                k.push(0);
                k
            }
            None => space.bytes().to_vec(),
        };
        let end = horde_kv::strinc(space.bytes());
        let limit = limit.clamp(1, MAX_MCP_CALLS_PAGE);
        let kvs = self
            .read_batch(RangeOption::new(begin, end).limit(limit))
            .await?
            .kvs;
        kvs.iter()
            .map(|kv| {
                let (cursor,): (Versionstamp,) = space
                    .unpack(&kv.key)
                    .map_err(|e| corrupt(format!("MCP call key: {e:?}")))?;
                Ok(McpCallEntry {
                    cursor,
                    call: from_json("MCP call", &kv.value)?,
                })
            })
            .collect()
    }
}
