//! The ledger commands: `init`, `snapshot`, `log`, `show`, `status`, `verify`.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use horde_core::{DeviceKey, decode_event};
use serde_json::json;

use crate::config::device_key_path;
use crate::output::{Paint, colour_enabled, human_bytes, local_time, summary};
use crate::session::{EXIT_INCOMPLETE, cwd, load_key, open_ledger, open_store, print_problems};
use crate::store::read::{self, LogFilter};

pub fn cmd_init(json: bool) -> Result<ExitCode> {
    let root = cwd()?;
    let init = {
        let spinner = crate::output::Spinner::new("scanning");
        crate::record::init_with_progress(&root, load_key()?, &|n, h| spinner.update(n, h))?
    };
    print_problems(&init.skipped, &init.warnings);
    let meta = init.store.ledger.meta;
    if json {
        println!(
            "{}",
            json!({"project_id": meta.project.to_string(), "timeline_id": meta.timeline.to_string(),
                   "device": init.store.device.to_string(), "entries": init.entries,
                   "total_bytes": init.total_bytes, "skipped": init.skipped})
        );
    } else {
        println!(
            "Initialized horde project {} in {}\nRecorded a checkpoint of {} entries ({}).",
            meta.project,
            init.store.ledger.layout.dir.display(),
            init.entries,
            human_bytes(init.total_bytes)
        );
    }
    Ok(if init.skipped.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_INCOMPLETE)
    })
}

pub fn cmd_snapshot(
    message: Option<String>,
    agent: Option<String>,
    json: bool,
) -> Result<ExitCode> {
    let store = open_store()?;
    let agent = agent.unwrap_or_else(crate::record::outside_agent);
    let mut rec = crate::record::Recorder::new(&store)?;
    let outcome = {
        let spinner = crate::output::Spinner::new("scanning");
        rec.scan_with_progress(&|n, h| spinner.update(n, h))?
    };
    let mut before = Vec::new();
    if let Some(m) = message
        && !outcome.changes.is_empty()
    {
        before.push(horde_core::Draft::new(
            rec.timeline,
            &agent,
            horde_core::proto::event_body::Payload::Message(horde_core::proto::Message {
                from: agent.clone(),
                to: String::new(),
                text: m,
                body_blob: Vec::new(),
            }),
        ));
    }
    let step = rec.commit(outcome, &agent, None, before, Vec::new(), true)?;
    print_problems(&step.skipped, &step.warnings);
    if json {
        println!(
            "{}",
            json!({"changes": step.changes, "events": step.appended.len(),
                   "first_seq": step.appended.first().map(|a| a.seq), "last_seq": step.appended.last().map(|a| a.seq),
                   "skipped": step.skipped})
        );
    } else if step.changes == 0 {
        println!("Nothing changed since the last recorded step.");
    } else {
        println!(
            "Recorded {} changes as #{}..#{}.",
            step.changes,
            step.appended.first().map_or(0, |a| a.seq),
            step.appended.last().map_or(0, |a| a.seq)
        );
    }
    Ok(if step.skipped.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_INCOMPLETE)
    })
}

#[derive(Args, Debug)]
pub struct LogArgs {
    /// Show at most N events.
    #[arg(short = 'n', long, value_name = "N")]
    pub limit: Option<usize>,
    /// Only events of these types (repeatable): decision, state_change, tool_call, task, approval, message, observation, violation, signal, checkpoint.
    #[arg(long = "type", value_name = "TYPE")]
    pub types: Vec<String>,
    /// Only events by this agent (repeatable).
    #[arg(long = "agent", value_name = "NAME")]
    pub agents: Vec<String>,
    /// Only changes to this file or anything under this directory.
    #[arg(long, value_name = "PATH")]
    pub path: Option<String>,
    /// Only events at or after: RFC 3339, a date (2026-11-22), a local time (2026-11-22 14:12), or "10 minutes ago".
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Only events at or before (same forms as --since).
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
    /// Oldest first.
    #[arg(long)]
    pub reverse: bool,
    #[arg(long)]
    pub json: bool,
}

pub fn cmd_log(a: LogArgs) -> Result<ExitCode> {
    let filter = LogFilter {
        limit: a.limit,
        ..crate::query::log_filter(
            crate::query::LogText {
                types: a.types,
                agents: a.agents,
                path: a.path,
                since: a.since,
                until: a.until,
                oldest_first: a.reverse,
            },
            "--",
        )?
    };
    let ledger = open_ledger()?;
    let rows = read::log(&ledger.conn, &filter)?;
    let mut out = std::io::stdout().lock();
    if a.json {
        let list = rows
            .iter()
            .map(crate::query::event_json)
            .collect::<Result<Vec<_>>>()?;
        serde_json::to_writer_pretty(&mut out, &list)?;
        writeln!(out)?;
        return Ok(ExitCode::SUCCESS);
    }
    let paint = Paint(colour_enabled());
    // Seqs count per device: when several devices wrote, say whose each one is.
    let several = read::devices(&ledger.conn)?.len() > 1;
    for r in &rows {
        let line = match decode_event(&r.body, &r.hash) {
            Ok(ev) => summary(&ev),
            Err(e) => paint.red(&format!("<corrupt event: {e}>")),
        };
        let seq = if several {
            format!(
                "{}#{:<5}",
                crate::session::short_device(&r.device.to_string()),
                r.seq
            )
        } else {
            format!("#{:<5}", r.seq)
        };
        let res = writeln!(
            out,
            "{} {} {} {} {}",
            paint.yellow(&seq),
            paint.dim(&local_time(r.occurred_at)),
            paint.cyan(&format!("{:<12}", r.kind)),
            paint.green(&format!("{:<10}", r.agent)),
            line
        );
        if res.is_err() {
            break; // e.g. `horde log | head`
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Up to this many bytes of a blob are shown by `horde show`.
const PREVIEW_BYTES: usize = 2048;

pub fn cmd_show(spec: &str, json: bool) -> Result<ExitCode> {
    let ledger = open_ledger()?;
    let device = DeviceKey::load(&device_key_path())
        .ok()
        .map(|k| k.device_id());
    let crate::query::Shown {
        row,
        ev,
        hash,
        blobs,
        withheld,
    } = crate::query::show(&ledger, spec, device)?;
    let mut missing = Vec::new();
    let mut previews = Vec::new();
    for b in &blobs {
        if withheld.contains(b) {
            continue;
        }
        match ledger.blobs.head(b, PREVIEW_BYTES) {
            Ok(data) => previews.push((*b, data)),
            Err(e) => missing.push(e.to_string()),
        }
    }
    if json {
        let mut j = horde_core::json::event_json(&ev, &hash);
        j["synced"] = json!(row.synced);
        j["blobs"] = json!(
            blobs
                .iter()
                .map(
                    |b| json!({"hash": b.to_hex(), "present": ledger.blobs.contains(b),
                                "withheld": withheld.contains(b)})
                )
                .collect::<Vec<_>>()
        );
        println!("{}", serde_json::to_string_pretty(&j)?);
    } else {
        let paint = Paint(colour_enabled());
        let j = horde_core::json::event_json(&ev, &hash);
        println!(
            "{} {}",
            paint.yellow(&format!("event #{}", ev.seq)),
            j["id"].as_str().unwrap_or("")
        );
        println!("type      {}", j["type"].as_str().unwrap_or("?"));
        println!("summary   {}", summary(&ev));
        println!(
            "agent     {}{}",
            ev.agent_id,
            if ev.role.is_empty() {
                String::new()
            } else {
                format!(" ({})", ev.role)
            }
        );
        println!(
            "time      {} ({})",
            local_time(ev.occurred_at),
            j["occurred_at"].as_str().unwrap_or("")
        );
        println!("device    {}", j["device"].as_str().unwrap_or(""));
        println!("timeline  {}", j["timeline_id"].as_str().unwrap_or(""));
        println!("hash      {hash}");
        if let Some(p) = j["prev_hash"].as_str() {
            println!("prev      {p}");
        }
        if let Some(c) = j["causation_id"].as_str() {
            println!("caused by {c}");
        }
        println!("synced    {}", if row.synced { "yes" } else { "no" });
        println!(
            "payload   {}",
            serde_json::to_string_pretty(&j["payload"])?.replace('\n', "\n          ")
        );
        for b in &withheld {
            println!(
                "\n{}",
                paint.bold(&format!(
                    "blob {} {}{}",
                    b.short(),
                    crate::output::WITHHELD_NOTE,
                    if ledger.blobs.contains(b) {
                        ": here, not previewed"
                    } else {
                        ": not here"
                    }
                ))
            );
        }
        for (b, data) in &previews {
            println!(
                "\n{}",
                paint.bold(&format!(
                    "blob {} (first {})",
                    b.short(),
                    human_bytes(data.len() as u64)
                ))
            );
            match std::str::from_utf8(data) {
                Ok(text) => println!("{text}"),
                Err(e) if e.valid_up_to() + 4 >= data.len() => {
                    println!("{}", String::from_utf8_lossy(&data[..e.valid_up_to()]))
                }
                Err(_) => println!("(binary content)"),
            }
        }
    }
    for m in &missing {
        eprintln!("horde: error: {m}");
    }
    Ok(if missing.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

pub fn cmd_status(json: bool) -> Result<ExitCode> {
    let ledger = open_ledger()?;
    let key = DeviceKey::load(&device_key_path()).ok();
    let counts = read::counts(&ledger.conn)?;
    let device = key.as_ref().map(|k| k.device_id());
    let head = match device {
        Some(d) => read::last_head(&ledger.conn, ledger.meta.project, d)?,
        None => None,
    };
    let index = read::load_worktree(&ledger.conn, ledger.meta.timeline)?;
    let pending = {
        let spinner = crate::output::Spinner::new("scanning");
        // Only counts what is pending: nothing is recorded, so nothing to withhold.
        crate::scan::scan_with_progress(
            &ledger.layout.root,
            &ledger.blobs,
            &index,
            None,
            &|n, h| spinner.update(n, h),
        )?
    };
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "project_id": ledger.meta.project.to_string(),
                "timeline_id": ledger.meta.timeline.to_string(),
                "device": device.map(|d| d.to_string()),
                "root": ledger.layout.root.display().to_string(),
                "events": counts.events,
                "unsynced": counts.unsynced,
                "last_event_at": counts.last_occurred_at.map(horde_core::time::format_micros),
                "last_chain_head": head.as_ref().map(|h| json!({
                    "seq": h.seq, "hash": hex::encode(&h.hash),
                    "signed_at": horde_core::time::format_micros(h.signed_at)})),
                "unrecorded_changes": pending.changes.len(),
                "remote": crate::sync::remotes::status_json(&ledger, device)?,
            }))?
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!("project    {}", ledger.meta.project);
    println!("timeline   {}", ledger.meta.timeline);
    if let Some(d) = device {
        println!("device     {d}");
    }
    println!("root       {}", ledger.layout.root.display());
    println!(
        "events     {} ({} not synced)",
        counts.events, counts.unsynced
    );
    if let Some(t) = counts.last_occurred_at {
        println!("last event {}", local_time(t));
    }
    match &head {
        Some(h) => println!(
            "chain head #{} {} signed {}",
            h.seq,
            hex::encode(&h.hash[..6]),
            local_time(h.signed_at)
        ),
        None => println!("chain head none signed by this device yet"),
    }
    crate::commands::remote::print_status(&crate::sync::remotes::status_json(&ledger, device)?);
    match pending.changes.len() {
        0 => println!("tree       clean: everything is recorded"),
        n => {
            println!("tree       {n} changes not yet recorded (`horde snapshot` records them):");
            for c in pending.changes.iter().take(20) {
                println!(
                    "             {} {}",
                    c.op.as_str_name()
                        .trim_start_matches("OP_")
                        .to_ascii_lowercase(),
                    c.path
                );
            }
            if n > 20 {
                println!("             … and {} more", n - 20);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn cmd_verify(deep: bool, json: bool) -> Result<ExitCode> {
    let ledger = open_ledger()?;
    let local = DeviceKey::load(&device_key_path())
        .ok()
        .map(|k| (k.device_id(), k.public_key()));
    let report = crate::verify::verify_with(&ledger, local, deep)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_verify(&report, &Paint(colour_enabled()));
    }
    Ok(if report.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

pub fn print_verify(report: &crate::verify::Report, paint: &Paint) {
    for d in &report.devices {
        match &d.error {
            None => println!(
                "device {}: {} events, chain intact, {} signed heads (last #{})",
                d.device,
                d.events,
                d.heads,
                d.last_signed_seq.map_or("none".into(), |s| s.to_string())
            ),
            Some(e) => println!("device {}: {} {e}", d.device, paint.red("BROKEN at")),
        }
    }
    if let Some(e) = &report.index_error {
        println!("{} {e}", paint.red("INDEX"));
    }
    if !report.missing_blobs.is_empty() {
        println!(
            "{} {} of {} referenced blobs are missing:",
            paint.red("MISSING"),
            report.missing_blobs.len(),
            report.blobs_checked
        );
        for b in report.missing_blobs.iter().take(20) {
            println!("  {b}");
        }
    }
    if !report.corrupt_blobs.is_empty() {
        println!(
            "{} {} blobs do not match their hash:",
            paint.red("CORRUPT"),
            report.corrupt_blobs.len()
        );
        for b in report.corrupt_blobs.iter().take(20) {
            println!("  {b}");
        }
    }
    if report.ok {
        println!(
            "{} {} referenced blobs present",
            paint.green("verified:"),
            report.blobs_checked
        );
    } else {
        println!("{}", paint.red("verification FAILED"));
    }
}
