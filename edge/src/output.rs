//! How events look to people: one-line summaries, local times, colour only on a terminal.

use std::io::IsTerminal;

use horde_core::proto::{self, event_body::Payload};
use serde_json::Value;

/// Colour is used only when stdout is a terminal and `NO_COLOR` is unset.
pub fn colour_enabled() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

pub struct Paint(pub bool);

impl Paint {
    fn wrap(&self, code: &str, s: &str) -> String {
        if self.0 {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_owned()
        }
    }
    pub fn dim(&self, s: &str) -> String {
        self.wrap("2", s)
    }
    pub fn yellow(&self, s: &str) -> String {
        self.wrap("33", s)
    }
    pub fn green(&self, s: &str) -> String {
        self.wrap("32", s)
    }
    pub fn red(&self, s: &str) -> String {
        self.wrap("31", s)
    }
    pub fn cyan(&self, s: &str) -> String {
        self.wrap("36", s)
    }
    pub fn bold(&self, s: &str) -> String {
        self.wrap("1", s)
    }
}

/// Local wall-clock time, second precision, for listings.
pub fn local_time(us: i64) -> String {
    match jiff::Timestamp::from_microsecond(us) {
        Ok(ts) => ts
            .to_zoned(jiff::tz::TimeZone::system())
            .strftime("%Y-%m-%d %H:%M:%S")
            .to_string(),
        Err(_) => format!("<invalid time {us}>"),
    }
}

pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1000.0 && u < UNITS.len() - 1 {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

fn enum_str(v: &Value) -> &str {
    v.as_str().unwrap_or("?")
}

/// Longest summary line, in characters.
const SUMMARY_CHARS: usize = 160;

/// `s` on one line (newlines shown as ⏎), at most [`SUMMARY_CHARS`] characters.
pub fn one_line(s: &str) -> String {
    let flat: String = s
        .trim_end()
        .replace("\r\n", "\n")
        .replace('\n', " ⏎ ")
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if flat.chars().count() > SUMMARY_CHARS {
        let cut: String = flat.chars().take(SUMMARY_CHARS - 1).collect();
        format!("{cut}…")
    } else {
        flat
    }
}

/// One line that says what an event was.
/// How a withheld change is named wherever a person reads it (on any device: `horde log` of
/// a clone shows other devices' changes too).
pub const WITHHELD_NOTE: &str = "withheld (blob kept on the device that recorded it)";

pub fn summary(ev: &proto::EventBody) -> String {
    one_line(&summary_text(ev))
}

fn summary_text(ev: &proto::EventBody) -> String {
    let Some(p) = &ev.payload else {
        return "(no payload)".into();
    };
    let j = horde_core::json::payload_json(p);
    match p {
        Payload::StateChange(s) => {
            let op = enum_str(&j["op"]);
            let kind = enum_str(&j["kind"]);
            let what = if kind == "dir" {
                format!("{}/", s.path)
            } else {
                s.path.clone()
            };
            let size = if s.op == proto::state_change::Op::Delete as i32 || kind == "dir" {
                String::new()
            } else {
                format!(" ({})", human_bytes(s.size))
            };
            let withheld = if s.withheld {
                format!(" {WITHHELD_NOTE}")
            } else {
                String::new()
            };
            match op {
                "rename" => format!("rename {} -> {what}{size}{withheld}", s.from_path),
                _ => format!("{op} {what}{size}{withheld}"),
            }
        }
        Payload::ToolCall(t) => {
            let mut line = format!("{} `{}` -> {}", t.tool, t.args.join(" "), t.result_summary);
            if let Some(s) = &t.sandbox {
                let refused = s.connections.iter().filter(|c| !c.allowed).count();
                line.push_str(" [sandboxed");
                if !s.connections.is_empty() {
                    line.push_str(&format!(
                        ", {} connections ({refused} refused)",
                        s.connections.len()
                    ));
                }
                if !s.limits_hit.is_empty() {
                    line.push_str(&format!(", limits hit: {}", s.limits_hit.join(", ")));
                }
                line.push(']');
            }
            line
        }
        Payload::Task(t) => format!("task {}: {}", enum_str(&j["kind"]), t.title),
        Payload::Observation(o) => {
            let first = o.summary.lines().last().unwrap_or("");
            format!(
                "{} ({}){}{}",
                o.kind,
                human_bytes(o.size),
                if first.is_empty() { "" } else { ": " },
                first
            )
        }
        Payload::Checkpoint(c) => format!(
            "checkpoint: {} entries, {}",
            c.files,
            human_bytes(c.total_bytes)
        ),
        Payload::Decision(d) if !d.model.is_empty() || !d.call_id.is_empty() => {
            let cost = if d.price == "no price" {
                "no price".to_owned()
            } else {
                format!("${:.4}", d.cost_micro_usd as f64 / 1e6)
            };
            format!(
                "model call {}{}: {} in, {} cache read, {} cache write, {} out, {cost}",
                if d.model.is_empty() { "?" } else { &d.model },
                if d.subagent.is_empty() {
                    String::new()
                } else {
                    format!(" (subagent {})", d.subagent)
                },
                d.tokens_in,
                d.cache_read_tokens,
                d.cache_write_tokens,
                d.tokens_out,
            )
        }
        Payload::Decision(d) => format!("decision: {}", d.summary),
        Payload::Message(m) => format!(
            "message {} -> {}: {}",
            m.from,
            m.to,
            m.text.lines().next().unwrap_or("")
        ),
        Payload::Signal(s) => format!("signal {} {}", enum_str(&j["kind"]), s.subject),
        Payload::Approval(a) => {
            let id: String = hex::encode(&a.request_id).chars().take(8).collect();
            let mut s = format!(
                "approval {} {id} {} (by {})",
                enum_str(&j["kind"]),
                a.what,
                a.who
            );
            if !a.pattern.is_empty() {
                s.push_str(&format!(
                    "; remembered ({} for the {}): {}",
                    a.remember,
                    a.scope,
                    a.pattern.replace('\n', " ; ")
                ));
            }
            if !a.reason.is_empty() {
                s.push_str(&format!(": {}", a.reason));
            }
            s
        }
        Payload::Violation(v) => format!(
            "violation: expected {}, observed {}",
            v.expected, v.observed
        ),
    }
}

/// A spinner on stderr for scans that may take more than a second; invisible when stderr is
/// not a terminal, and shown only once a scan passes its first progress report.
pub struct Spinner(Option<indicatif::ProgressBar>);

impl Spinner {
    pub fn new(what: &'static str) -> Self {
        if !std::io::stderr().is_terminal() {
            return Self(None);
        }
        let bar = indicatif::ProgressBar::new_spinner();
        bar.set_style(
            indicatif::ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
                .expect("the template is valid"),
        );
        bar.set_message(what);
        Self(Some(bar))
    }

    /// A progress callback for `scan_with_progress`.
    pub fn update(&self, entries: usize, hashed: usize) {
        if let Some(bar) = &self.0 {
            bar.set_message(format!("scanning: {entries} entries, {hashed} read"));
            bar.tick();
        }
    }
}

impl Drop for Spinner {
    fn drop(&mut self) {
        if let Some(bar) = &self.0 {
            bar.finish_and_clear();
        }
    }
}

/// A progress bar for restores on stderr (TTY only): files and bytes written.
pub struct RestoreBar(Option<indicatif::ProgressBar>);

impl RestoreBar {
    pub fn new() -> Self {
        if !std::io::stderr().is_terminal() {
            return Self(None);
        }
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:30} {bytes}/{total_bytes} {msg} ({elapsed}, {eta} left)",
            )
            .expect("the template is valid"),
        );
        Self(Some(bar))
    }

    /// A progress callback for `horde_replay::restore`.
    pub fn update(&self, p: horde_replay::Progress) {
        if let Some(bar) = &self.0 {
            bar.set_length(p.bytes_total);
            bar.set_position(p.bytes_done);
            bar.set_message(format!("{}/{} files", p.files_done, p.files_total));
        }
    }
}

impl Default for RestoreBar {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for RestoreBar {
    fn drop(&mut self) {
        if let Some(bar) = &self.0 {
            bar.finish_and_clear();
        }
    }
}
