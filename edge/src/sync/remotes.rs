//! The configured remotes (name, URL, API key) and where sync stands with the first one: the
//! view `horde status` prints and the MCP server's `sync_status` returns. Reading it asks the
//! cloud once (at most 3 s) whether it is reachable.

use std::time::Duration;

use anyhow::{Context, Result};
use rusqlite::Connection;
use serde_json::json;

use super::{Client, HttpTransport, SyncError};

/// A configured cloud.
#[derive(Debug, Clone)]
pub struct Remote {
    pub name: String,
    pub url: String,
    pub api_key: Option<String>,
}

pub fn remotes(conn: &Connection) -> Result<Vec<Remote>> {
    let mut st = conn.prepare("SELECT name, url, api_key FROM remotes ORDER BY name")?;
    let rows = st
        .query_map([], |r| {
            Ok(Remote {
                name: r.get(0)?,
                url: r.get(1)?,
                api_key: r.get(2)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

pub fn api_key(remote: &Remote) -> Result<String> {
    match std::env::var("HORDE_API_KEY")
        .ok()
        .filter(|k| !k.is_empty())
    {
        Some(k) => Ok(k),
        None => remote
            .api_key
            .clone()
            .ok_or_else(|| SyncError::NoKey.into()),
    }
}

/// A current-thread runtime for one command's network work.
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the network runtime")
}

/// What `horde status` says about the remote: pending events, last sync, reachability.
pub fn status_json(
    ledger: &crate::store::Ledger,
    device: Option<horde_core::DeviceId>,
) -> Result<serde_json::Value> {
    let Some(remote) = remotes(&ledger.conn)?.into_iter().next() else {
        return Ok(serde_json::Value::Null);
    };
    let state = crate::sync::read_state(&ledger.conn, &remote.name)?;
    let pending = match device {
        Some(d) => crate::sync::pending(&ledger.conn, d, Some(&remote.name))?,
        None => 0,
    };
    let reachable = match api_key(&remote) {
        Ok(key) => {
            let t = HttpTransport::new(&remote.url, &key)?;
            let client = Client::new(t, ledger.meta.project);
            let rt = runtime()?;
            rt.block_on(async {
                match tokio::time::timeout(Duration::from_secs(3), client.me()).await {
                    Ok(Ok(_)) => json!({"reachable": true}),
                    Ok(Err(e)) => json!({"reachable": !matches!(e, SyncError::Unreachable{..}), "error": e.to_string()}),
                    Err(_) => json!({"reachable": false, "error": "no answer within 3 s"}),
                }
            })
        }
        Err(e) => json!({"reachable": null, "error": e.to_string()}),
    };
    let open_conflicts: i64 = ledger.conn.query_row(
        "SELECT COUNT(*) FROM conflicts WHERE resolved_by IS NULL AND timeline = ?1",
        [ledger.meta.timeline.as_bytes()],
        |r| r.get(0),
    )?;
    Ok(json!({
        "name": remote.name,
        "url": remote.url,
        "pending_events": pending,
        "last_success_at": state.last_success_at.map(horde_core::time::format_micros),
        "last_attempt_at": state.last_attempt_at.map(horde_core::time::format_micros),
        "last_error": state.last_error,
        "reachable": reachable["reachable"],
        "reach_error": reachable.get("error"),
        "open_conflicts": open_conflicts,
    }))
}
