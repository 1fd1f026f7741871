//! Migrations from `migrations/edge/`, applied in order inside one transaction each and
//! tracked by `PRAGMA user_version`.

use rusqlite::Connection;

use super::{Result, StoreError};

const MIGRATIONS: &[&str] = &[
    include_str!("../../../migrations/edge/0001_init.sql"),
    include_str!("../../../migrations/edge/0002_timelines.sql"),
    include_str!("../../../migrations/edge/0003_sync.sql"),
    include_str!("../../../migrations/edge/0004_withheld.sql"),
    include_str!("../../../migrations/edge/0005_agent_sessions.sql"),
    include_str!("../../../migrations/edge/0006_agent_usage.sql"),
    include_str!("../../../migrations/edge/0007_blob_journal.sql"),
];

/// Brings the schema up to date; refuses a database from a newer horde.
pub fn migrate(conn: &mut Connection, path: &std::path::Path) -> Result<()> {
    let corrupt = |source| StoreError::Corrupt {
        path: path.to_owned(),
        source,
    };
    let current: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(corrupt)?;
    let known = MIGRATIONS.len() as i64;
    if current > known {
        return Err(StoreError::TooNew {
            path: path.to_owned(),
            found: current,
            known,
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        if i == 1 {
            list_checkpoints(&tx)?;
        }
        tx.pragma_update(None, "user_version", i as i64 + 1)?;
        tx.commit()?;
    }
    Ok(())
}

/// Fills `checkpoints` from the Checkpoint events already in the ledger (version 1 → 2).
fn list_checkpoints(tx: &rusqlite::Transaction<'_>) -> Result<()> {
    let mut rows = Vec::new();
    {
        let mut stmt =
            tx.prepare("SELECT id, timeline, body, hash FROM events WHERE type = 'checkpoint'")?;
        let mut it = stmt.query([])?;
        while let Some(r) = it.next()? {
            let (id, timeline): (i64, Vec<u8>) = (r.get(0)?, r.get(1)?);
            let (body, hash): (Vec<u8>, Vec<u8>) = (r.get(2)?, r.get(3)?);
            // A corrupt event is `verify`'s to report; restore then folds from further back.
            if let Ok(ev) = horde_core::decode_event(&body, &hash)
                && let Some(horde_core::proto::event_body::Payload::Checkpoint(c)) = ev.payload
            {
                rows.push((timeline, id, c.manifest_blob));
            }
        }
    }
    for (timeline, id, manifest) in rows {
        tx.execute(
            "INSERT OR IGNORE INTO checkpoints (timeline, id, manifest) VALUES (?1, ?2, ?3)",
            rusqlite::params![timeline, id, manifest],
        )?;
    }
    Ok(())
}
