//! Shared helpers: medians, number formatting, a tiny PRNG, finding the `horde` binary.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// The median of `xs` (the mean of the middle two for an even count); 0 when empty.
pub fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// `1234567.8` → `"1,234,568"`.
pub fn thousands(x: f64) -> String {
    let digits = format!("{:.0}", x.max(0.0));
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// xorshift64*: deterministic, good enough for test data.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `lo..=hi` (slightly biased; irrelevant here).
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next_u64() % (hi - lo + 1) as u64) as usize
    }

    /// About `len` bytes of text: words and newlines, like source or prose.
    pub fn text(&mut self, len: usize) -> Vec<u8> {
        const WORDS: &[&str] = &[
            "fn", "let", "mut", "self", "return", "match", "horde", "event", "chain", "ledger",
            "blob", "index", "scan", "agent", "step", "record", "hash", "seq", "head", "tree",
            "file", "path", "write", "read", "commit", "sync", "cloud", "edge", "device", "key",
            "signal", "verify",
        ];
        let mut out = Vec::with_capacity(len + 16);
        let mut col = 0;
        while out.len() < len {
            let w = WORDS[(self.next_u64() % WORDS.len() as u64) as usize];
            out.extend_from_slice(w.as_bytes());
            col += w.len() + 1;
            if col > 60 + (self.next_u64() % 20) as usize {
                out.push(b'\n');
                col = 0;
            } else {
                out.push(b' ');
            }
        }
        out.truncate(len);
        out
    }
}

/// The `horde` binary: `$HORDE_BIN`, else `horde` next to this executable; None if missing.
pub fn horde_bin() -> Result<Option<PathBuf>> {
    let path = match std::env::var_os("HORDE_BIN").filter(|v| !v.is_empty()) {
        Some(p) => PathBuf::from(p),
        None => std::env::current_exe()
            .context("cannot find this executable's path")?
            .with_file_name("horde"),
    };
    Ok(path.is_file().then_some(path))
}

pub fn print_missing_horde(what: &str) {
    println!(
        "{what:<14} skipped: no horde binary (set HORDE_BIN, or run `cargo build --release -p horde` so it sits next to horde-bench)"
    );
}

/// Runs `cmd` to completion, failing with its stderr unless it exits 0; returns the output and
/// the wall time from spawn to exit.
pub fn timed(cmd: &mut Command) -> Result<(Output, Duration)> {
    let start = Instant::now();
    let out = cmd
        .output()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    let took = start.elapsed();
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok((out, took))
}

/// The `horde` CLI with a private config dir (the user's device key is never touched), run in
/// `dir`, with no input and no inherited horde settings.
pub fn horde(
    bin: &std::path::Path,
    config: &std::path::Path,
    dir: &std::path::Path,
    args: &[&str],
) -> std::process::Command {
    let mut c = std::process::Command::new(bin);
    c.args(args)
        .current_dir(dir)
        .env("HORDE_CONFIG_DIR", config)
        .env_remove("HORDE_AGENT")
        .env_remove("HORDE_HEAD_INTERVAL")
        .stdin(std::process::Stdio::null());
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helpers() {
        assert_eq!(thousands(1_234_567.4), "1,234,567");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(1000.0), "1,000");
        assert!((median(&[3.0, 1.0, 2.0]) - 2.0).abs() < 1e-9);
        assert!((median(&[4.0, 1.0, 2.0, 3.0]) - 2.5).abs() < 1e-9);
        let mut r = Rng::new(7);
        assert_eq!(r.text(500).len(), 500);
        let x = r.range(500, 8000);
        assert!((500..=8000).contains(&x));
    }
}
