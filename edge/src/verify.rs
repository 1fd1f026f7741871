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
}

/// Verifies the whole ledger. `local_key` is this device's public key when known, so its
/// heads must carry exactly that key.
pub fn verify(ledger: &Ledger, local: Option<(DeviceId, [u8; 32])>) -> Result<Report> {
    let mut devices = Vec::new();
    let mut wanted: HashSet<BlobHash> = HashSet::new();
    for device in read::devices(&ledger.conn)? {
        let heads = read::heads(&ledger.conn, device)?;
        let head_seqs: HashSet<u64> = heads.iter().map(|h| h.seq).collect();
        let mut hashes: BTreeMap<u64, EventHash> = BTreeMap::new();
        let mut v = ChainVerifier::new(ledger.meta.project, device);
        let mut error = None;
        let mut events = 0u64;
        read::for_each_event(&ledger.conn, device, |_, hash, body| {
            match v.push(body, hash) {
                Ok(ev) => {
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
            let mut heads_full = heads.clone();
            for h in &mut heads_full {
                h.project_id = ledger.meta.project.to_vec();
            }
            if let Err(e) = check_heads(&heads_full, expected_key.as_ref(), &hashes, v.tip().seq) {
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
    let mut missing: Vec<String> = wanted
        .iter()
        .filter(|h| !ledger.blobs.contains(h))
        .map(|h| h.to_hex())
        .collect();
    missing.sort();
    Ok(Report {
        ok: devices.iter().all(|d| d.error.is_none()) && missing.is_empty(),
        blobs_checked: wanted.len(),
        devices,
        missing_blobs: missing,
    })
}
