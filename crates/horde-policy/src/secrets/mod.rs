//! Secret scanning and redaction: finds credentials (cloud and forge tokens, model-provider
//! keys, PEM private keys, JWTs, URLs with passwords, high-entropy assignments) in text, and
//! replaces each with `[REDACTED:<rule>:<fp8>]` before the text is stored anywhere.
//!
//! How a scan runs, and why it is fast: every rule names keywords that must occur in or next to
//! what it finds (`ghp_`, `-----begin`, `password` …). One Aho-Corasick automaton over all
//! keywords (ASCII case-insensitive) walks the text once; only the rules whose keywords occur
//! run their regex, and only on the region around the hit (its line, or a bounded block for
//! multi-line secrets). Regexes are compiled once, in [`Scanner::new`].
//!
//! Invariants: a [`Finding`]'s `start..end` is the byte range of the secret itself (not of the
//! whole match) and lies on `char` boundaries of the scanned text; findings are sorted by
//! `start` and never overlap (when two rules claim overlapping bytes the rule listed first in
//! [`rules`] wins, so a specific token rule beats a generic one); [`Scanner::redact`] leaves
//! none of a finding's bytes in its output. An allow-listed path, a secret matching an
//! allow-list pattern, or a line carrying [`ALLOW_MARKER`] yields no finding.

mod fingerprint;
mod rules;

use std::collections::BTreeMap;

use aho_corasick::{AhoCorasick, AhoCorasickKind, MatchKind};
use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use regex::Regex;
use serde::Serialize;

pub use fingerprint::FingerprintKey;
use rules::{Check, RULES, Region};

/// Put this on a line to tell the scanner that what it holds is not a secret.
pub const ALLOW_MARKER: &str = "horde:allow-secret";

/// How far back and forward from a keyword hit a line region may reach: a minified file's
/// "line" can be megabytes, and a secret sits next to its keyword.
pub const MAX_LINE_REGION: usize = 4 * 1024;

/// The largest PEM private key block looked for after a `-----BEGIN` (an 8192-bit RSA key in
/// PEM is about 6.5 KiB).
pub const MAX_PEM_BYTES: usize = 16 * 1024;

/// A file whose first bytes hold a NUL is binary and is not scanned.
pub const BINARY_SNIFF_BYTES: usize = 8 * 1024;

/// The entropy bar of hex values in assignments (see `Scanner::accept`).
const HEX_MIN_ENTROPY: f64 = 3.0;

/// The payload of jwt.io's sample token (`{"sub":"1234567890","name":"John Doe",…`), pasted
/// into countless docs and tests: a documented example, like AWS's `…EXAMPLE` keys.
const JWT_IO_SAMPLE_PAYLOAD: &str = "eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIi";

/// Most entries an allow-list may hold, of paths and of patterns each.
pub const MAX_ALLOW_ENTRIES: usize = 1024;

/// Longest path glob or pattern accepted in an allow-list.
pub const MAX_ALLOW_ENTRY_LEN: usize = 1024;

/// The kind of secret a rule finds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Family {
    Aws,
    GitHub,
    GitLab,
    Slack,
    Stripe,
    Google,
    OpenAi,
    Anthropic,
    HuggingFace,
    PrivateKey,
    Jwt,
    DatabaseUrl,
    Generic,
}

impl Family {
    pub const ALL: [Family; 13] = [
        Family::Aws,
        Family::GitHub,
        Family::GitLab,
        Family::Slack,
        Family::Stripe,
        Family::Google,
        Family::OpenAi,
        Family::Anthropic,
        Family::HuggingFace,
        Family::PrivateKey,
        Family::Jwt,
        Family::DatabaseUrl,
        Family::Generic,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Family::Aws => "aws",
            Family::GitHub => "github",
            Family::GitLab => "gitlab",
            Family::Slack => "slack",
            Family::Stripe => "stripe",
            Family::Google => "google",
            Family::OpenAi => "openai",
            Family::Anthropic => "anthropic",
            Family::HuggingFace => "hugging-face",
            Family::PrivateKey => "private-key",
            Family::Jwt => "jwt",
            Family::DatabaseUrl => "database-url",
            Family::Generic => "generic",
        }
    }
}

impl std::fmt::Display for Family {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error("secrets allow-list: bad path glob {glob:?}: {source}")]
    BadPathGlob {
        glob: String,
        #[source]
        source: globset::Error,
    },
    #[error(
        "secrets allow-list: path glob {glob:?} matches every path; name the files to skip instead"
    )]
    PathGlobMatchesEverything { glob: String },
    #[error("secrets allow-list: bad pattern {pattern:?}: {source}")]
    BadPattern {
        pattern: String,
        #[source]
        source: Box<regex::Error>,
    },
    #[error(
        "secrets allow-list: pattern {pattern:?} matches the empty string, so it would allow every secret"
    )]
    PatternMatchesEverything { pattern: String },
    #[error("secrets allow-list: {what} entry {entry:?}… is {len} bytes, more than {limit}")]
    EntryTooLong {
        what: &'static str,
        entry: String,
        len: usize,
        limit: usize,
    },
    #[error("secrets allow-list: {count} {what} entries, more than {limit}")]
    TooManyEntries {
        what: &'static str,
        count: usize,
        limit: usize,
    },
    #[error("secrets rule {id}: {message}")]
    Rule { id: &'static str, message: String },
}

/// What the scanner must not report: files by path glob (`/`-separated, relative to the
/// repository; `*` does not cross `/`, `**` does) and secrets by regex (matched against the
/// secret itself, not the whole line).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowList {
    pub paths: Vec<String>,
    pub patterns: Vec<String>,
}

/// One secret found in a text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// The id of the rule that found it (see [`Scanner::rules`]).
    pub rule: &'static str,
    pub family: Family,
    /// Byte range of the secret itself in the scanned text.
    pub start: usize,
    pub end: usize,
    /// 1-based line of `start`.
    pub line: usize,
    /// 1-based byte column of `start` in its line.
    pub column: usize,
}

impl Finding {
    /// The secret's bytes in the text this finding came from; `None` if `haystack` is not
    /// that text (too short).
    pub fn secret<'t>(&self, haystack: &'t [u8]) -> Option<&'t [u8]> {
        haystack.get(self.start..self.end)
    }

    /// The keyed fingerprint of the secret (64 hex digits); `None` if `haystack` is not the
    /// text this finding came from.
    pub fn fingerprint(&self, haystack: impl AsRef<[u8]>, key: &FingerprintKey) -> Option<String> {
        self.secret(haystack.as_ref()).map(|s| key.fingerprint(s))
    }
}

/// A text with every secret replaced, and what was replaced (ranges refer to the original).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redacted {
    pub text: String,
    pub findings: Vec<Finding>,
}

struct CompiledRule {
    spec: &'static rules::RuleSpec,
    regex: Regex,
}

/// The compiled rule set and allow-list. Building one compiles ~30 regexes and an automaton:
/// build it once and share it (it is `Send + Sync`).
pub struct Scanner {
    rules: Vec<CompiledRule>,
    keywords: AhoCorasick,
    /// For each keyword (automaton pattern id), the rules it triggers.
    keyword_rules: Vec<Vec<usize>>,
    allow_paths: GlobSet,
    allow_patterns: Vec<Regex>,
}

impl std::fmt::Debug for Scanner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scanner")
            .field("rules", &self.rules.len())
            .field("allow_paths", &self.allow_paths.len())
            .field("allow_patterns", &self.allow_patterns.len())
            .finish()
    }
}

impl Default for Scanner {
    /// The shipped rules with an empty allow-list.
    fn default() -> Self {
        Scanner::new(AllowList::default())
            .expect("the shipped rules compile (checked by the unit test shipped_rules_compile)")
    }
}

impl Scanner {
    pub fn new(allow: AllowList) -> Result<Self, SecretsError> {
        let mut rules = Vec::with_capacity(RULES.len());
        let mut keywords: Vec<&'static str> = Vec::new();
        let mut keyword_rules: Vec<Vec<usize>> = Vec::new();
        for (index, spec) in RULES.iter().enumerate() {
            let regex = Regex::new(spec.regex).map_err(|e| SecretsError::Rule {
                id: spec.id,
                message: e.to_string(),
            })?;
            if regex.captures_len() <= spec.secret_group {
                return Err(SecretsError::Rule {
                    id: spec.id,
                    message: format!("no capture group {}", spec.secret_group),
                });
            }
            if spec.keywords.is_empty() {
                return Err(SecretsError::Rule {
                    id: spec.id,
                    message: "no keywords".into(),
                });
            }
            for &kw in spec.keywords {
                if kw.bytes().any(|b| !b.is_ascii() || b.is_ascii_uppercase()) {
                    return Err(SecretsError::Rule {
                        id: spec.id,
                        message: format!("keyword {kw:?} is not lowercase ASCII"),
                    });
                }
                match keywords.iter().position(|k| *k == kw) {
                    Some(p) => keyword_rules[p].push(index),
                    None => {
                        keywords.push(kw);
                        keyword_rules.push(vec![index]);
                    }
                }
            }
            rules.push(CompiledRule { spec, regex });
        }
        let automaton = AhoCorasick::builder()
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::Standard)
            .kind(Some(AhoCorasickKind::DFA))
            .build(&keywords)
            .map_err(|e| SecretsError::Rule {
                id: "keywords",
                message: e.to_string(),
            })?;
        Ok(Scanner {
            rules,
            keywords: automaton,
            keyword_rules,
            allow_paths: build_path_globs(&allow.paths)?,
            allow_patterns: build_patterns(&allow.patterns)?,
        })
    }

    /// The id and family of every shipped rule, in priority order.
    pub fn rules(&self) -> impl Iterator<Item = (&'static str, Family)> + '_ {
        self.rules.iter().map(|r| (r.spec.id, r.spec.family))
    }

    /// Whether the allow-list skips this repository-relative path.
    pub fn path_allowed(&self, rel_path: &str) -> bool {
        self.allow_paths.is_match(rel_path)
    }

    /// The secrets in `text`, sorted by position.
    pub fn scan(&self, text: &str) -> Vec<Finding> {
        let mut found = Vec::new();
        self.scan_into(text, 0, &mut found);
        let mut findings = resolve_overlaps(found);
        set_lines(text.as_bytes(), &mut findings);
        findings
    }

    /// The secrets in a file's bytes: none for an allow-listed path or a binary file (a NUL in
    /// its first [`BINARY_SNIFF_BYTES`]); bytes that are not UTF-8 are skipped, the valid runs
    /// between them scanned, and ranges refer to `bytes`.
    pub fn scan_path(&self, rel_path: &str, bytes: &[u8]) -> Vec<Finding> {
        if self.path_allowed(rel_path) {
            return Vec::new();
        }
        let sniff = &bytes[..bytes.len().min(BINARY_SNIFF_BYTES)];
        if memchr::memchr(0, sniff).is_some() {
            return Vec::new();
        }
        let mut found = Vec::new();
        let mut offset = 0;
        for chunk in bytes.utf8_chunks() {
            self.scan_into(chunk.valid(), offset, &mut found);
            offset += chunk.valid().len() + chunk.invalid().len();
        }
        let mut findings = resolve_overlaps(found);
        set_lines(bytes, &mut findings);
        findings
    }

    /// `text` with every secret replaced by `[REDACTED:<rule>:<fp8>]`, where fp8 is the first
    /// 8 hex digits of the secret's keyed fingerprint.
    pub fn redact(&self, text: &str, key: &FingerprintKey) -> Redacted {
        let findings = self.scan(text);
        let mut out = String::with_capacity(text.len());
        let mut at = 0;
        for f in &findings {
            debug_assert!(
                f.start >= at && f.end <= text.len(),
                "findings are sorted and disjoint"
            );
            out.push_str(&text[at..f.start]);
            let fp = key.fingerprint(&text.as_bytes()[f.start..f.end]);
            out.push_str("[REDACTED:");
            out.push_str(f.rule);
            out.push(':');
            out.push_str(&fp[..8]);
            out.push(']');
            at = f.end;
        }
        out.push_str(&text[at..]);
        Redacted {
            text: out,
            findings,
        }
    }

    /// Appends the candidates found in `text` (which starts at byte `base` of the whole
    /// haystack) to `out`, with ranges relative to the whole haystack. Line numbers are set
    /// later.
    fn scan_into(&self, text: &str, base: usize, out: &mut Vec<Finding>) {
        let bytes = text.as_bytes();
        // For each rule, where the last region it was run on ends: a hit inside it was
        // already covered.
        let mut covered = vec![0usize; self.rules.len()];
        let mut scanned_any = vec![false; self.rules.len()];
        for hit in self.keywords.find_overlapping_iter(text) {
            for &index in &self.keyword_rules[hit.pattern().as_usize()] {
                if scanned_any[index] && hit.start() < covered[index] {
                    continue;
                }
                scanned_any[index] = true;
                let rule = &self.rules[index];
                let (from, to) = region(bytes, hit.start(), hit.end(), rule.spec.region);
                let mut last_match_end = hit.end();
                for caps in rule.regex.captures_iter(&text[from..to]) {
                    let Some(secret) = caps.get(rule.spec.secret_group) else {
                        continue;
                    };
                    last_match_end = from + caps.get(0).map_or(secret.end(), |m| m.end());
                    let (start, end) = (from + secret.start(), from + secret.end());
                    if self.accept(rule, &caps, text, start, end) {
                        out.push(Finding {
                            rule: rule.spec.id,
                            family: rule.spec.family,
                            start: base + start,
                            end: base + end,
                            line: 0,
                            column: 0,
                        });
                    }
                }
                covered[index] = match rule.spec.region {
                    Region::Line => to,
                    // A block region may end inside a second key: scan again from the next
                    // `-----BEGIN` after the last key found.
                    Region::Block(_) => last_match_end,
                };
            }
        }
    }

    fn accept(
        &self,
        rule: &CompiledRule,
        caps: &regex::Captures<'_>,
        text: &str,
        start: usize,
        end: usize,
    ) -> bool {
        let secret = &text[start..end];
        let mut min_entropy = rule.spec.min_entropy;
        if rule.spec.check == Check::Assignment && secret.bytes().all(|b| b.is_ascii_hexdigit()) {
            // 16 symbols carry at most 4 bits: a random hex string's entropy sits near 3.7,
            // so hex values get the lower bar detect-secrets also uses for them.
            min_entropy = min_entropy.min(HEX_MIN_ENTROPY);
        }
        if shannon_entropy(secret.as_bytes()) < min_entropy {
            return false;
        }
        let group = |i: usize| caps.get(i).map_or("", |m| m.as_str());
        let ok = match rule.spec.check {
            Check::None => true,
            Check::NotExample => !secret.contains("EXAMPLE"),
            Check::UrlPassword => url_password_is_real(group(1), secret),
            Check::Assignment => {
                name_is_secret(group(1))
                    && value_is_literal_secret(secret)
                    && !is_type_annotation(&text[end..])
            }
            Check::Jwt => !secret.contains(JWT_IO_SAMPLE_PAYLOAD),
        };
        if !ok || self.allow_patterns.iter().any(|p| p.is_match(secret)) {
            return false;
        }
        !line_has_marker(text.as_bytes(), start) && !line_has_marker(text.as_bytes(), end)
    }
}

fn build_path_globs(paths: &[String]) -> Result<GlobSet, SecretsError> {
    check_entries("path", paths)?;
    let mut set = GlobSetBuilder::new();
    for glob in paths {
        let built = GlobBuilder::new(glob)
            .literal_separator(true)
            .build()
            .map_err(|source| SecretsError::BadPathGlob {
                glob: glob.clone(),
                source,
            })?;
        let matcher = built.compile_matcher();
        if matcher.is_match("zq9.unlikely") && matcher.is_match("zq9/zq9/zq9.unlikely") {
            return Err(SecretsError::PathGlobMatchesEverything { glob: glob.clone() });
        }
        set.add(built);
    }
    set.build().map_err(|source| SecretsError::BadPathGlob {
        glob: paths.join(", "),
        source,
    })
}

fn build_patterns(patterns: &[String]) -> Result<Vec<Regex>, SecretsError> {
    check_entries("pattern", patterns)?;
    patterns
        .iter()
        .map(|p| {
            let re = Regex::new(p).map_err(|source| SecretsError::BadPattern {
                pattern: p.clone(),
                source: Box::new(source),
            })?;
            if re.is_match("") {
                return Err(SecretsError::PatternMatchesEverything { pattern: p.clone() });
            }
            Ok(re)
        })
        .collect()
}

fn check_entries(what: &'static str, entries: &[String]) -> Result<(), SecretsError> {
    if entries.len() > MAX_ALLOW_ENTRIES {
        return Err(SecretsError::TooManyEntries {
            what,
            count: entries.len(),
            limit: MAX_ALLOW_ENTRIES,
        });
    }
    for e in entries {
        if e.len() > MAX_ALLOW_ENTRY_LEN {
            let mut cut = 64;
            while !e.is_char_boundary(cut) {
                cut -= 1;
            }
            return Err(SecretsError::EntryTooLong {
                what,
                entry: e[..cut].to_string(),
                len: e.len(),
                limit: MAX_ALLOW_ENTRY_LEN,
            });
        }
    }
    Ok(())
}

/// The byte range a rule's regex runs on for a keyword hit at `hit_start..hit_end`.
fn region(bytes: &[u8], hit_start: usize, hit_end: usize, kind: Region) -> (usize, usize) {
    let floor = hit_start.saturating_sub(MAX_LINE_REGION);
    let mut from =
        memchr::memrchr(b'\n', &bytes[floor..hit_start]).map_or(floor, |p| floor + p + 1);
    while !is_boundary(bytes, from) {
        from += 1;
    }
    let mut to = match kind {
        Region::Line => {
            let ceil = (hit_end + MAX_LINE_REGION).min(bytes.len());
            memchr::memchr(b'\n', &bytes[hit_end..ceil]).map_or(ceil, |p| hit_end + p)
        }
        Region::Block(len) => (hit_end + len).min(bytes.len()),
    };
    while !is_boundary(bytes, to) {
        to -= 1;
    }
    (from, to.max(from))
}

/// Whether `i` is a `char` boundary of the UTF-8 text `bytes`.
fn is_boundary(bytes: &[u8], i: usize) -> bool {
    i >= bytes.len() || (bytes[i] as i8) >= -0x40
}

/// Whether the line holding byte `at` carries [`ALLOW_MARKER`].
fn line_has_marker(bytes: &[u8], at: usize) -> bool {
    let at = at.min(bytes.len());
    let start = memchr::memrchr(b'\n', &bytes[..at]).map_or(0, |p| p + 1);
    let end = memchr::memchr(b'\n', &bytes[at..]).map_or(bytes.len(), |p| at + p);
    memchr::memmem::find(&bytes[start..end], ALLOW_MARKER.as_bytes()).is_some()
}

/// Shannon entropy of the byte distribution, in bits per byte (0 for empty input).
pub fn shannon_entropy(bytes: &[u8]) -> f64 {
    if bytes.is_empty() {
        return 0.0;
    }
    let mut counts = [0u32; 256];
    for &b in bytes {
        counts[usize::from(b)] += 1;
    }
    let n = bytes.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / n;
            -p * p.log2()
        })
        .sum()
}

/// Keeps, of candidates that overlap, the one whose rule is listed first (then the earliest,
/// then the longest); returns them sorted by start.
fn resolve_overlaps(mut found: Vec<Finding>) -> Vec<Finding> {
    let priority = |rule: &str| {
        RULES
            .iter()
            .position(|r| r.id == rule)
            .unwrap_or(usize::MAX)
    };
    found.sort_by_key(|f| (priority(f.rule), f.start, std::cmp::Reverse(f.end)));
    // start -> index into `found` of the kept candidate
    let mut kept: BTreeMap<usize, usize> = BTreeMap::new();
    for (i, f) in found.iter().enumerate() {
        if f.start >= f.end {
            continue;
        }
        let before = kept.range(..=f.start).next_back();
        let after = kept.range(f.start..f.end).next();
        let overlaps = before.is_some_and(|(_, &k)| found[k].end > f.start) || after.is_some();
        if !overlaps {
            kept.insert(f.start, i);
        }
    }
    let mut out: Vec<Finding> = kept.values().map(|&i| found[i].clone()).collect();
    out.sort_by_key(|f| f.start);
    out
}

/// Fills in `line` and `column` of findings sorted by `start`.
fn set_lines(bytes: &[u8], findings: &mut [Finding]) {
    let mut line = 1;
    let mut line_start = 0;
    let mut at = 0;
    for f in findings.iter_mut() {
        for p in memchr::memchr_iter(b'\n', &bytes[at..f.start]) {
            line += 1;
            line_start = at + p + 1;
        }
        at = f.start;
        f.line = line;
        f.column = f.start - line_start + 1;
    }
}

/// Words that, in the name a value is assigned to, say the value is not itself a secret.
const NON_SECRET_NAME_WORDS: &[&str] = &[
    "hash",
    "hashed",
    "digest",
    "checksum",
    "sha",
    "sha1",
    "sha256",
    "md5",
    "id",
    "ids",
    "name",
    "names",
    "type",
    "types",
    "kind",
    "count",
    "len",
    "length",
    "size",
    "path",
    "file",
    "filename",
    "dir",
    "url",
    "uri",
    "endpoint",
    "prefix",
    "suffix",
    "format",
    "version",
    "header",
    "field",
    "regex",
    "pattern",
    "env",
    "var",
    "ttl",
    "expiry",
    "expires",
    "expiration",
    "timeout",
    "max",
    "min",
    "limit",
    "index",
    "idx",
    "num",
    "mode",
    "policy",
    "bits",
    "cache",
    "public",
    "pub",
    "csrf",
    "label",
    "description",
    "desc",
    "hint",
    "method",
    "scheme",
    "algorithm",
    "alg",
    "encoding",
    "placeholder",
    "example",
    "sample",
    "dummy",
    "fake",
    "mock",
    "template",
    "ref",
    "location",
    "manager",
    "provider",
    "store",
    "storage",
    "kms",
    "arn",
    "policy",
    "rotation",
    "param",
    "parameter",
    "parameters",
    "key_id",
];

/// Endings of a word in the name that make the assignment a secret's.
const SECRET_NAME_ENDINGS: &[&str] = &[
    "password",
    "passwd",
    "pwd",
    "passphrase",
    "secret",
    "secrets",
    "token",
    "tokens",
    "apikey",
    "accesskey",
    "privatekey",
    "authkey",
    "credential",
    "credentials",
];

/// Pairs of adjacent words that name a secret (`api_key`, `apiKey`).
const SECRET_NAME_PAIRS: &[(&str, &str)] = &[
    ("api", "key"),
    ("access", "key"),
    ("private", "key"),
    ("auth", "key"),
    ("secret", "key"),
];

/// Splits an identifier into lowercase words at `_ . -` and at lower→upper case changes.
fn name_words(name: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut prev_lower = false;
    for c in name.chars() {
        if !c.is_ascii_alphanumeric() {
            if !word.is_empty() {
                words.push(std::mem::take(&mut word));
            }
            prev_lower = false;
            continue;
        }
        if c.is_ascii_uppercase() && prev_lower && !word.is_empty() {
            words.push(std::mem::take(&mut word));
        }
        prev_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
        word.push(c.to_ascii_lowercase());
    }
    if !word.is_empty() {
        words.push(word);
    }
    words
}

fn name_is_secret(name: &str) -> bool {
    let words = name_words(name);
    if words
        .iter()
        .any(|w| NON_SECRET_NAME_WORDS.contains(&w.as_str()))
    {
        return false;
    }
    words
        .iter()
        .any(|w| SECRET_NAME_ENDINGS.iter().any(|e| w.ends_with(e)))
        || words
            .windows(2)
            .any(|p| SECRET_NAME_PAIRS.contains(&(p[0].as_str(), p[1].as_str())))
}

/// Substrings (lowercase) of values that are placeholders, not secrets.
const PLACEHOLDER_PARTS: &[&str] = &[
    "example",
    "placeholder",
    "changeme",
    "change_me",
    "change-me",
    "your_",
    "your-",
    "redacted",
    "xxxx",
    "****",
    "....",
    "<",
    ">",
    "{",
    "}",
    "::",
];

fn looks_like_placeholder(value: &str) -> bool {
    let lower = value.to_ascii_lowercase();
    value.starts_with(['$', '%', '&'])
        || PLACEHOLDER_PARTS.iter().any(|p| lower.contains(p))
        || value.bytes().all(|b| Some(&b) == value.as_bytes().first())
}

/// Whether the value of a `name = value` assignment looks like a literal secret rather than
/// code (an identifier path, a number, a placeholder).
fn value_is_literal_secret(value: &str) -> bool {
    let has_digit = value.bytes().any(|b| b.is_ascii_digit());
    let all_digits = value
        .bytes()
        .all(|b| b.is_ascii_digit() || b == b'.' || b == b'-');
    has_digit
        && !all_digits
        && !looks_like_placeholder(value)
        && !is_identifier_path(value)
        && !is_word_chain(value)
}

/// `let private_key: Curve25519Seed = …`: the "value" after the colon was a type.
fn is_type_annotation(after_value: &str) -> bool {
    let rest = after_value.trim_start_matches([' ', '\t', '"', '\'', '`']);
    rest.starts_with('=') && !rest.starts_with("==") && !rest.starts_with("=>")
}

/// `x-aws-ec2-metadata-token`, `auth_token_v2`: lowercase words joined by separators name
/// things; random tokens mix case and digits within their segments.
fn is_word_chain(value: &str) -> bool {
    let segments: Vec<&str> = value.split(['-', '_', '.']).collect();
    segments.len() >= 3
        && segments
            .iter()
            .all(|s| s.len() <= 3 || s.bytes().all(|b| b.is_ascii_lowercase()))
}

/// `self.config.token2`, `a.b.c`: dotted identifiers are code, not secrets.
fn is_identifier_path(value: &str) -> bool {
    value.contains('.')
        && value.split('.').all(|part| {
            part.chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        })
}

/// Passwords in URLs that are placeholders or spelled-out defaults, not secrets.
const PLACEHOLDER_PASSWORDS: &[&str] = &[
    "password", "pass", "passwd", "pwd", "pw", "secret", "changeme", "xxx", "foo", "bar", "baz",
    "test", "user", "admin", "root",
];

fn url_password_is_real(user: &str, password: &str) -> bool {
    let lower = password.to_ascii_lowercase();
    !PLACEHOLDER_PASSWORDS.contains(&lower.as_str())
        && !looks_like_placeholder(password)
        && !password.eq_ignore_ascii_case(user)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scanner() -> Scanner {
        Scanner::default()
    }

    #[test]
    fn shipped_rules_compile() {
        let s = Scanner::new(AllowList::default()).expect("rules compile");
        assert_eq!(s.rules().count(), RULES.len());
        let mut ids: Vec<_> = s.rules().map(|(id, _)| id).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), RULES.len(), "rule ids are unique");
    }

    #[test]
    fn finds_a_token_and_reports_its_exact_range_and_line() {
        let token = "ghp_A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8";
        let text = format!("first line\n  export GITHUB_TOKEN={token}\n");
        let f = scanner().scan(&text);
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].rule, "github-pat");
        assert_eq!(&text[f[0].start..f[0].end], token);
        assert_eq!((f[0].line, f[0].column), (2, 23));
    }

    #[test]
    fn redaction_removes_every_byte_of_each_secret() {
        let key = FingerprintKey::new([9; 32]);
        let pem_body = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj\nMzEfYyjiWA4R4/M2bS1GB4t7NXp98C3SC6dVMvDuictGeurT8jNbvJZHtCSuYEvu\n";
        let text = format!(
            "DATABASE_URL=postgres://app:Zx81kQpLm3@db:5432/app\n\
             db_password = \"Qm9vZ3l3b29n42xx\"\n\
             -----BEGIN PRIVATE KEY-----\n{pem_body}-----END PRIVATE KEY-----\n\
             aws AKIAQ2D5RZ7HN3XJ4KWE done\n"
        );
        let r = scanner().redact(&text, &key);
        assert_eq!(r.findings.len(), 4, "{:?}", r.findings);
        for f in &r.findings {
            let secret = &text[f.start..f.end];
            assert!(!r.text.contains(secret), "{} left in {}", secret, r.text);
            let fp = f.fingerprint(&text, &key).expect("range in text");
            assert!(
                r.text
                    .contains(&format!("[REDACTED:{}:{}]", f.rule, &fp[..8]))
            );
        }
        assert!(!r.text.contains("MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcw"));
        assert!(r.text.contains("postgres://app:[REDACTED:database-url:"));
    }

    #[test]
    fn inline_marker_allows_the_line_only() {
        let token = "glpat-Ab3dE6gH9jK2mN5pQ8sT";
        let text = format!("a = \"{token}\" # horde:allow-secret\nb = \"{token}\"\n");
        let f = scanner().scan(&text);
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].line, 2);
    }

    #[test]
    fn allow_list_paths_and_patterns() {
        let s = Scanner::new(AllowList {
            paths: vec!["fixtures/**".into()],
            patterns: vec!["^sk_test_".into()],
        })
        .expect("valid allow-list");
        let stripe = "key = sk_test_4eC39HqLyjWDarjtT1zdp7dc\n";
        assert!(s.scan(stripe).is_empty());
        let gh = b"ghp_A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8\n";
        assert!(s.scan_path("fixtures/a/b.txt", gh).is_empty());
        assert_eq!(s.scan_path("src/b.txt", gh).len(), 1);
        assert_eq!(scanner().scan(stripe).len(), 1);
    }

    #[test]
    fn bad_allow_list_entries_are_named() {
        let err = Scanner::new(AllowList {
            paths: vec!["src/[".into()],
            patterns: vec![],
        })
        .expect_err("bad glob");
        assert!(err.to_string().contains("src/["), "{err}");
        let err = Scanner::new(AllowList {
            paths: vec![],
            patterns: vec!["ok".into(), "(unclosed".into()],
        })
        .expect_err("bad regex");
        assert!(err.to_string().contains("(unclosed"), "{err}");
        for everything in ["**", "**/*"] {
            let err = Scanner::new(AllowList {
                paths: vec![everything.into()],
                patterns: vec![],
            })
            .expect_err("matches everything");
            assert!(matches!(
                err,
                SecretsError::PathGlobMatchesEverything { .. }
            ));
        }
        let err = Scanner::new(AllowList {
            paths: vec![],
            patterns: vec!["x*".into()],
        })
        .expect_err("matches everything");
        assert!(matches!(err, SecretsError::PatternMatchesEverything { .. }));
        let err = Scanner::new(AllowList {
            paths: vec!["a".repeat(MAX_ALLOW_ENTRY_LEN + 1)],
            patterns: vec![],
        })
        .expect_err("too long");
        assert!(matches!(err, SecretsError::EntryTooLong { .. }));
    }

    #[test]
    fn entropy_threshold_separates_random_from_repetitive_values() {
        assert!(shannon_entropy(b"aaaaaaaa") < 0.01);
        assert!((shannon_entropy(b"abcd") - 2.0).abs() < 1e-9);
        let s = scanner();
        // same shape, one random, one repetitive: only the random one passes 3.5 bits
        let random = "api_key = \"q8Zr2LmX7vTn4KpW9sYd\"\n";
        let repetitive = "api_key = \"ab12ab12ab12ab12ab12\"\n";
        assert!(shannon_entropy(b"q8Zr2LmX7vTn4KpW9sYd") >= 3.5);
        assert!(shannon_entropy(b"ab12ab12ab12ab12ab12") < 3.5);
        assert_eq!(s.scan(random).len(), 1);
        assert!(s.scan(repetitive).is_empty());
    }

    #[test]
    fn code_that_names_secrets_is_not_a_secret() {
        let s = scanner();
        for line in [
            "let token = tokenizer.next_token();",
            "let secret_key = [0u8; 32];",
            "let be_private_key_buffer: Curve25519SeedBin = my_private.as_be_bytes();",
            "const X_AWS_EC2_METADATA_TOKEN: &str = \"x-aws-ec2-metadata-token\";",
            "\"idToken\": \"eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiYWRtaW4iOnRydWV9.EkN-DOsnsuRjRO6BxXemmJDm3HbxrbRzXglbN2S4sOko\"",
            "    token_type = \"Bearer123\"",
            "password = \"${DB_PASSWORD}\"",
            "api_key: &str,",
            "let token = self.tokens2.pop();",
            "let url = format!(\"{}://{}:{}@{}\", scheme, user, password, host);",
            "postgres://postgres:password@localhost/db",
            "\"hashed_secret\": \"a2480a72004fc40d124495fd59f5b482034fbadd\",",
        ] {
            assert!(s.scan(line).is_empty(), "{line}: {:?}", s.scan(line));
        }
    }

    #[test]
    fn binary_and_non_utf8_files() {
        let s = scanner();
        let mut bin = b"\0\x01ELF".to_vec();
        bin.extend_from_slice(b" ghp_A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8 ");
        assert!(s.scan_path("a.bin", &bin).is_empty());
        let mut latin1 = b"caf\xe9 \xff\n".to_vec();
        let at = latin1.len();
        latin1.extend_from_slice(b"ghp_A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8\n");
        let f = s.scan_path("notes.txt", &latin1);
        assert_eq!(f.len(), 1);
        assert_eq!((f[0].start, f[0].line, f[0].column), (at, 2, 1));
    }

    #[test]
    fn back_to_back_private_keys_are_each_found_and_an_unclosed_one_is_not() {
        let body = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj\n";
        let key = format!("-----BEGIN EC PRIVATE KEY-----\n{body}-----END EC PRIVATE KEY-----\n");
        let text = format!("{key}{key}-----BEGIN PRIVATE KEY-----\n{body}(truncated)\n");
        let f = scanner().scan(&text);
        assert_eq!(f.len(), 2, "{f:?}");
        assert_eq!((f[0].line, f[1].line), (1, 4));
        assert_eq!(&text[f[1].start..f[1].end], key.trim_end());
    }

    #[test]
    fn specific_rule_beats_generic_on_the_same_bytes() {
        let text = "GITHUB_TOKEN=\"ghp_A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8\"";
        let f = scanner().scan(text);
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].rule, "github-pat");
    }

    #[test]
    fn regions_stay_on_char_boundaries_in_long_multibyte_lines() {
        let mut text = "é".repeat(MAX_LINE_REGION);
        text.push_str(" secret = \"Zq81kQpLm3Xv9TnB2w\" ");
        text.push_str(&"é".repeat(MAX_LINE_REGION));
        let f = scanner().scan(&text);
        assert_eq!(f.len(), 1);
        assert_eq!(&text[f[0].start..f[0].end], "Zq81kQpLm3Xv9TnB2w");
    }
}
