//! Per-device hash chains and their verification.
//!
//! [`ChainVerifier`] is fed one device's events in seq order (as stored) and stops at the first
//! problem, naming the seq where the chain breaks: an altered body, a missing or reordered row,
//! a forged link. Signed heads are checked against the hashes seen at their seqs, so a
//! deleted tail is caught too.

use std::collections::BTreeMap;

use crate::event::{DecodeError, decode_event};
use crate::hash::EventHash;
use crate::ids::{DeviceId, ProjectId};
use crate::keys::{KeyError, verify_head};
use crate::proto;

/// The last event of a chain: `seq` 0 and no hash before the first event.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChainTip {
    pub seq: u64,
    pub hash: Option<EventHash>,
}

impl ChainTip {
    pub fn advance(&mut self, hash: EventHash) {
        self.seq += 1;
        self.hash = Some(hash);
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    #[error("seq {seq}: {source}")]
    Corrupt {
        seq: u64,
        #[source]
        source: DecodeError,
    },
    #[error(
        "seq {expected}: expected the next event to be seq {expected}, found seq {found} (rows missing or reordered)"
    )]
    SeqGap { expected: u64, found: u64 },
    #[error("seq {seq}: prev_hash does not match the hash of seq {} (the chain was altered)", seq - 1)]
    BrokenLink { seq: u64 },
    #[error("seq {seq}: event belongs to another {what}")]
    Foreign { seq: u64, what: &'static str },
}

impl ChainError {
    /// The first seq at which the chain cannot be trusted.
    pub fn seq(&self) -> u64 {
        match self {
            Self::Corrupt { seq, .. } | Self::BrokenLink { seq } | Self::Foreign { seq, .. } => {
                *seq
            }
            Self::SeqGap { expected, .. } => *expected,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HeadError {
    #[error("signed head at seq {seq}: {source}")]
    Signature {
        seq: u64,
        #[source]
        source: KeyError,
    },
    #[error(
        "signed head at seq {seq} does not match the event stored at that seq (the event or the head was altered)"
    )]
    Mismatch { seq: u64 },
    #[error(
        "signed head at seq {seq} is past the end of the log at seq {last} (events were removed)"
    )]
    PastEnd { seq: u64, last: u64 },
    #[error("signed head at seq {seq} was signed by key {found}, not this device's key {expected}")]
    WrongKey {
        seq: u64,
        found: String,
        expected: String,
    },
}

/// Verifies one device's chain in one project, event by event.
pub struct ChainVerifier {
    project: ProjectId,
    device: DeviceId,
    tip: ChainTip,
}

impl ChainVerifier {
    pub fn new(project: ProjectId, device: DeviceId) -> Self {
        Self::resume(project, device, ChainTip::default())
    }

    /// Continues a chain already verified up to `tip` (the cloud's device cursor).
    pub fn resume(project: ProjectId, device: DeviceId, tip: ChainTip) -> Self {
        Self {
            project,
            device,
            tip,
        }
    }

    pub fn tip(&self) -> ChainTip {
        self.tip
    }

    /// Checks the next stored event and returns its decoded body.
    pub fn push(&mut self, body: &[u8], hash: &[u8]) -> Result<proto::EventBody, ChainError> {
        let expected = self.tip.seq + 1;
        let ev = decode_event(body, hash).map_err(|source| ChainError::Corrupt {
            seq: expected,
            source,
        })?;
        if ev.seq != expected {
            return Err(ChainError::SeqGap {
                expected,
                found: ev.seq,
            });
        }
        if ev.project_id != self.project.as_bytes() {
            return Err(ChainError::Foreign {
                seq: expected,
                what: "project",
            });
        }
        if ev.device_id != self.device.as_bytes() {
            return Err(ChainError::Foreign {
                seq: expected,
                what: "device",
            });
        }
        let prev_ok = match self.tip.hash {
            None => ev.prev_hash.is_empty(),
            Some(h) => ev.prev_hash == h.as_bytes(),
        };
        if !prev_ok {
            return Err(ChainError::BrokenLink { seq: expected });
        }
        let hash = EventHash::from_slice(hash).expect("decode_event checked the hash length");
        self.tip.advance(hash);
        Ok(ev)
    }
}

/// Checks signed heads against a verified chain: each head's signature, its key, and that the
/// hash it signs is the hash stored at its seq. `hashes` maps seq → hash for at least the seqs
/// of the heads; `last` is the last verified seq.
pub fn check_heads(
    heads: &[proto::ChainHead],
    expected_key: Option<&[u8; 32]>,
    hashes: &BTreeMap<u64, EventHash>,
    last: u64,
) -> Result<(), HeadError> {
    for head in heads {
        verify_head(head).map_err(|source| HeadError::Signature {
            seq: head.seq,
            source,
        })?;
        if let Some(key) = expected_key
            && head.public_key != key.as_slice()
        {
            return Err(HeadError::WrongKey {
                seq: head.seq,
                found: hex::encode(&head.public_key),
                expected: hex::encode(key),
            });
        }
        if head.seq > last {
            return Err(HeadError::PastEnd {
                seq: head.seq,
                last,
            });
        }
        match hashes.get(&head.seq) {
            Some(h) if h.as_bytes().as_slice() == head.hash.as_slice() => {}
            _ => return Err(HeadError::Mismatch { seq: head.seq }),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Draft, build_event};
    use crate::ids::TimelineId;
    use crate::proto::{Signal, event_body::Payload};
    use proptest::prelude::*;

    fn chain(n: usize) -> (ProjectId, DeviceId, Vec<(Vec<u8>, EventHash)>) {
        let (p, d, tl) = (ProjectId::new(), DeviceId::new(), TimelineId::new());
        let mut tip = ChainTip::default();
        let mut out = Vec::new();
        for i in 0..n {
            let draft = Draft::new(
                tl,
                "a",
                Payload::Signal(Signal {
                    kind: 1,
                    subject: format!("{i}"),
                    detail: String::new(),
                    blob: Vec::new(),
                }),
            );
            let ev = build_event(p, d, &tip, draft).expect("fits");
            tip.advance(ev.hash);
            out.push((ev.body, ev.hash));
        }
        (p, d, out)
    }

    fn verify(p: ProjectId, d: DeviceId, evs: &[(Vec<u8>, EventHash)]) -> Result<u64, ChainError> {
        let mut v = ChainVerifier::new(p, d);
        for (body, hash) in evs {
            v.push(body, hash.as_bytes())?;
        }
        Ok(v.tip().seq)
    }

    #[test]
    fn intact_chain_verifies() {
        let (p, d, evs) = chain(20);
        assert_eq!(verify(p, d, &evs).expect("intact"), 20);
    }

    proptest! {
        #[test]
        fn any_single_alteration_is_caught_at_or_before_its_seq(
            n in 2usize..30, victim in 0usize..30, byte in 0usize..200, mode in 0u8..4
        ) {
            let (p, d, mut evs) = chain(n);
            let victim = victim % n;
            match mode {
                0 => { // flip a byte of a body, keep stored hash
                    let b = &mut evs[victim].0;
                    let i = byte % b.len();
                    b[i] ^= 0x40;
                }
                1 => { // flip a byte and recompute the stored hash: the link must catch it
                    let b = &mut evs[victim].0;
                    let i = byte % b.len();
                    b[i] ^= 0x40;
                    evs[victim].1 = EventHash::of(&evs[victim].0);
                }
                2 => { evs.remove(victim); }
                _ => { let j = (victim + 1) % n; evs.swap(victim, j); }
            }
            // A removed or rewritten last event leaves a valid shorter chain: only a signed head
            // past it can tell (see check_heads).
            let tail_only = (mode == 1 || mode == 2) && victim == n - 1;
            match verify(p, d, &evs) {
                Ok(_) => prop_assert!(tail_only, "alteration not caught"),
                Err(e) => prop_assert!(e.seq() <= (victim as u64) + 2, "caught too late: {e}"),
            }
        }
    }
}
