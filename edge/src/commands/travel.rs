//! Time travel: `restore`, `diff`, `history`, `fork`, `timeline list|switch`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use horde_core::{RepoPath, decode_event};
use serde_json::json;

use crate::output::{Paint, colour_enabled, human_bytes, local_time, summary};
use crate::query::{change_json, point_json, report_json};
use crate::session::{EXIT_INCOMPLETE, cwd, local_device, open_ledger, open_store, print_problems};
use crate::store::{Store, read};

#[derive(Args, Debug)]
pub struct RestoreArgs {
    /// The point: HEAD, a seq of this device (#12), an event id or a unique prefix of one, or a
    /// time (RFC 3339, a date, a local time such as "2026-11-22 14:12", or "10 minutes ago": the
    /// last event of this timeline at or before it).
    #[arg(long, value_name = "POINT")]
    pub at: String,
    /// Write the tree into DIR (new or empty) instead of over the working tree.
    #[arg(long, value_name = "DIR")]
    pub to: Option<PathBuf>,
    /// In place: discard unrecorded changes in the tree instead of refusing.
    #[arg(long)]
    pub force: bool,
    /// Hash every file while writing it (otherwise sizes are checked).
    #[arg(long)]
    pub verify: bool,
    /// Who is restoring, recorded with the step (default: $HORDE_AGENT, else $USER).
    #[arg(long, env = "HORDE_AGENT")]
    pub agent: Option<String>,
    #[arg(long)]
    pub json: bool,
}

fn print_anomalies(state: &horde_replay::State) {
    for a in state.anomalies() {
        eprintln!("horde: warning: {}: {}", a.path, a.what);
    }
    let more = state
        .anomaly_count()
        .saturating_sub(state.anomalies().len());
    if more > 0 {
        eprintln!("horde: warning: … and {more} more such changes not applied");
    }
}

fn print_kept(report: &horde_replay::RestoreReport) {
    for k in &report.kept {
        eprintln!("horde: warning: kept {k}/: it holds files horde does not track");
    }
    for p in &report.protected {
        eprintln!("horde: warning: not restored: {p} (inside .horde/)");
    }
    for p in &report.withheld {
        eprintln!(
            "horde: warning: withheld: {p} (its content stays on the device that recorded it)"
        );
    }
}

pub fn cmd_restore(a: RestoreArgs) -> Result<ExitCode> {
    use crate::timetravel as tt;
    if let Some(dir) = &a.to {
        let ledger = open_ledger()?;
        let at = tt::resolve_point(&ledger.conn, &a.at, ledger.meta.timeline, local_device())?;
        let state = tt::state_at(&ledger, at.point)?;
        print_anomalies(&state);
        let dir = cwd()?.join(dir);
        if let Ok(d) = dir.canonicalize().or_else(|_| {
            dir.parent()
                .map_or(Err(std::io::ErrorKind::NotFound.into()), |p| {
                    p.canonicalize()
                })
        }) && d.starts_with(&ledger.layout.root)
        {
            eprintln!(
                "horde: warning: {} is inside the repository; its files will be recorded unless .hordeignore lists it",
                dir.display()
            );
        }
        let report = {
            let bar = crate::output::RestoreBar::new();
            tt::restore_to(&ledger, &state, &dir, a.verify, &|p| bar.update(p))
                .with_context(|| format!("restoring into {}", dir.display()))?
        };
        print_kept(&report);
        if a.json {
            println!(
                "{}",
                json!({"at": point_json(&at), "to": dir.display().to_string(), "report": report_json(&report)})
            );
        } else {
            println!(
                "Wrote the tree as of {} into {}: {} files and links ({}), {} directories.",
                at.label(),
                dir.display(),
                report.written,
                human_bytes(report.bytes),
                report.dirs_created
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    let store = open_store()?;
    let at = tt::resolve_point(
        &store.ledger.conn,
        &a.at,
        store.ledger.meta.timeline,
        Some(store.device),
    )?;
    let state = tt::state_at(&store.ledger, at.point)?;
    print_anomalies(&state);
    let mut rec = crate::record::Recorder::new(&store)?;
    let current = tt::disk_state(&rec, a.force)?;
    if horde_replay::diff(&current, &state).is_empty() {
        if a.json {
            println!(
                "{}",
                json!({"at": point_json(&at), "report": report_json(&Default::default()), "first_seq": null, "last_seq": null})
            );
        } else {
            println!("The tree is already as of {}; nothing to do.", at.label());
        }
        return Ok(ExitCode::SUCCESS);
    }
    let report = {
        let bar = crate::output::RestoreBar::new();
        tt::restore_in_place(&store.ledger, &state, &current, a.verify, &|p| {
            bar.update(p)
        })?
    };
    print_kept(&report);
    let agent = a.agent.unwrap_or_else(crate::record::outside_agent);
    let note = horde_core::Draft::new(
        rec.timeline,
        &agent,
        horde_core::proto::event_body::Payload::Message(horde_core::proto::Message {
            from: agent.clone(),
            to: String::new(),
            text: format!(
                "restored the tree to #{} (event {}, {})",
                at.event.seq,
                at.event.id,
                horde_core::time::format_micros(at.event.occurred_at)
            ),
            body_blob: Vec::new(),
        }),
    );
    let step = rec.step(&agent, Some(at.event.id), vec![note], true)?;
    print_problems(&step.skipped, &step.warnings);
    let (first, last) = (
        step.appended.first().map(|x| x.seq),
        step.appended.last().map(|x| x.seq),
    );
    if a.json {
        println!(
            "{}",
            json!({"at": point_json(&at), "report": report_json(&report),
                   "changes": step.changes, "first_seq": first, "last_seq": last})
        );
    } else {
        println!(
            "Restored the tree to {}: {} files and links written, {} paths removed; recorded as {} changes (#{}..#{}).",
            at.label(),
            report.written,
            report.removed,
            step.changes,
            first.unwrap_or(0),
            last.unwrap_or(0)
        );
    }
    Ok(if step.skipped.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_INCOMPLETE)
    })
}

pub fn cmd_diff(from: &str, to: Option<&str>, json_out: bool) -> Result<ExitCode> {
    use crate::timetravel as tt;
    let ledger = open_ledger()?;
    let device = local_device();
    let a = tt::resolve_point(&ledger.conn, from, ledger.meta.timeline, device)?;
    let b = tt::resolve_point(
        &ledger.conn,
        to.unwrap_or("HEAD"),
        ledger.meta.timeline,
        device,
    )?;
    let (sa, sb) = (
        tt::state_at(&ledger, a.point)?,
        tt::state_at(&ledger, b.point)?,
    );
    let changes = horde_replay::diff(&sa, &sb);
    let mut out = std::io::stdout().lock();
    if json_out {
        let list: Vec<_> = changes.iter().map(change_json).collect();
        serde_json::to_writer_pretty(
            &mut out,
            &json!({"from": point_json(&a), "to": point_json(&b), "changes": list}),
        )?;
        writeln!(out)?;
        return Ok(ExitCode::SUCCESS);
    }
    let paint = Paint(colour_enabled());
    for c in &changes {
        let detail = match (&c.before, &c.after) {
            (Some(x), Some(y)) if x.kind != y.kind => {
                format!(" ({} → {})", x.kind.as_str(), y.kind.as_str())
            }
            (Some(x), Some(y)) if x.hash == y.hash => format!(" ({:o} → {:o})", x.mode, y.mode),
            (Some(x), Some(y)) => format!(" ({} → {})", human_bytes(x.size), human_bytes(y.size)),
            _ => String::new(),
        };
        let what = match c.what() {
            "added" => paint.green("added   "),
            "deleted" => paint.red("deleted "),
            other => paint.yellow(&format!("{other:<8}")),
        };
        let slash = if c
            .after
            .as_ref()
            .or(c.before.as_ref())
            .is_some_and(|e| e.kind == horde_replay::Kind::Dir)
        {
            "/"
        } else {
            ""
        };
        if writeln!(out, "{what} {}{slash}{detail}", c.path).is_err() {
            break;
        }
    }
    if changes.is_empty() {
        eprintln!(
            "horde: no differences between {} and {}",
            a.label(),
            b.label()
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub fn cmd_history(path: &str, json_out: bool) -> Result<ExitCode> {
    use crate::timetravel as tt;
    let path = RepoPath::parse(path).context("the path")?;
    let ledger = open_ledger()?;
    let head = tt::head(&ledger.conn, ledger.meta.timeline)?;
    let rows = tt::path_history(&ledger.conn, head, &path)?;
    let mut out = std::io::stdout().lock();
    if json_out {
        let list = rows
            .iter()
            .map(crate::query::event_json)
            .collect::<Result<Vec<_>>>()?;
        serde_json::to_writer_pretty(&mut out, &list)?;
        writeln!(out)?;
        return Ok(ExitCode::SUCCESS);
    }
    if rows.is_empty() {
        eprintln!("horde: no recorded changes to {path} on this timeline");
        return Ok(ExitCode::FAILURE);
    }
    let paint = Paint(colour_enabled());
    for r in &rows {
        let line = match decode_event(&r.body, &r.hash) {
            Ok(ev) => summary(&ev),
            Err(e) => paint.red(&format!("<corrupt event: {e}>")),
        };
        if writeln!(
            out,
            "{} {} {} {}",
            paint.yellow(&format!("#{:<5}", r.seq)),
            paint.dim(&local_time(r.occurred_at)),
            paint.green(&format!("{:<10}", r.agent)),
            line
        )
        .is_err()
        {
            break;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// After the tree was rewritten for `timeline`, refreshes its index (timestamps) without
/// recording anything that was already recorded.
fn refresh_index(store: &Store, timeline: horde_core::TimelineId) -> Result<crate::record::Step> {
    let mut rec = crate::record::Recorder::for_timeline(store, timeline)?;
    Ok(rec.step(&crate::record::outside_agent(), None, Vec::new(), false)?)
}

pub fn cmd_fork(at: &str, name: Option<String>, force: bool, json_out: bool) -> Result<ExitCode> {
    use crate::timetravel as tt;
    let store = open_store()?;
    let at = tt::resolve_point(
        &store.ledger.conn,
        at,
        store.ledger.meta.timeline,
        Some(store.device),
    )?;
    let state = tt::state_at(&store.ledger, at.point)?;
    print_anomalies(&state);
    let rec = crate::record::Recorder::new(&store)?;
    let current = tt::disk_state(&rec, force)?;
    let tl = tt::fork(&store, &at, &state, name)?;
    tt::set_current(&store.ledger.conn, tl.id)?;
    let report = {
        let bar = crate::output::RestoreBar::new();
        tt::restore_in_place(&store.ledger, &state, &current, false, &|p| bar.update(p))?
    };
    print_kept(&report);
    let step = refresh_index(&store, tl.id)?;
    print_problems(&step.skipped, &step.warnings);
    if json_out {
        println!(
            "{}",
            json!({"timeline_id": tl.id.to_string(), "name": tl.label(), "at": point_json(&at),
                   "report": report_json(&report)})
        );
    } else {
        println!(
            "Forked timeline {} ({}) at {}; the tree is as it was then and recording continues on the new timeline.",
            tl.label(),
            tl.id,
            at.label()
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub fn cmd_timeline_list(json_out: bool) -> Result<ExitCode> {
    use crate::timetravel as tt;
    let ledger = open_ledger()?;
    let all = tt::timelines(&ledger.conn)?;
    let label_of = |id: horde_core::TimelineId| {
        all.iter()
            .find(|t| t.id == id)
            .map_or_else(|| id.to_string(), |t| t.label())
    };
    let mut list = Vec::new();
    for t in &all {
        let fork_seq = match t.parent {
            Some(_) => read::event_by_local_id(&ledger.conn, t.fork_id)?.map(|r| r.seq),
            None => None,
        };
        list.push((t, fork_seq, tt::event_count(&ledger.conn, t.id)?));
    }
    if json_out {
        let v: Vec<_> = list
            .iter()
            .map(|(t, fork_seq, events)| {
                json!({"timeline_id": t.id.to_string(), "name": t.label(),
                       "current": t.id == ledger.meta.timeline,
                       "parent": t.parent.map(|p| p.to_string()),
                       "fork_seq": fork_seq, "fork_event": t.fork_event.map(|e| e.to_string()),
                       "events": events,
                       "created_at": (t.created_at > 0).then(|| horde_core::time::format_micros(t.created_at))})
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    for (t, fork_seq, events) in &list {
        let mark = if t.id == ledger.meta.timeline {
            "*"
        } else {
            " "
        };
        let from = match (t.parent, fork_seq) {
            (Some(p), Some(seq)) => format!(", forked from {} at #{seq}", label_of(p)),
            (Some(p), None) => format!(", forked from {}", label_of(p)),
            _ => String::new(),
        };
        println!("{mark} {:<16} {}  {events} events{from}", t.label(), t.id);
    }
    Ok(ExitCode::SUCCESS)
}

/// The event id of a local point.
fn head_event_id(store: &Store, p: crate::timetravel::Point) -> Result<horde_core::EventId> {
    Ok(read::event_by_local_id(&store.ledger.conn, p.id)?
        .context("the timeline's head event is not there")?
        .id)
}

pub fn cmd_timeline_switch(spec: &str, force: bool) -> Result<ExitCode> {
    use crate::timetravel as tt;
    let store = open_store()?;
    let target = tt::find_timeline(&store.ledger.conn, spec)?;
    if target.id == store.ledger.meta.timeline {
        println!("Already on timeline {}.", target.label());
        return Ok(ExitCode::SUCCESS);
    }
    let head = tt::head(&store.ledger.conn, target.id)?;
    let state = tt::state_at(&store.ledger, head)?;
    print_anomalies(&state);
    let rec = crate::record::Recorder::new(&store)?;
    let current = tt::disk_state(&rec, force)?;
    let report = {
        let bar = crate::output::RestoreBar::new();
        tt::restore_in_place(&store.ledger, &state, &current, false, &|p| bar.update(p))?
    };
    print_kept(&report);
    tt::set_current(&store.ledger.conn, target.id)?;
    let step = refresh_index(&store, target.id)?;
    print_problems(&step.skipped, &step.warnings);
    // A timeline another device made: this device's own chain starts its tree there with a
    // checkpoint, so that its points on that timeline restore to what it had.
    if !tt::has_own_checkpoint(&store.ledger.conn, target.id, store.device)? {
        let index = read::load_worktree(&store.ledger.conn, target.id)?;
        let req = tt::checkpoint_request(
            &store,
            target.id,
            &tt::recorded_state(&index),
            Some(head_event_id(&store, head)?),
            &crate::record::outside_agent(),
        )?;
        store.writer.append(req)?;
    }
    println!(
        "Switched to timeline {} ({}): {} files and links written, {} paths removed.",
        target.label(),
        target.id,
        report.written,
        report.removed
    );
    Ok(ExitCode::SUCCESS)
}
