//! `secrets`: throughput of horde's secret scanner on captured output, against detect-secrets
//! 1.5.0 (the scanner people run in pre-commit) on the same files, with the recall and false
//! positives of both on the same inserted secrets.
//!
//! The corpus: "captured output" files of ~256 KiB (~64 KiB with `--quick`) made of Rust
//! sources from `~/.cargo/registry/src` (every k-th file of the sorted list, so all crates
//! contribute) interleaved with build and log lines, ~50 MB in all (~2 MB with `--quick`).
//! Every ~16 KiB a synthetic secret of one of 15 kinds is inserted at a line of its own, from a
//! seeded generator; the file and line of each are known. Both scanners report lines: an
//! inserted secret is found when its line is reported, any other reported line is a false
//! positive (the Rust sources do hold a few real-looking test keys; both sides see the same).
//!
//! Fairness: ours runs single-threaded on files already in memory (as the edge scans captured
//! output it holds), the scanner built once outside the clock (its build time is printed);
//! detect-secrets runs `detect-secrets -c 1 scan --all-files DIR` (one worker process), timed
//! from spawn to exit, and its start-up cost (the same command on an empty directory) is
//! subtracted before computing its MB/s. The anchor is found through `HORDE_DETECT_SECRETS`
//! (the path of its `detect-secrets` executable); without it only our side is measured.
//! Goal: ours >= 10x its throughput at better recall.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use horde_policy::secrets::Scanner;

use crate::util::{Rng, median};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// ~2 MB of captured output instead of ~50 MB.
    #[arg(long)]
    pub quick: bool,
    /// Timed passes of our scanner over all files; the median is reported.
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
    /// Keep the corpus directory (its path is printed) instead of deleting it.
    #[arg(long)]
    pub keep: bool,
}

/// A corpus file: its name in the corpus directory and its bytes.
type CaptureFile = (String, Vec<u8>);

/// One inserted secret: where, and of which kind.
struct Inserted {
    file: String,
    line: usize,
    kind: &'static str,
}

const KINDS: &[&str] = &[
    "aws-access-key-id",
    "github-pat",
    "gitlab-pat",
    "slack-bot-token",
    "stripe-secret-key",
    "gcp-api-key",
    "openai-api-key",
    "anthropic-api-key",
    "huggingface-token",
    "private-key",
    "jwt",
    "database-url",
    "basic-auth-url",
    "password-assignment",
    "api-key-assignment",
];

const LOG_LINES: &[&str] = &[
    "   Compiling serde_json v1.0.140",
    "    Finished `dev` profile [unoptimized + debuginfo] target(s) in 12.84s",
    "     Running unittests src/lib.rs (target/debug/deps/app-5f1c2e0a9b7d3c41)",
    "test store::tests::roundtrip ... ok",
    "2026-07-01T12:03:44.118Z INFO  server: listening on 0.0.0.0:8080",
    "2026-07-01T12:03:45.002Z DEBUG http: GET /v1/items 200 12ms",
    "warning: unused import: `std::fmt`",
    "$ cargo test -p app --locked",
];

fn chars(rng: &mut Rng, set: &[u8], n: usize) -> String {
    (0..n)
        .map(|_| char::from(set[rng.range(0, set.len() - 1)]))
        .collect()
}

const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const URLSAFE: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";
const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const B64URL: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
const B32: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
const LETTERS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const DIGITS: &[u8] = b"0123456789";
const LOWER: &[u8] = b"abcdefghijklmnopqrstuvwxyz";

/// The text of one inserted secret (several lines for a private key; the secret is reported
/// on the first).
fn secret_text(rng: &mut Rng, kind: &str) -> String {
    match kind {
        "aws-access-key-id" => format!("aws_access_key_id = AKIA{}", chars(rng, B32, 16)),
        "github-pat" => format!(
            "remote: using token ghp_{} for https://github.com/org/repo",
            chars(rng, ALNUM, 36)
        ),
        "gitlab-pat" => format!("export GITLAB_TOKEN=glpat-{}", chars(rng, URLSAFE, 20)),
        "slack-bot-token" => format!(
            "SLACK_BOT_TOKEN=xoxb-{}-{}-{}",
            chars(rng, DIGITS, 12),
            chars(rng, DIGITS, 13),
            chars(rng, ALNUM, 24)
        ),
        "stripe-secret-key" => format!("stripe.api_key = \"sk_live_{}\"", chars(rng, ALNUM, 24)),
        "gcp-api-key" => format!("  \"apiKey\": \"AIza{}\",", chars(rng, URLSAFE, 35)),
        "openai-api-key" => format!(
            "OPENAI_API_KEY=sk-proj-{}T3BlbkFJ{}",
            chars(rng, URLSAFE, 74),
            chars(rng, URLSAFE, 74)
        ),
        "anthropic-api-key" => format!("x-api-key: sk-ant-api03-{}AA", chars(rng, URLSAFE, 93)),
        "huggingface-token" => format!("HF_TOKEN=hf_{}", chars(rng, LETTERS, 34)),
        "private-key" => {
            let mut s = String::from("-----BEGIN RSA PRIVATE KEY-----\n");
            for _ in 0..12 {
                s.push_str(&chars(rng, B64, 64));
                s.push('\n');
            }
            s.push_str("-----END RSA PRIVATE KEY-----");
            s
        }
        "jwt" => {
            // A real JWT's payload is base64url JSON (detect-secrets decodes it to check).
            let payload = format!(
                "{{\"sub\":\"{}\",\"iat\":{},\"scope\":\"repo\"}}",
                chars(rng, ALNUM, 16),
                1_780_000_000 + rng.range(0, 9_999_999)
            );
            format!(
                "Authorization: Bearer eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.{}.{}",
                base64url(payload.as_bytes()),
                chars(rng, URLSAFE, 43)
            )
        }
        "database-url" => format!(
            "DATABASE_URL=postgres://app:{}@db.internal:5432/app",
            chars(rng, ALNUM, 16)
        ),
        "basic-auth-url" => format!(
            "git clone https://deploy:{}@git.corp.internal/team/repo.git",
            chars(rng, ALNUM, 16)
        ),
        "password-assignment" => format!("db_password = \"{}\"", chars(rng, ALNUM, 18)),
        _ => format!(
            "{}_API_KEY=\"{}\"",
            chars(rng, LOWER, 5).to_uppercase(),
            chars(rng, ALNUM, 32)
        ),
    }
}

/// Unpadded base64url, as JWTs use it.
fn base64url(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 4 / 3 + 3);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(char::from(B64URL[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

fn rust_sources(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            match e.file_type() {
                Ok(ft) if ft.is_dir() => stack.push(p),
                Ok(ft) if ft.is_file() && p.extension().is_some_and(|x| x == "rs") => out.push(p),
                _ => {}
            }
        }
    }
    out.sort();
    out
}

/// Writes the corpus into `dir`; returns the files (name, bytes) and the inserted secrets.
fn build_corpus(
    dir: &Path,
    total: usize,
    file_size: usize,
) -> Result<(Vec<CaptureFile>, Vec<Inserted>)> {
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .context("neither CARGO_HOME nor HOME is set")?;
    let registry = home.join("registry/src");
    let sources = rust_sources(&registry);
    if sources.is_empty() {
        bail!(
            "no Rust sources under {} (build the workspace once)",
            registry.display()
        );
    }
    let total_src: u64 = sources
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum();
    let stride = usize::try_from(total_src / total as u64 + 1)
        .unwrap_or(1)
        .max(1);
    let mut rng = Rng::new(0x5ec7_e75b_e7c4);
    let mut files = Vec::new();
    let mut inserted = Vec::new();
    let mut current = String::new();
    let mut line_no = 1;
    let mut since_secret = 0;
    let mut written = 0;
    let mut kind_index = 0;
    let flush = |current: &mut String, line_no: &mut usize, files: &mut Vec<CaptureFile>| {
        let name = format!("capture-{:04}.txt", files.len());
        files.push((name, std::mem::take(current).into_bytes()));
        *line_no = 1;
    };
    // Unreadable files are skipped; bound the walk so a registry of unreadable files ends.
    let max_reads = sources.len().saturating_mul(4).max(1);
    'outer: for path in sources.iter().cycle().step_by(stride).take(max_reads) {
        let Ok(text) = std::fs::read_to_string(path) else {
            continue;
        };
        for line in text.lines() {
            if rng.range(0, 7) == 0 {
                current.push_str(LOG_LINES[rng.range(0, LOG_LINES.len() - 1)]);
                current.push('\n');
                line_no += 1;
            }
            current.push_str(line);
            current.push('\n');
            line_no += 1;
            since_secret += line.len() + 1;
            if since_secret >= 16 * 1024 {
                since_secret = 0;
                let kind = KINDS[kind_index % KINDS.len()];
                kind_index += 1;
                let file = format!("capture-{:04}.txt", files.len());
                inserted.push(Inserted {
                    file,
                    line: line_no,
                    kind,
                });
                let s = secret_text(&mut rng, kind);
                line_no += s.lines().count();
                current.push_str(&s);
                current.push('\n');
            }
            if current.len() >= file_size {
                written += current.len();
                flush(&mut current, &mut line_no, &mut files);
                if written >= total {
                    break 'outer;
                }
            }
        }
    }
    if !current.is_empty() {
        flush(&mut current, &mut line_no, &mut files);
    }
    for (name, bytes) in &files {
        std::fs::write(dir.join(name), bytes).with_context(|| format!("writing {name}"))?;
    }
    Ok((files, inserted))
}

/// Lines reported per file.
type Reported = BTreeMap<String, BTreeSet<usize>>;

struct Quality {
    found: usize,
    per_kind: BTreeMap<&'static str, usize>,
    false_lines: usize,
}

fn quality(inserted: &[Inserted], reported: &Reported) -> Quality {
    let mut q = Quality {
        found: 0,
        per_kind: BTreeMap::new(),
        false_lines: 0,
    };
    let mut expected: BTreeSet<(&str, usize)> = BTreeSet::new();
    for s in inserted {
        expected.insert((s.file.as_str(), s.line));
        if reported.get(&s.file).is_some_and(|l| l.contains(&s.line)) {
            q.found += 1;
            *q.per_kind.entry(s.kind).or_default() += 1;
        }
    }
    for (file, lines) in reported {
        q.false_lines += lines
            .iter()
            .filter(|&&l| !expected.contains(&(file.as_str(), l)))
            .count();
    }
    q
}

/// Runs detect-secrets on `dir`; returns its wall time in seconds and the lines it reported.
fn run_detect_secrets(exe: &Path, dir: &Path) -> Result<(f64, Reported)> {
    let started = Instant::now();
    let out = Command::new(exe)
        .args(["-c", "1", "scan", "--all-files", "."])
        .current_dir(dir)
        .output()
        .with_context(|| format!("running {}", exe.display()))?;
    let secs = started.elapsed().as_secs_f64();
    if !out.status.success() {
        bail!(
            "{} exited with {}: {}",
            exe.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let json: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("parsing detect-secrets' JSON")?;
    let mut reported = Reported::new();
    if let Some(results) = json.get("results").and_then(|r| r.as_object()) {
        for (file, secrets) in results {
            let lines = reported.entry(file.clone()).or_default();
            for s in secrets.as_array().into_iter().flatten() {
                if let Some(l) = s.get("line_number").and_then(|l| l.as_u64()) {
                    lines.insert(usize::try_from(l).unwrap_or(usize::MAX));
                }
            }
        }
    }
    Ok((secs, reported))
}

pub fn run(args: &Args) -> Result<()> {
    let (total, file_size) = if args.quick {
        (2_000_000, 64 * 1024)
    } else {
        (50_000_000, 256 * 1024)
    };
    let tmp = tempfile::Builder::new()
        .prefix("horde-bench-secrets-")
        .tempdir()
        .context("creating a temporary directory")?;
    let corpus = tmp.path().join("corpus");
    std::fs::create_dir(&corpus).context("creating the corpus directory")?;
    let (files, inserted) = build_corpus(&corpus, total, file_size)?;
    let bytes: usize = files.iter().map(|(_, b)| b.len()).sum();
    let mb = bytes as f64 / 1e6;
    println!(
        "secrets: {} files, {mb:.1} MB of captured output (registry Rust sources + log lines), {} inserted secrets of {} kinds",
        files.len(),
        inserted.len(),
        KINDS.len()
    );

    let built = Instant::now();
    let scanner = Scanner::default();
    let build_ms = built.elapsed().as_secs_f64() * 1000.0;
    let mut times = Vec::new();
    let mut ours = Reported::new();
    for _ in 0..args.repeats.max(1) {
        let started = Instant::now();
        let mut reported = Reported::new();
        for (name, b) in &files {
            let found = scanner.scan_path(name, b);
            if !found.is_empty() {
                reported
                    .entry(name.clone())
                    .or_default()
                    .extend(found.iter().map(|f| f.line));
            }
        }
        times.push(started.elapsed().as_secs_f64());
        ours = reported;
    }
    let our_secs = median(&times);
    let our_mbs = mb / our_secs;
    let our_q = quality(&inserted, &ours);

    let theirs = match std::env::var_os("HORDE_DETECT_SECRETS") {
        None => {
            println!(
                "anchor skipped: HORDE_DETECT_SECRETS is not set (path of a detect-secrets 1.5.0 executable)"
            );
            None
        }
        Some(exe) => {
            let exe = PathBuf::from(exe);
            let empty = tmp.path().join("empty");
            std::fs::create_dir(&empty).context("creating an empty directory")?;
            let (startup, _) = run_detect_secrets(&exe, &empty)?;
            let (secs, reported) = run_detect_secrets(&exe, &corpus)?;
            Some((startup, secs, quality(&inserted, &reported)))
        }
    };

    let n = inserted.len();
    let pct = |x: usize| 100.0 * x as f64 / n.max(1) as f64;
    println!();
    match &theirs {
        Some((startup, secs, q)) => {
            println!("{:<34} {:>14} {:>18}", "", "horde", "detect-secrets");
            let scan_secs = (secs - startup).max(1e-9);
            let their_mbs = mb / scan_secs;
            println!(
                "{:<34} {:>14.1} {:>18.2}",
                "throughput, MB/s (single thread)", our_mbs, their_mbs
            );
            println!("{:<34} {:>14.3} {:>18.3}", "time, s", our_secs, secs);
            println!(
                "{:<34} {:>14.1} {:>18.3}",
                "setup, ms (rules / interpreter)",
                build_ms,
                startup * 1000.0
            );
            println!(
                "{:<34} {:>13.1}% {:>17.1}%",
                "recall on inserted secrets",
                pct(our_q.found),
                pct(q.found)
            );
            println!(
                "{:<34} {:>14} {:>18}",
                "other lines reported (FP)", our_q.false_lines, q.false_lines
            );
            println!(
                "{:<34} {:>14.2} {:>18.2}",
                "other lines reported per MB",
                our_q.false_lines as f64 / mb,
                q.false_lines as f64 / mb
            );
            println!();
            println!(
                "{:<22} {:>9} {:>9} {:>15}",
                "kind", "inserted", "horde", "detect-secrets"
            );
            for kind in KINDS {
                let k = inserted.iter().filter(|s| s.kind == *kind).count();
                println!(
                    "{:<22} {:>9} {:>9} {:>15}",
                    kind,
                    k,
                    our_q.per_kind.get(kind).copied().unwrap_or(0),
                    q.per_kind.get(kind).copied().unwrap_or(0)
                );
            }
            println!();
            println!(
                "ratio horde/detect-secrets throughput: {:.1}x (goal >= 10x at better recall: {})",
                our_mbs / their_mbs,
                if our_mbs / their_mbs >= 10.0 && our_q.found > q.found {
                    "met"
                } else {
                    "NOT met"
                }
            );
        }
        None => {
            println!("{:<34} {:>14}", "", "horde");
            println!(
                "{:<34} {:>14.1}",
                "throughput, MB/s (single thread)", our_mbs
            );
            println!("{:<34} {:>14.3}", "time, s", our_secs);
            println!("{:<34} {:>14.1}", "setup, ms (rules)", build_ms);
            println!(
                "{:<34} {:>13.1}%",
                "recall on inserted secrets",
                pct(our_q.found)
            );
            println!(
                "{:<34} {:>14}",
                "other lines reported (FP)", our_q.false_lines
            );
        }
    }
    if args.keep {
        let kept = tmp.keep();
        println!("corpus kept in {}", kept.join("corpus").display());
    }
    Ok(())
}
