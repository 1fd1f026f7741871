//! The tools: their argument types (whose JSON Schemas are the tools' input schemas), the
//! checks on them, and the bounds on what a call returns. Arguments are parsed strictly
//! (unknown fields refused) and every string and list has a named limit.

use std::sync::Arc;

use rmcp::model::{JsonObject, Tool, ToolAnnotations};
use schemars::JsonSchema;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::backend::{Backend, BackendError, LogQuery, Page, PageRequest, RestoreRequest};

/// A tool result's text is at most this long; lists are cut there and say where to go on.
pub const MAX_RESULT_BYTES: usize = 64 * 1024;
/// Items a list returns unless `limit` says otherwise.
pub const DEFAULT_LIMIT: usize = 50;
/// Most items a list returns in one call.
pub const MAX_LIMIT: usize = 200;
/// Bytes of each blob `show` previews unless `preview_bytes` says otherwise.
pub const DEFAULT_PREVIEW: usize = 4096;
/// Most bytes `read_blob` returns in one call (well below the result bound once escaped).
pub const MAX_CHUNK: usize = 32 * 1024;
/// Longest string argument.
pub const MAX_ARG: usize = 4096;
/// Most values in a list argument.
pub const MAX_LIST_ARG: usize = 32;
/// Longest argument value kept in the record of a call.
pub const RECORDED_ARG: usize = 256;

/// Why a call's arguments were refused; shown to the model as a tool error.
#[derive(Debug, thiserror::Error)]
pub enum ArgError {
    #[error("unknown tool {0:?}; the tools are: {1}")]
    UnknownTool(String, String),
    #[error("bad arguments for {tool}: {message}")]
    Invalid { tool: String, message: String },
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LogArgs {
    /// Only events of these types: decision, state_change, tool_call, task, approval, message, observation, violation, signal, checkpoint.
    #[serde(default)]
    pub types: Vec<String>,
    /// Only events by these agents.
    #[serde(default)]
    pub agents: Vec<String>,
    /// Only changes to this file or anything under this directory (relative to the repository root).
    pub path: Option<String>,
    /// Only events at or after: RFC 3339, a date (2026-11-22), a local time (2026-11-22 14:12), or "10 minutes ago".
    pub since: Option<String>,
    /// Only events at or before (same forms as since).
    pub until: Option<String>,
    /// Oldest first (default: newest first).
    #[serde(default)]
    pub reverse: bool,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// At most this many events (1..=200, default 50).
    pub limit: Option<usize>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ShowArgs {
    /// An event id, a unique prefix of one (at least 4 hex digits), or a seq of this device (#12).
    pub event: String,
    /// Bytes of each blob to preview (0..=32768, default 4096).
    pub preview_bytes: Option<usize>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReadBlobArgs {
    /// The event that names the blob (as for show).
    pub event: String,
    /// The blob's SHA-256 (hex), as show lists it.
    pub hash: String,
    /// Byte offset to start at (the `next_offset` of the previous call).
    #[serde(default)]
    pub offset: u64,
    /// Bytes to return (1..=32768, default 32768).
    pub limit: Option<usize>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HistoryArgs {
    /// A file or directory path relative to the repository root.
    pub path: String,
    pub cursor: Option<String>,
    /// At most this many versions (1..=200, default 50).
    pub limit: Option<usize>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DiffArgs {
    /// The earlier point: HEAD, #seq, an event id (or unique prefix), or a time.
    pub from: String,
    /// The later point (default HEAD).
    pub to: Option<String>,
    /// Only changes to this path or under it.
    pub path: Option<String>,
    pub cursor: Option<String>,
    /// At most this many changed paths (1..=200, default 50).
    pub limit: Option<usize>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RestoreArgs {
    /// The point: HEAD, #seq, an event id (or unique prefix), or a time.
    pub at: String,
    /// Only this file or directory (default: the whole tree).
    pub path: Option<String>,
    /// An absolute path of a directory that does not exist yet (its parent must); the server may only allow some places (by default, below the system's temporary directory).
    pub to: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApprovalsArgs {
    /// Answered and expired requests too (default: only pending ones).
    #[serde(default)]
    pub all: bool,
    pub cursor: Option<String>,
    /// At most this many requests (1..=200, default 50).
    pub limit: Option<usize>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StatusArgs {}

fn schema_of<T: JsonSchema>() -> Arc<JsonObject> {
    let v = serde_json::to_value(schemars::schema_for!(T)).expect("a schema is JSON");
    match v {
        Value::Object(mut o) => {
            // Clients want a plain object schema; the draft marker and title are noise.
            o.remove("$schema");
            o.remove("title");
            Arc::new(o)
        }
        _ => unreachable!("schemars makes object schemas for structs"),
    }
}

fn tool<T: JsonSchema>(name: &'static str, description: &'static str, read_only: bool) -> Tool {
    let mut t = Tool::new(name, description, schema_of::<T>());
    t.annotations = Some(ToolAnnotations::from_raw(
        None,
        Some(read_only),
        Some(false),
        Some(read_only),
        Some(false),
    ));
    t
}

/// Every tool, as `tools/list` gives them.
pub fn tools() -> Vec<Tool> {
    vec![
        tool::<LogArgs>(
            "log",
            "Events recorded in this horde project (every agent step: tool calls, file changes, messages, approvals), newest first, with the filters of `horde log`. Paged: pass next_cursor back as cursor.",
            true,
        ),
        tool::<ShowArgs>(
            "show",
            "One event with its payload and the blobs it names (file contents, tool inputs and outputs), each previewed; withheld blobs (secrets) are never shown.",
            true,
        ),
        tool::<ReadBlobArgs>(
            "read_blob",
            "Read more of a blob that an event names, from an offset (UTF-8 text; binary content is only described).",
            true,
        ),
        tool::<HistoryArgs>(
            "history",
            "Every recorded version of a file or directory on this timeline, oldest first. Paged.",
            true,
        ),
        tool::<DiffArgs>(
            "diff",
            "The paths that differ between two points of the recorded history (added, deleted, modified, mode or kind changes). Paged.",
            true,
        ),
        tool::<RestoreArgs>(
            "restore",
            "Write the recorded tree at a point (or one path of it) into a new directory; the working tree is never touched. Withheld files (secrets) are left out and listed.",
            false,
        ),
        tool::<ApprovalsArgs>(
            "approvals",
            "Approval requests of agents (pending, or all with all=true). Deciding them is for a person, through `horde approve`/`horde reject` or the cloud.",
            true,
        ),
        tool::<StatusArgs>(
            "sync_status",
            "Where this project's sync stands: the remote, events not yet sent, the last sync and its error, open conflicts.",
            true,
        ),
    ]
}

fn names() -> String {
    tools()
        .iter()
        .map(|t| t.name.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Parses one tool's arguments; the error names the tool and what was wrong.
fn parse<T: DeserializeOwned>(tool: &str, args: &JsonObject) -> Result<T, ArgError> {
    serde_json::from_value(Value::Object(args.clone())).map_err(|e| ArgError::Invalid {
        tool: tool.to_owned(),
        message: e.to_string(),
    })
}

fn invalid(tool: &str, message: impl Into<String>) -> ArgError {
    ArgError::Invalid {
        tool: tool.to_owned(),
        message: message.into(),
    }
}

fn check_str(tool: &str, name: &str, s: &str) -> Result<(), ArgError> {
    if s.len() > MAX_ARG {
        return Err(invalid(
            tool,
            format!("{name} is {} bytes; at most {MAX_ARG}", s.len()),
        ));
    }
    if s.contains('\0') {
        return Err(invalid(tool, format!("{name} contains a NUL character")));
    }
    Ok(())
}

fn check_opt(tool: &str, name: &str, s: &Option<String>) -> Result<(), ArgError> {
    s.as_deref().map_or(Ok(()), |s| check_str(tool, name, s))
}

fn check_list(tool: &str, name: &str, v: &[String]) -> Result<(), ArgError> {
    if v.len() > MAX_LIST_ARG {
        return Err(invalid(
            tool,
            format!("{name} has {} values; at most {MAX_LIST_ARG}", v.len()),
        ));
    }
    v.iter().try_for_each(|s| check_str(tool, name, s))
}

fn page(tool: &str, cursor: Option<String>, limit: Option<usize>) -> Result<PageRequest, ArgError> {
    check_opt(tool, "cursor", &cursor)?;
    let limit = limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(invalid(
            tool,
            format!("limit must be between 1 and {MAX_LIMIT}; it was {limit}"),
        ));
    }
    Ok(PageRequest { cursor, limit })
}

/// A page as JSON, cut so that its text stays under [`MAX_RESULT_BYTES`] (an item that alone
/// is too large is replaced by a note naming it); `next_cursor` resumes after the last item
/// kept.
fn bounded_page(key: &str, page: Page, mut extra: serde_json::Map<String, Value>) -> Value {
    // Room for the envelope: the key, the cursor, the extra fields.
    let mut used = 256 + serde_json::to_string(&extra).map_or(0, |s| s.len());
    let mut items = Vec::with_capacity(page.items.len());
    let mut next = page.next.clone();
    let total = page.items.len();
    for item in page.items {
        let mut text = serde_json::to_string(&item.value).unwrap_or_default();
        let mut value = item.value;
        if text.len() + 64 > MAX_RESULT_BYTES / 2 {
            value = json!({
                "omitted": "this item is too large for a list; look at it alone (show)",
                "id": value.get("id").cloned().unwrap_or(Value::Null),
            });
            text = value.to_string();
        }
        if used + text.len() + 1 > MAX_RESULT_BYTES {
            // Resume at this item: the cursor after the previous one (or where this page began).
            next = items
                .last()
                .map(|(after, _): &(String, Value)| after.clone())
                .or_else(|| Some(String::new()));
            break;
        }
        used += text.len() + 1;
        items.push((item.after, value));
    }
    let truncated = items.len() < total;
    extra.insert(
        key.to_owned(),
        Value::Array(items.into_iter().map(|(_, v)| v).collect()),
    );
    extra.insert(
        "next_cursor".into(),
        next.filter(|n| !n.is_empty())
            .map_or(Value::Null, Value::String),
    );
    if truncated {
        extra.insert(
            "truncated".into(),
            json!(format!(
                "cut at {MAX_RESULT_BYTES} bytes; continue with next_cursor"
            )),
        );
    }
    Value::Object(extra)
}

/// The text of `data` if it is UTF-8 (a character cut at the end is dropped).
fn text_of(data: &[u8]) -> Option<String> {
    match std::str::from_utf8(data) {
        Ok(t) => Some(t.to_owned()),
        Err(e) if e.error_len().is_none() => {
            Some(String::from_utf8_lossy(&data[..e.valid_up_to()]).into_owned())
        }
        Err(_) => None,
    }
}

/// What a call did: the JSON it returns, or the reason it failed, shown to the model.
pub enum Outcome {
    Ok(Value),
    Refused(String),
}

impl From<BackendError> for Outcome {
    fn from(e: BackendError) -> Self {
        Outcome::Refused(e.to_string())
    }
}

impl From<ArgError> for Outcome {
    fn from(e: ArgError) -> Self {
        Outcome::Refused(e.to_string())
    }
}

macro_rules! tryo {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(e) => return Outcome::from(e),
        }
    };
}

/// The arguments of a call as recorded: `name=value`, each bounded.
pub fn summarise_args(args: &JsonObject) -> Vec<String> {
    args.iter()
        .take(MAX_LIST_ARG)
        .map(|(k, v)| {
            let v = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let mut s = format!("{k}={v}");
            if s.len() > RECORDED_ARG {
                let mut end = RECORDED_ARG;
                while !s.is_char_boundary(end) {
                    end -= 1;
                }
                s.truncate(end);
                s.push('…');
            }
            s
        })
        .collect()
}

/// Runs one tool call against `backend`.
pub async fn call<B: Backend>(backend: &B, name: &str, args: &JsonObject) -> Outcome {
    match name {
        "log" => {
            let a: LogArgs = tryo!(parse(name, args));
            tryo!(check_list(name, "types", &a.types));
            tryo!(check_list(name, "agents", &a.agents));
            tryo!(check_opt(name, "path", &a.path));
            tryo!(check_opt(name, "since", &a.since));
            tryo!(check_opt(name, "until", &a.until));
            let p = tryo!(page(name, a.cursor, a.limit));
            let q = LogQuery {
                types: a.types,
                agents: a.agents,
                path: a.path,
                since: a.since,
                until: a.until,
                oldest_first: a.reverse,
            };
            let got = tryo!(backend.log(q, p).await);
            Outcome::Ok(bounded_page("events", got, Default::default()))
        }
        "show" => {
            let a: ShowArgs = tryo!(parse(name, args));
            tryo!(check_str(name, "event", &a.event));
            let preview = a.preview_bytes.unwrap_or(DEFAULT_PREVIEW);
            if preview > MAX_CHUNK {
                return invalid(name, format!("preview_bytes is at most {MAX_CHUNK}")).into();
            }
            let shown = tryo!(backend.show(a.event.clone()).await);
            let mut budget = MAX_RESULT_BYTES
                .saturating_sub(shown.event.to_string().len())
                .saturating_sub(512);
            let mut blobs = Vec::new();
            for b in &shown.blobs {
                let mut j = json!({"hash": b.hash, "readable": b.readable});
                if let Some(n) = &b.note {
                    j["note"] = json!(n);
                }
                // Escaping can grow text up to six times; keep well inside what is left.
                let want = preview.min(budget / 6);
                if b.readable && want > 0 {
                    let chunk = tryo!(
                        backend
                            .read_blob(
                                shown.event["id"].as_str().unwrap_or(&a.event).to_owned(),
                                b.hash.clone(),
                                0,
                                want
                            )
                            .await
                    );
                    j["size"] = json!(chunk.size);
                    match text_of(&chunk.bytes) {
                        Some(t) => {
                            budget = budget.saturating_sub(t.len() * 6 / 5 + 64);
                            j["preview"] = json!(t);
                            if (chunk.bytes.len() as u64) < chunk.size {
                                j["more"] = json!(
                                    "read_blob with this event, this hash and offset to read on"
                                );
                            }
                        }
                        None => j["binary"] = json!(true),
                    }
                }
                budget = budget.saturating_sub(160);
                blobs.push(j);
            }
            Outcome::Ok(json!({"event": shown.event, "blobs": blobs}))
        }
        "read_blob" => {
            let a: ReadBlobArgs = tryo!(parse(name, args));
            tryo!(check_str(name, "event", &a.event));
            tryo!(check_str(name, "hash", &a.hash));
            let len = a.limit.unwrap_or(MAX_CHUNK);
            if !(1..=MAX_CHUNK).contains(&len) {
                return invalid(name, format!("limit must be between 1 and {MAX_CHUNK}")).into();
            }
            let chunk = tryo!(
                backend
                    .read_blob(a.event, a.hash.clone(), a.offset, len)
                    .await
            );
            let end = a.offset + chunk.bytes.len() as u64;
            let mut j = json!({"hash": a.hash, "size": chunk.size, "offset": a.offset,
                               "next_offset": (end < chunk.size).then_some(end)});
            match text_of(&chunk.bytes) {
                Some(t) => {
                    // A character cut at the end starts the next read.
                    let end = a.offset + t.len() as u64;
                    j["next_offset"] = json!((end < chunk.size).then_some(end));
                    j["text"] = json!(t);
                }
                None => j["binary"] = json!(true),
            }
            Outcome::Ok(j)
        }
        "history" => {
            let a: HistoryArgs = tryo!(parse(name, args));
            tryo!(check_str(name, "path", &a.path));
            let p = tryo!(page(name, a.cursor, a.limit));
            let got = tryo!(backend.history(a.path.clone(), p).await);
            let mut extra = serde_json::Map::new();
            extra.insert("path".into(), json!(a.path));
            Outcome::Ok(bounded_page("versions", got, extra))
        }
        "diff" => {
            let a: DiffArgs = tryo!(parse(name, args));
            tryo!(check_str(name, "from", &a.from));
            tryo!(check_opt(name, "to", &a.to));
            tryo!(check_opt(name, "path", &a.path));
            let p = tryo!(page(name, a.cursor, a.limit));
            let (points, got) = tryo!(backend.diff(a.from, a.to, a.path, p).await);
            let extra = match points {
                Value::Object(o) => o,
                other => {
                    let mut m = serde_json::Map::new();
                    m.insert("points".into(), other);
                    m
                }
            };
            Outcome::Ok(bounded_page("changes", got, extra))
        }
        "restore" => {
            let a: RestoreArgs = tryo!(parse(name, args));
            tryo!(check_str(name, "at", &a.at));
            tryo!(check_opt(name, "path", &a.path));
            tryo!(check_str(name, "to", &a.to));
            let req = RestoreRequest {
                at: a.at,
                path: a.path,
                to: a.to,
            };
            Outcome::Ok(tryo!(backend.restore(req).await))
        }
        "approvals" => {
            let a: ApprovalsArgs = tryo!(parse(name, args));
            let p = tryo!(page(name, a.cursor, a.limit));
            let got = tryo!(backend.approvals(a.all, p).await);
            Outcome::Ok(bounded_page("requests", got, Default::default()))
        }
        "sync_status" => {
            let _: StatusArgs = tryo!(parse(name, args));
            Outcome::Ok(tryo!(backend.status().await))
        }
        other => ArgError::UnknownTool(other.to_owned(), names()).into(),
    }
}

/// A result's one-line summary for the record.
pub fn summary(name: &str, v: &Value) -> String {
    let count = |k: &str| v.get(k).and_then(Value::as_array).map_or(0, Vec::len);
    let more = if v.get("next_cursor").is_some_and(|c| !c.is_null()) {
        ", more"
    } else {
        ""
    };
    match name {
        "log" => format!("{} events{more}", count("events")),
        "history" => format!("{} versions{more}", count("versions")),
        "diff" => format!("{} changes{more}", count("changes")),
        "approvals" => format!("{} requests{more}", count("requests")),
        "show" => format!("event {}", v["event"]["id"].as_str().unwrap_or("?")),
        "read_blob" => format!(
            "{} bytes at {}",
            v["text"].as_str().map_or(0, str::len),
            v["offset"]
        ),
        "restore" => format!(
            "{} files and links written into {}",
            v["report"]["written"],
            v["to"].as_str().unwrap_or("?")
        ),
        _ => "ok".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Item;

    fn items(n: usize, size: usize) -> Page {
        Page {
            items: (0..n)
                .map(|i| Item {
                    after: format!("c{i}"),
                    value: json!({"id": i, "pad": "x".repeat(size)}),
                })
                .collect(),
            next: Some(format!("c{}", n - 1)),
        }
    }

    #[test]
    fn pages_are_cut_at_the_size_bound_and_resume_after_the_last_item_kept() {
        let v = bounded_page("events", items(50, 4000), Default::default());
        let text = v.to_string();
        assert!(text.len() <= MAX_RESULT_BYTES, "{}", text.len());
        let kept = v["events"].as_array().expect("array").len();
        assert!(kept > 0 && kept < 50);
        assert_eq!(v["next_cursor"], json!(format!("c{}", kept - 1)));
        assert!(v["truncated"].is_string());
    }

    #[test]
    fn an_item_too_large_alone_is_named_not_dropped() {
        let v = bounded_page("events", items(1, MAX_RESULT_BYTES), Default::default());
        assert_eq!(v["events"][0]["id"], json!(0));
        assert!(v["events"][0]["omitted"].is_string());
    }

    #[test]
    fn offset_pages_cover_the_list_once() {
        let all: Vec<Value> = (0..7).map(|i| json!(i)).collect();
        let mut seen = Vec::new();
        let mut cursor = None;
        loop {
            let p = Page::from_all(all.clone(), &PageRequest { cursor, limit: 3 }).expect("page");
            seen.extend(p.items.iter().map(|i| i.value.clone()));
            match p.next {
                Some(n) => cursor = Some(n),
                None => break,
            }
        }
        assert_eq!(seen, all);
        assert!(
            Page::from_all(
                all,
                &PageRequest {
                    cursor: Some("zz".into()),
                    limit: 3
                }
            )
            .is_err()
        );
    }

    #[test]
    fn every_tool_schema_is_an_object_that_refuses_unknown_fields() {
        for t in tools() {
            assert_eq!(t.input_schema["type"], json!("object"), "{}", t.name);
            assert_eq!(
                t.input_schema.get("additionalProperties"),
                Some(&json!(false)),
                "{}",
                t.name
            );
        }
    }

    #[test]
    fn recorded_args_are_bounded() {
        let mut o = JsonObject::new();
        o.insert("path".into(), json!("é".repeat(400)));
        let s = summarise_args(&o);
        assert!(s[0].len() <= RECORDED_ARG + '…'.len_utf8());
    }
}
