//! `horde screen [FILE]`: prompt-injection screening of untrusted content (a fetched page,
//! issue text, a file from outside the repository, tool output) before an agent reads it.
//! Inside a repository the verdict is recorded as an `injection` observation (score,
//! families, quarantined or not; never the content). Quarantined content can still be read,
//! but a tool call it leads to needs an approval: the exit code tells the caller.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Args;
use horde_core::Draft;
use horde_core::proto::Observation;
use horde_core::proto::event_body::Payload;
use horde_policy::injection::{Screener, Source};
use serde_json::json;

use crate::session::{EXIT_QUARANTINED, cwd, open_store};
use crate::store::Layout;
use crate::store::writer::AppendRequest;

/// The most read from a file or stdin; the screener itself looks at the head and tail of
/// long texts.
pub const MAX_SCREEN_INPUT: u64 = 16 * 1024 * 1024;

#[derive(Args, Debug)]
pub struct ScreenArgs {
    /// The content to screen (default: stdin).
    pub file: Option<PathBuf>,
    /// Where it came from: web-page, issue-text, external-file, tool-output or other.
    #[arg(long, default_value = "other")]
    pub source: String,
    /// Do not record the verdict in the ledger.
    #[arg(long)]
    pub no_record: bool,
    /// The agent the content is for (recorded on the observation).
    #[arg(long, default_value = "human")]
    pub agent: String,
    /// The agent session reading it: quarantined content makes every later `horde run --role
    /// … --agent AGENT --session SESSION` ask a person first.
    #[arg(long, default_value = "")]
    pub session: String,
    #[arg(long)]
    pub json: bool,
}

fn parse_source(s: &str) -> Result<Source> {
    Source::ALL
        .into_iter()
        .find(|x| x.as_str() == s)
        .ok_or_else(|| {
            let names: Vec<&str> = Source::ALL.iter().map(|x| x.as_str()).collect();
            anyhow::anyhow!("--source {s:?}: expected one of {}", names.join(", "))
        })
}

pub fn cmd_screen(a: ScreenArgs) -> Result<ExitCode> {
    let source = parse_source(&a.source)?;
    let mut data = Vec::new();
    match &a.file {
        Some(p) => std::fs::File::open(p)
            .with_context(|| format!("cannot read {}", p.display()))?
            .take(MAX_SCREEN_INPUT + 1)
            .read_to_end(&mut data)
            .with_context(|| format!("cannot read {}", p.display()))?,
        None => std::io::stdin()
            .take(MAX_SCREEN_INPUT + 1)
            .read_to_end(&mut data)
            .context("cannot read stdin")?,
    };
    if data.len() as u64 > MAX_SCREEN_INPUT {
        bail!("the content is larger than {MAX_SCREEN_INPUT} bytes; screen it in parts");
    }
    let text = String::from_utf8_lossy(&data);
    let s = Screener::default().screen(&text, source);
    let families: Vec<&str> = s.families().iter().map(|f| f.as_str()).collect();
    let mut recorded = false;
    if !a.no_record && Layout::discover(&cwd()?).is_ok() {
        let store = open_store()?;
        let what = a
            .file
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "stdin".into());
        let summary = format!(
            "{} from {} ({what}, {} bytes): score {:.2}{}",
            if s.quarantined {
                crate::trust::QUARANTINED
            } else {
                "screened"
            },
            source.as_str(),
            data.len(),
            s.score,
            if families.is_empty() {
                String::new()
            } else {
                format!("; {}", families.join(", "))
            }
        );
        let draft = Draft::new(
            store.ledger.meta.timeline,
            a.agent.clone(),
            Payload::Observation(Observation {
                kind: crate::trust::INJECTION.into(),
                summary,
                size: data.len() as u64,
                session: a.session.clone(),
                ..Default::default()
            }),
        );
        store.writer.append(AppendRequest {
            drafts: vec![draft],
            ..Default::default()
        })?;
        recorded = true;
    }
    let mut out = std::io::stdout().lock();
    if a.json {
        serde_json::to_writer_pretty(
            &mut out,
            &json!({
                "score": s.score, "quarantined": s.quarantined, "source": source.as_str(),
                "truncated": s.truncated, "families": families, "signals": s.signals,
                "recorded": recorded,
            }),
        )?;
        writeln!(out)?;
    } else {
        writeln!(
            out,
            "{} score {:.2} ({} signal{})",
            if s.quarantined { "quarantined" } else { "ok" },
            s.score,
            s.signals.len(),
            if s.signals.len() == 1 { "" } else { "s" }
        )?;
        for sig in &s.signals {
            writeln!(
                out,
                "  {:<13} bytes {}..{}  {}",
                sig.family.as_str(),
                sig.start,
                sig.end,
                sig.detail
            )?;
        }
    }
    Ok(if s.quarantined {
        ExitCode::from(EXIT_QUARANTINED)
    } else {
        ExitCode::SUCCESS
    })
}
