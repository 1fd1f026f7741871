//! `horde secrets scan [PATH…]`: the secret scanner for a person. Prints where each secret
//! is, which rule found it and its keyed fingerprint, never the secret itself.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use horde_policy::secrets::Scanner;
use serde_json::json;

use crate::output::{Paint, colour_enabled};
use crate::session::{EXIT_FOUND, cwd};
use crate::store::Layout;

/// Files larger than this are not scanned (and said so): generated data, archives.
pub const MAX_SCAN_FILE: u64 = 16 * 1024 * 1024;

#[derive(Subcommand, Debug)]
pub enum SecretsCommand {
    /// Scan files for secrets (default: the repository, or the current directory), honouring
    /// .gitignore. Exit code: 0 none found, 6 found.
    Scan(ScanArgs),
}

#[derive(Args, Debug)]
pub struct ScanArgs {
    /// Files or directories.
    pub paths: Vec<PathBuf>,
    /// Also files that .gitignore excludes.
    #[arg(long)]
    pub no_ignore: bool,
    #[arg(long)]
    pub json: bool,
}

pub fn cmd_secrets(cmd: SecretsCommand) -> Result<ExitCode> {
    match cmd {
        SecretsCommand::Scan(a) => scan(a),
    }
}

fn scan(a: ScanArgs) -> Result<ExitCode> {
    let here = cwd()?;
    let base = Layout::discover(&here)
        .map(|l| l.root)
        .unwrap_or_else(|_| here.clone());
    let roots = if a.paths.is_empty() {
        vec![base.clone()]
    } else {
        a.paths.clone()
    };
    for r in &roots {
        if !r.exists() {
            anyhow::bail!("{}: no such file or directory", r.display());
        }
    }
    let scanner = Scanner::default();
    let key = crate::config::fingerprint_key()?;
    let mut found = Vec::new();
    let mut skipped = Vec::new();
    let mut files = 0u64;
    let mut bytes = 0u64;
    for root in &roots {
        let mut walk = ignore::WalkBuilder::new(root);
        walk.hidden(false)
            .git_ignore(!a.no_ignore)
            .git_exclude(!a.no_ignore)
            .ignore(!a.no_ignore)
            .parents(!a.no_ignore)
            .filter_entry(|e| {
                let n = e.file_name();
                n != ".git" && n != ".horde"
            });
        for entry in walk.build() {
            let entry = entry.context("cannot walk the tree")?;
            if !entry.file_type().is_some_and(|t| t.is_file()) {
                continue;
            }
            let path = entry.path();
            let shown = display_path(path, &here);
            let len = entry.metadata().map(|m| m.len()).unwrap_or(0);
            if len > MAX_SCAN_FILE {
                skipped.push(format!("{shown}: larger than {MAX_SCAN_FILE} bytes"));
                continue;
            }
            let data = match std::fs::read(path) {
                Ok(d) => d,
                Err(e) => {
                    skipped.push(format!("{shown}: {e}"));
                    continue;
                }
            };
            files += 1;
            bytes += data.len() as u64;
            let rel = path
                .strip_prefix(&base)
                .map(|p| p.to_string_lossy().replace('\\', "/"))
                .unwrap_or_else(|_| shown.clone());
            for f in scanner.scan_path(&rel, &data) {
                let fp = f.fingerprint(&data, &key).unwrap_or_default();
                found.push((shown.clone(), f, fp));
            }
        }
    }
    let mut out = std::io::stdout().lock();
    if a.json {
        let list: Vec<_> = found
            .iter()
            .map(|(p, f, fp)| {
                json!({
                    "path": p, "line": f.line, "column": f.column, "rule": f.rule,
                    "family": f.family.as_str(), "fingerprint": fp,
                })
            })
            .collect();
        serde_json::to_writer_pretty(
            &mut out,
            &json!({ "files": files, "bytes": bytes, "findings": list, "skipped": skipped }),
        )?;
        writeln!(out)?;
    } else {
        let paint = Paint(colour_enabled());
        for (p, f, fp) in &found {
            writeln!(
                out,
                "{}:{}:{}  {}  {}  {}",
                p,
                f.line,
                f.column,
                paint.red(f.rule),
                paint.dim(f.family.as_str()),
                paint.dim(&fp[..fp.len().min(16)])
            )?;
        }
        for s in &skipped {
            eprintln!("horde: skipped {s}");
        }
        writeln!(
            out,
            "{} secret{} in {files} file{} ({} bytes scanned).",
            found.len(),
            if found.len() == 1 { "" } else { "s" },
            if files == 1 { "" } else { "s" },
            bytes
        )?;
    }
    Ok(if found.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_FOUND)
    })
}

fn display_path(p: &Path, here: &Path) -> String {
    p.strip_prefix(here)
        .unwrap_or(p)
        .to_string_lossy()
        .into_owned()
}
