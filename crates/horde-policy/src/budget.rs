//! Error budgets per agent and task, and the handoff a successor agent starts with: pure state,
//! no I/O.
//!
//! An agent may spend a bounded number of errors in total, a bounded number of occurrences of
//! the *same* error (recognised by a fingerprint of its normalised message, so `line 12` and
//! `line 40` are one error), and a bounded number of procedure violations. The record that goes
//! past a limit returns a [`Breach`]; the caller records it (a revocation `Signal`) and writes a
//! [`Handoff`] for the successor.
//!
//! Invariants: a breach is reported exactly once per [`BudgetState`] (the first one; later
//! records keep counting and [`BudgetState::breach`] keeps returning it); the fingerprint table
//! is bounded by [`MAX_TRACKED_FINGERPRINTS`], evicting the rarest entry, so an agent that
//! produces endless distinct errors still meets the total budget.

use std::collections::HashMap;
use std::fmt;
use std::sync::LazyLock;

use regex::Regex;
use serde::{Deserialize, Serialize};

/// Distinct error fingerprints remembered per state; beyond it the rarest is forgotten.
pub const MAX_TRACKED_FINGERPRINTS: usize = 256;
/// Characters of a normalised message kept as its fingerprint.
pub const MAX_FINGERPRINT_CHARS: usize = 200;
/// Bytes of a message looked at when fingerprinting (long outputs differ only in their tails).
pub const MAX_MESSAGE_BYTES: usize = 4096;
/// Items rendered per handoff list; the rest are counted.
pub const MAX_HANDOFF_ITEMS: usize = 50;
/// Characters rendered per handoff item.
pub const MAX_HANDOFF_ITEM_CHARS: usize = 1000;
/// Largest handoff JSON accepted by [`Handoff::from_json`].
pub const MAX_HANDOFF_JSON_BYTES: usize = 256 * 1024;

/// Limits per agent and task. A breach happens when a count goes *past* its limit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ErrorBudget {
    /// Errors of any kind allowed in one task.
    pub max_errors: u32,
    /// Occurrences allowed of one error (same fingerprint): the next one is a breach — the
    /// agent is going round in circles.
    pub max_repeats: u32,
    /// Procedure violations allowed in one task.
    pub max_violations: u32,
}

impl Default for ErrorBudget {
    fn default() -> Self {
        ErrorBudget {
            max_errors: 20,
            max_repeats: 3,
            max_violations: 2,
        }
    }
}

/// What happened, as the budget sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum ErrorKind {
    /// A failed step: a command that failed, a test that did not pass, a tool error.
    Error { message: String },
    /// A procedure violation: a denied action attempted, a required step skipped.
    Violation { rule: String },
}

/// Which budget a breach exhausted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BudgetKind {
    Errors,
    Repeats,
    Violations,
}

impl BudgetKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BudgetKind::Errors => "errors",
            BudgetKind::Repeats => "repeats",
            BudgetKind::Violations => "violations",
        }
    }
}

impl fmt::Display for BudgetKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A budget gone past its limit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Breach {
    pub budget: BudgetKind,
    /// The count that went past the limit.
    pub count: u32,
    pub limit: u32,
    /// For a repeat breach: the repeated error's fingerprint; otherwise the last one seen.
    pub fingerprint: Option<Fingerprint>,
    /// Totals at the breach, for the record.
    pub errors: u32,
    pub violations: u32,
}

impl fmt::Display for Breach {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} budget exhausted: {} > {}",
            self.budget, self.count, self.limit
        )?;
        if let Some(fp) = &self.fingerprint {
            write!(f, " (error: {fp})")?;
        }
        Ok(())
    }
}

/// An error message with what varies between occurrences (numbers, paths, hex, UUIDs) replaced,
/// so repeats of one error compare equal.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Fingerprint(String);

impl Fingerprint {
    /// Fingerprints `message` (only its first [`MAX_MESSAGE_BYTES`]).
    pub fn of(message: &str) -> Fingerprint {
        static UUID: LazyLock<Regex> = LazyLock::new(|| {
            Regex::new(r"(?i)\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b")
                .expect("static UUID pattern compiles")
        });
        // A word with a slash or backslash in it, optionally a drive letter: `src/a.rs`,
        // `/tmp/x`, `C:\x`, `./run.sh`.
        static PATH: LazyLock<Regex> = LazyLock::new(|| {
            Regex::new(r"(?:[A-Za-z]:)?[\w.~@+-]*(?:[/\\][\w.~@+-]*)+")
                .expect("static path pattern compiles")
        });
        static HEX: LazyLock<Regex> = LazyLock::new(|| {
            Regex::new(r"(?i)\b(?:0x[0-9a-f]+|[0-9a-f]*[0-9][0-9a-f]*[a-f][0-9a-f]*|[0-9a-f]*[a-f][0-9a-f]*[0-9][0-9a-f]*)\b")
                .expect("static hex pattern compiles")
        });
        static NUMBER: LazyLock<Regex> =
            LazyLock::new(|| Regex::new(r"\d+").expect("static number pattern compiles"));
        static SPACE: LazyLock<Regex> =
            LazyLock::new(|| Regex::new(r"\s+").expect("static space pattern compiles"));

        let head = clip(message, MAX_MESSAGE_BYTES);
        let s = UUID.replace_all(head, "<id>");
        let s = PATH.replace_all(&s, "<path>");
        // Hex needs a digit and a letter, so plain words (`face`, `added`) stay words; short
        // mixed tokens like `e0425` (an error code) would go too, which is why they are only
        // replaced from 6 characters on.
        let s = HEX.replace_all(&s, |c: &regex::Captures<'_>| {
            let m = c.get(0).map_or("", |m| m.as_str());
            if m.len() >= 6 || m.starts_with("0x") || m.starts_with("0X") {
                "<hex>".to_owned()
            } else {
                m.to_owned()
            }
        });
        let s = NUMBER.replace_all(&s, "<n>");
        let s = SPACE.replace_all(s.trim(), " ");
        let lower = s.to_lowercase();
        Fingerprint(lower.chars().take(MAX_FINGERPRINT_CHARS).collect())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The longest prefix of `s` of at most `max` bytes that ends on a char boundary.
fn clip(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Counts against one [`ErrorBudget`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BudgetState {
    pub budget: ErrorBudget,
    pub errors: u32,
    pub violations: u32,
    /// Occurrences per error fingerprint (bounded by [`MAX_TRACKED_FINGERPRINTS`]).
    #[serde(with = "fingerprint_counts")]
    repeats: HashMap<Fingerprint, u32>,
    last: Option<Fingerprint>,
    breach: Option<Breach>,
}

/// JSON object keys must be strings: store the map as a list of pairs.
mod fingerprint_counts {
    use super::Fingerprint;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use std::collections::HashMap;

    pub fn serialize<S: Serializer>(
        map: &HashMap<Fingerprint, u32>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        let mut pairs: Vec<(&Fingerprint, &u32)> = map.iter().collect();
        pairs.sort();
        pairs.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<HashMap<Fingerprint, u32>, D::Error> {
        let pairs: Vec<(Fingerprint, u32)> = Vec::deserialize(d)?;
        if pairs.len() > super::MAX_TRACKED_FINGERPRINTS {
            return Err(serde::de::Error::custom(format!(
                "{} error fingerprints, more than the {} a budget tracks",
                pairs.len(),
                super::MAX_TRACKED_FINGERPRINTS
            )));
        }
        Ok(pairs.into_iter().collect())
    }
}

impl PartialOrd for Fingerprint {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Fingerprint {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.cmp(&other.0)
    }
}

impl BudgetState {
    pub fn new(budget: ErrorBudget) -> Self {
        BudgetState {
            budget,
            errors: 0,
            violations: 0,
            repeats: HashMap::new(),
            last: None,
            breach: None,
        }
    }

    /// Records one error or violation. Returns the breach it caused if it is the first one.
    pub fn record(&mut self, kind: ErrorKind) -> Option<Breach> {
        let breach = match kind {
            ErrorKind::Error { message } => self.count_error(Fingerprint::of(&message)),
            ErrorKind::Violation { rule } => {
                self.violations = self.violations.saturating_add(1);
                (self.violations > self.budget.max_violations).then(|| Breach {
                    budget: BudgetKind::Violations,
                    count: self.violations,
                    limit: self.budget.max_violations,
                    fingerprint: Some(Fingerprint::of(&rule)),
                    errors: self.errors,
                    violations: self.violations,
                })
            }
        };
        self.first(breach)
    }

    /// Records an error already fingerprinted; returns the breach it caused if it is the first.
    pub fn record_error(&mut self, fingerprint: Fingerprint) -> Option<Breach> {
        let breach = self.count_error(fingerprint);
        self.first(breach)
    }

    /// Keeps and returns `breach` if it is the first one.
    fn first(&mut self, breach: Option<Breach>) -> Option<Breach> {
        if self.breach.is_some() {
            return None;
        }
        self.breach.clone_from(&breach);
        breach
    }

    /// Counts an error; returns the budget it exceeds, if any.
    fn count_error(&mut self, fingerprint: Fingerprint) -> Option<Breach> {
        self.errors = self.errors.saturating_add(1);
        if !self.repeats.contains_key(&fingerprint)
            && self.repeats.len() >= MAX_TRACKED_FINGERPRINTS
        {
            // Forget the rarest error; ties broken by text so the choice is deterministic.
            if let Some(rarest) = self
                .repeats
                .iter()
                .min_by(|a, b| a.1.cmp(b.1).then_with(|| a.0.cmp(b.0)))
                .map(|(k, _)| k.clone())
            {
                self.repeats.remove(&rarest);
            }
        }
        let seen = self.repeats.entry(fingerprint.clone()).or_insert(0);
        *seen = seen.saturating_add(1);
        let seen = *seen;
        self.last = Some(fingerprint.clone());
        // The repeat budget is the sharper signal (an agent in a loop), so it wins a tie.
        if seen > self.budget.max_repeats {
            Some(Breach {
                budget: BudgetKind::Repeats,
                count: seen,
                limit: self.budget.max_repeats,
                fingerprint: Some(fingerprint),
                errors: self.errors,
                violations: self.violations,
            })
        } else if self.errors > self.budget.max_errors {
            Some(Breach {
                budget: BudgetKind::Errors,
                count: self.errors,
                limit: self.budget.max_errors,
                fingerprint: Some(fingerprint),
                errors: self.errors,
                violations: self.violations,
            })
        } else {
            None
        }
    }

    /// The first breach, once there has been one.
    pub fn breach(&self) -> Option<&Breach> {
        self.breach.as_ref()
    }

    /// Occurrences of one error so far.
    pub fn occurrences(&self, fingerprint: &Fingerprint) -> u32 {
        self.repeats.get(fingerprint).copied().unwrap_or(0)
    }

    /// The errors seen, most frequent first (ties by text): material for a handoff's `blocks`.
    pub fn frequent_errors(&self) -> Vec<(Fingerprint, u32)> {
        let mut v: Vec<(Fingerprint, u32)> =
            self.repeats.iter().map(|(k, n)| (k.clone(), *n)).collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        v
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HandoffError {
    #[error("handoff JSON is {0} bytes, more than the {MAX_HANDOFF_JSON_BYTES} accepted")]
    TooLarge(usize),
    #[error("handoff JSON is not a valid handoff: {0}")]
    Json(#[from] serde_json::Error),
}

/// What a successor agent is started with after a breach: what was tried, what blocks, what to
/// do next. Stored as a JSON blob; rendered into the successor's prompt with
/// [`Handoff::to_markdown`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Handoff {
    pub role: String,
    pub task: String,
    pub tried: Vec<String>,
    pub blocks: Vec<String>,
    pub next_actions: Vec<String>,
    pub breach: Breach,
}

impl Handoff {
    pub fn to_json(&self) -> Result<String, HandoffError> {
        Ok(serde_json::to_string_pretty(self)?)
    }

    /// Parses a stored handoff, refusing one larger than [`MAX_HANDOFF_JSON_BYTES`].
    pub fn from_json(json: &str) -> Result<Handoff, HandoffError> {
        if json.len() > MAX_HANDOFF_JSON_BYTES {
            return Err(HandoffError::TooLarge(json.len()));
        }
        Ok(serde_json::from_str(json)?)
    }

    /// The handoff as a prompt section. Every item is one bullet on one line (newlines inside an
    /// item become spaces, so an item cannot open a heading of its own) and lists are bounded.
    pub fn to_markdown(&self) -> String {
        let mut out = String::new();
        out.push_str("## Handoff\n\n");
        out.push_str(&format!("- Role: {}\n", one_line(&self.role)));
        out.push_str(&format!("- Task: {}\n", one_line(&self.task)));
        out.push_str(&format!(
            "- Stopped because: {}\n",
            one_line(&self.breach.to_string())
        ));
        section(&mut out, "What was tried", &self.tried);
        section(&mut out, "What blocks", &self.blocks);
        section(&mut out, "Next actions", &self.next_actions);
        out
    }
}

fn section(out: &mut String, title: &str, items: &[String]) {
    out.push_str(&format!("\n### {title}\n\n"));
    if items.is_empty() {
        out.push_str("- (none recorded)\n");
        return;
    }
    for item in items.iter().take(MAX_HANDOFF_ITEMS) {
        out.push_str(&format!("- {}\n", one_line(item)));
    }
    if items.len() > MAX_HANDOFF_ITEMS {
        out.push_str(&format!(
            "- … and {} more\n",
            items.len() - MAX_HANDOFF_ITEMS
        ));
    }
}

/// Whitespace runs (newlines included) become one space; bounded to [`MAX_HANDOFF_ITEM_CHARS`].
fn one_line(s: &str) -> String {
    let joined = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if joined.chars().count() <= MAX_HANDOFF_ITEM_CHARS {
        return joined;
    }
    let mut cut: String = joined.chars().take(MAX_HANDOFF_ITEM_CHARS).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_strips_what_varies() {
        let a = Fingerprint::of("error[E0425]: cannot find value `x` in src/main.rs:12:5");
        let b = Fingerprint::of("error[E0425]: cannot find value `x` in src/lib.rs:40:9");
        assert_eq!(a, b);
        let c = Fingerprint::of("error[E0425]: cannot find value `y` in src/lib.rs:40:9");
        assert_ne!(a, c);
    }

    #[test]
    fn fingerprint_strips_hex_and_uuids() {
        let a = Fingerprint::of(
            "object deadbeef12 missing, request 550e8400-e29b-41d4-a716-446655440000",
        );
        let b = Fingerprint::of(
            "object 0a1b2c3d4e missing, request 123e4567-e89b-12d3-a456-426614174000",
        );
        assert_eq!(a, b);
    }

    #[test]
    fn clip_respects_char_boundaries() {
        assert_eq!(clip("héllo", 2), "h");
        assert_eq!(clip("abc", 10), "abc");
    }

    #[test]
    fn one_line_flattens_and_bounds() {
        assert_eq!(one_line("a\n## b\n c"), "a ## b c");
        let long = "x".repeat(MAX_HANDOFF_ITEM_CHARS + 5);
        assert_eq!(one_line(&long).chars().count(), MAX_HANDOFF_ITEM_CHARS + 1);
    }
}
