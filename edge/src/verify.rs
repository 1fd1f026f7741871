//! `horde verify`: every device's chain, its signed heads, and the blobs events refer to.

use std::collections::{BTreeMap, HashSet};

use horde_core::{BlobHash, ChainVerifier, DeviceId, EventHash, check_heads, referenced_blobs};
use serde::Serialize;

use crate::store::{Ledger, Result, read};

#[derive(Debug, Serialize)]
pub struct DeviceReport {
    pub device: String,
    pub events: u64,
    pub heads: usize,
    pub last_signed_seq: Option<u64>,
    /// The first seq that cannot be trusted, when something is wrong.
    pub first_bad_seq: Option<u64>,
    pub error: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub ok: bool,
    pub devices: Vec<DeviceReport>,
    pub blobs_checked: usize,
    pub missing_blobs: Vec<String>,
    /// Blobs whose content no longer matches their name (only with `--deep`).
    pub corrupt_blobs: Vec<String>,
    /// The segment index disagrees with the events (lookups by seq or id would mislead).
    pub index_error: Option<String>,
}

/// Every event lies in exactly one segment of its device, at the seq the segment implies, and
/// every segment's range is full.
fn check_segments(ledger: &Ledger) -> Result<Option<String>> {
    let segs = read::segments(&ledger.conn)?;
    let mut i = 0;
    let mut problem = None;
    let mut expected_next: Option<i64> = None;
    read::for_each_position(&ledger.conn, |id, dev, seq| {
        if problem.is_some() {
            return;
        }
        while i < segs.len() && segs[i].last_id < id {
            if expected_next.is_some_and(|n| n <= segs[i].last_id) {
                problem = Some(format!(
                    "events {}..{} listed by the index are missing",
                    expected_next.unwrap_or(0),
                    segs[i].last_id
                ));
                return;
            }
            i += 1;
        }
        let ok = segs.get(i).is_some_and(|s| {
            s.first_id <= id && s.device == dev && s.first_seq + (id - s.first_id) as u64 == seq
        });
        if !ok {
            problem = Some(format!(
                "event at seq {seq} is not where the segment index says"
            ));
        }
        expected_next = Some(id + 1);
    })?;
    if problem.is_none()
        && let Some(last) = segs.last()
        && expected_next.is_none_or(|n| n <= last.last_id)
    {
        problem = Some(format!(
            "the index lists events up to position {} that are missing",
            last.last_id
        ));
    }
    Ok(problem)
}

/// Verifies the whole ledger. `local_key` is this device's public key when known, so its
/// heads must carry exactly that key.
pub fn verify(ledger: &Ledger, local: Option<(DeviceId, [u8; 32])>) -> Result<Report> {
    verify_with(ledger, local, false)
}

/// [`verify`]; with `deep`, every referenced blob is also read and re-hashed.
pub fn verify_with(
    ledger: &Ledger,
    local: Option<(DeviceId, [u8; 32])>,
    deep: bool,
) -> Result<Report> {
    let mut devices = Vec::new();
    let mut wanted: HashSet<BlobHash> = HashSet::new();
    for device in read::devices(&ledger.conn)? {
        let heads = read::heads(&ledger.conn, ledger.meta.project, device)?;
        let head_seqs: HashSet<u64> = heads.iter().map(|h| h.seq).collect();
        let mut hashes: BTreeMap<u64, EventHash> = BTreeMap::new();
        let mut v = ChainVerifier::new(ledger.meta.project, device);
        let mut error = None;
        let mut events = 0u64;
        read::for_each_event(&ledger.conn, device, |row| {
            match v.push(&row.body, &row.hash) {
                Ok(ev) => {
                    // The columns beside the body are what lookups trust: they must agree.
                    let kind = ev.payload.as_ref().map(horde_core::payload_kind);
                    if ev.seq != row.seq
                        || ev.event_id != row.id.as_bytes()
                        || ev.agent_id != row.agent
                        || ev.occurred_at != row.occurred_at
                        || kind != Some(row.kind.as_str())
                    {
                        let msg = format!(
                            "seq {}: the stored columns disagree with the signed body (the row was edited)",
                            ev.seq
                        );
                        error = Some((ev.seq, msg));
                        return false;
                    }
                    events += 1;
                    if head_seqs.contains(&ev.seq) {
                        hashes.insert(ev.seq, v.tip().hash.expect("pushed"));
                    }
                    if let Some(p) = &ev.payload {
                        wanted.extend(referenced_blobs(p));
                    }
                    true
                }
                Err(e) => {
                    error = Some((e.seq(), e.to_string()));
                    false
                }
            }
        })?;
        if error.is_none() {
            let expected_key = match local {
                Some((d, k)) if d == device => Some(k),
                // Other devices: all heads must carry the key of the first (the cloud's device
                // registry is the anchor for them once synced).
                _ => heads
                    .first()
                    .and_then(|h| <[u8; 32]>::try_from(h.public_key.as_slice()).ok()),
            };
            if let Err(e) = check_heads(&heads, expected_key.as_ref(), &hashes, v.tip().seq) {
                let seq = match &e {
                    horde_core::HeadError::Signature { seq, .. }
                    | horde_core::HeadError::Mismatch { seq }
                    | horde_core::HeadError::WrongKey { seq, .. } => *seq,
                    horde_core::HeadError::PastEnd { last, .. } => last + 1,
                };
                error = Some((seq, e.to_string()));
            }
        }
        devices.push(DeviceReport {
            device: device.to_string(),
            events,
            heads: heads.len(),
            last_signed_seq: heads.last().map(|h| h.seq),
            first_bad_seq: error.as_ref().map(|(s, _)| *s),
            error: error.map(|(_, m)| m),
        });
    }
    let index_error = check_segments(ledger)?;
    let mut missing: Vec<String> = wanted
        .iter()
        .filter(|h| !ledger.blobs.contains(h))
        .map(|h| h.to_hex())
        .collect();
    missing.sort();
    let mut corrupt: Vec<String> = Vec::new();
    if deep {
        for h in &wanted {
            if let Err(
                crate::store::blobs::BlobError::Corrupt(_) | crate::store::blobs::BlobError::Io(..),
            ) = ledger.blobs.get(h)
            {
                corrupt.push(h.to_hex());
            }
        }
        corrupt.sort();
    }
    Ok(Report {
        ok: devices.iter().all(|d| d.error.is_none())
            && missing.is_empty()
            && corrupt.is_empty()
            && index_error.is_none(),
        index_error,
        corrupt_blobs: corrupt,
        blobs_checked: wanted.len(),
        devices,
        missing_blobs: missing,
    })
}
