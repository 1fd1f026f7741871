//! Secrets never enter the ledger: what `horde run` captures (output, arguments, titles) is
//! redacted with horde-policy's scanner before it is stored, and each finding becomes an
//! `Observation` of kind `secret` (rule, stream, line, keyed fingerprint), never the secret.
//! Files in the tree are not redacted: restore must give back exact bytes.

use std::sync::OnceLock;

use horde_core::proto::Observation;
use horde_core::proto::event_body::Payload;
use horde_core::{Draft, TimelineId};
use horde_policy::secrets::{FingerprintKey, Scanner};

/// At most this many findings of one stream become their own events; the rest are counted in
/// one more (a dump of a key file must not flood the log).
pub const MAX_FINDING_EVENTS: usize = 50;

/// The shipped rule set, compiled once per process.
pub fn scanner() -> &'static Scanner {
    static SCANNER: OnceLock<Scanner> = OnceLock::new();
    SCANNER.get_or_init(Scanner::default)
}

/// One redacted secret: enough to find and recognise it, nothing to reuse it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub rule: &'static str,
    pub family: &'static str,
    /// 1-based line in the redacted text's source.
    pub line: usize,
    pub fingerprint: String,
}

/// Redacts `data`, which may not be UTF-8: each valid UTF-8 run is scanned on its own and
/// invalid bytes pass through unchanged.
pub fn redact_bytes(data: &[u8], key: &FingerprintKey) -> (Vec<u8>, Vec<Found>) {
    let mut out = Vec::with_capacity(data.len());
    let mut found = Vec::new();
    let mut lines_before = 0usize;
    for chunk in data.utf8_chunks() {
        let text = chunk.valid();
        let r = scanner().redact(text, key);
        for f in &r.findings {
            found.push(Found {
                rule: f.rule,
                family: f.family.as_str(),
                line: lines_before + f.line,
                fingerprint: key.fingerprint(&text.as_bytes()[f.start..f.end]),
            });
        }
        out.extend_from_slice(r.text.as_bytes());
        out.extend_from_slice(chunk.invalid());
        lines_before += text.bytes().filter(|b| *b == b'\n').count()
            + chunk.invalid().iter().filter(|b| **b == b'\n').count();
    }
    (out, found)
}

/// Redacts a string (an argument, a title).
pub fn redact_str(text: &str, key: &FingerprintKey) -> (String, Vec<Found>) {
    let r = scanner().redact(text, key);
    let found = r
        .findings
        .iter()
        .map(|f| Found {
            rule: f.rule,
            family: f.family.as_str(),
            line: f.line,
            fingerprint: key.fingerprint(&text.as_bytes()[f.start..f.end]),
        })
        .collect();
    (r.text, found)
}

/// The `secret` observations for what was redacted from `place` (`stdout`, `args` …).
pub fn finding_events(
    found: &[Found],
    place: &str,
    timeline: TimelineId,
    agent: &str,
) -> Vec<Draft> {
    let mut out: Vec<Draft> = found
        .iter()
        .take(MAX_FINDING_EVENTS)
        .map(|f| {
            Draft::new(
                timeline,
                agent,
                Payload::Observation(Observation {
                    kind: "secret".into(),
                    summary: format!(
                        "{} ({}) redacted from {place} line {}; fingerprint {}",
                        f.rule, f.family, f.line, f.fingerprint
                    ),
                    ..Default::default()
                }),
            )
        })
        .collect();
    if found.len() > MAX_FINDING_EVENTS {
        out.push(Draft::new(
            timeline,
            agent,
            Payload::Observation(Observation {
                kind: "secret".into(),
                summary: format!(
                    "{} more secrets redacted from {place}",
                    found.len() - MAX_FINDING_EVENTS
                ),
                ..Default::default()
            }),
        ));
    }
    out
}
