//! What the servers cost, read from `/proc`: resident memory and CPU time of a process, and
//! of a process with its children (PostgreSQL runs one process per connection).

use std::time::Duration;

use anyhow::{Context, Result, bail};

/// Clock ticks per second of `/proc/PID/stat` times.
fn clock_ticks() -> u64 {
    #[allow(unsafe_code)]
    // SAFETY: sysconf(3) reads a constant of the C library; no memory is shared.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(ticks).ok().filter(|t| *t > 0).unwrap_or(100)
}

/// The fields of `/proc/PID/stat` after the command name (which may hold spaces and
/// parentheses), so that `fields[0]` is field 3 (state).
fn stat_fields(pid: u32) -> Result<Vec<u64>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    let Some((_, rest)) = text.rsplit_once(')') else {
        bail!("/proc/{pid}/stat has no command name: {text:?}");
    };
    // The state is a letter; keep its place with 0.
    Ok(rest
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0))
        .collect())
}

fn ticks(fields: &[u64], from: usize, count: usize) -> u64 {
    // `fields[0]` is field 3 of proc(5).
    fields.iter().skip(from - 3).take(count).sum()
}

/// User + system CPU time of `pid` (all its threads).
pub fn cpu_time(pid: u32) -> Result<Duration> {
    let f = stat_fields(pid)?;
    Ok(ticks_to_duration(ticks(&f, 14, 2)))
}

/// CPU time of `pid`, of its reaped children and of its live children: PostgreSQL's
/// postmaster, its connection backends and its background workers (those that exited during
/// the run count through the postmaster's `cutime`/`cstime`).
pub fn tree_cpu_time(pid: u32) -> Result<Duration> {
    let f = stat_fields(pid)?;
    let mut t = ticks(&f, 14, 4);
    for child in children(pid)? {
        if let Ok(f) = stat_fields(child) {
            t += ticks(&f, 14, 2);
        }
    }
    Ok(ticks_to_duration(t))
}

/// CPU time of each of `pid`'s live threads, summed by thread name (tokio's workers share
/// one name), sorted by name.
pub fn threads_cpu_time(pid: u32) -> Result<Vec<(String, Duration)>> {
    let mut by_name = std::collections::BTreeMap::<String, u64>::new();
    let dir = format!("/proc/{pid}/task");
    for entry in std::fs::read_dir(&dir).with_context(|| format!("listing {dir}"))? {
        let Ok(entry) = entry else { continue };
        let path = entry.path();
        let (Ok(name), Ok(stat)) = (
            std::fs::read_to_string(path.join("comm")),
            std::fs::read_to_string(path.join("stat")),
        ) else {
            continue; // the thread exited
        };
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let f: Vec<u64> = rest
            .split_whitespace()
            .map(|f| f.parse().unwrap_or(0))
            .collect();
        *by_name.entry(name.trim().to_owned()).or_default() += ticks(&f, 14, 2);
    }
    Ok(by_name
        .into_iter()
        .map(|(n, t)| (n, ticks_to_duration(t)))
        .collect())
}

fn ticks_to_duration(t: u64) -> Duration {
    Duration::from_nanos(t.saturating_mul(1_000_000_000) / clock_ticks())
}

/// Live children of `pid`.
pub fn children(pid: u32) -> Result<Vec<u32>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").context("listing /proc")? {
        let Ok(entry) = entry else { continue };
        let Some(child) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        // Field 4 is the parent's pid.
        if let Ok(f) = stat_fields(child)
            && f.get(1) == Some(&u64::from(pid))
        {
            out.push(child);
        }
    }
    Ok(out)
}

/// A `kB` line of `/proc/PID/status` (`VmRSS`, `VmHWM`), in bytes.
pub fn status_bytes(pid: u32, key: &str) -> Result<u64> {
    kb_line(&format!("/proc/{pid}/status"), key)
}

/// Proportional set size of `pid` and its live children, in bytes: shared memory (PostgreSQL's
/// shared buffers) counted once across the processes that map it.
pub fn tree_pss(pid: u32) -> Result<u64> {
    let mut total = kb_line(&format!("/proc/{pid}/smaps_rollup"), "Pss")?;
    for child in children(pid)? {
        total += kb_line(&format!("/proc/{child}/smaps_rollup"), "Pss").unwrap_or(0);
    }
    Ok(total)
}

fn kb_line(path: &str, key: &str) -> Result<u64> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix(key)
            && let Some(v) = rest.strip_prefix(':')
        {
            let kb: u64 = v
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse()
                .with_context(|| format!("{path}: {line:?}"))?;
            return Ok(kb * 1024);
        }
    }
    bail!("{path} has no {key} line")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let pid = std::process::id();
        assert!(status_bytes(pid, "VmRSS").expect("VmRSS") > 0);
        assert!(tree_pss(pid).expect("Pss") > 0);
        let spin = std::time::Instant::now();
        while spin.elapsed() < Duration::from_millis(50) {
            std::hint::black_box(0u64);
        }
        let own = cpu_time(pid).expect("cpu");
        assert!(own > Duration::ZERO);
        assert!(tree_cpu_time(pid).expect("cpu") >= own);
        let threads = threads_cpu_time(pid).expect("threads");
        assert!(!threads.is_empty());
    }
}
