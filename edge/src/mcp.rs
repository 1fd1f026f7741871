//! horde's MCP tools over this repository: [`EdgeBackend`] implements [`horde_mcp::Backend`]
//! with what `horde log`, `show`, `history`, `diff`, `restore --to`, `approvals` and `status`
//! use ([`crate::query`], [`crate::timetravel`], [`crate::approvals`],
//! [`crate::sync::remotes`]), and records every call as a `ToolCall` event by agent `mcp`
//! (the client's name as the session, its arguments redacted).
//!
//! Invariants: the tools read, except `restore`, which writes only into a directory that does
//! not exist yet below one of the allowed roots (by default the system's temporary
//! directory), never into the repository, and never a withheld content (a secret, or a path
//! a manifest denies: the same contents `horde show` does not preview); a withheld blob is
//! never read. Nothing here answers an approval: the caller is a model, and an answer is a
//! person's (see `approvals.rs`).

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use horde_core::proto::ToolCall;
use horde_core::proto::event_body::Payload;
use horde_core::{BlobHash, Draft, RepoPath};
use horde_mcp::{
    Backend, BackendError, BlobInfo, CallRecord, Chunk, Item, LogQuery, Page, PageRequest,
    RestoreRequest, Shown,
};
use horde_policy::secrets::FingerprintKey;
use serde_json::{Value, json};

use crate::query::{self, LogText};
use crate::store::writer::AppendRequest;
use crate::store::{Layout, Store, read};
use crate::timetravel as tt;

/// The agent name every MCP call is recorded under.
pub const AGENT: &str = "mcp";

/// The ledger of one repository, for the MCP tools.
pub struct EdgeBackend {
    store: Mutex<Store>,
    key: FingerprintKey,
    /// Canonical directories a restore may write below.
    restore_roots: Vec<PathBuf>,
}

fn bad(e: impl std::fmt::Display) -> BackendError {
    BackendError::BadInput(e.to_string())
}

fn bad_chain(e: anyhow::Error) -> BackendError {
    BackendError::BadInput(format!("{e:#}"))
}

fn internal(e: impl std::fmt::Display) -> BackendError {
    BackendError::Internal(e.to_string())
}

fn internal_chain(e: anyhow::Error) -> BackendError {
    BackendError::Internal(format!("{e:#}"))
}

impl EdgeBackend {
    /// Opens the repository `layout` for the tools; `restore_roots` are the places a restore
    /// may write below (each must exist).
    pub fn open(
        layout: Layout,
        key: horde_core::DeviceKey,
        restore_roots: &[PathBuf],
    ) -> anyhow::Result<Self> {
        use anyhow::Context;
        let store = Store::open(layout, key)?;
        let mut roots = Vec::new();
        for r in restore_roots {
            roots.push(
                r.canonicalize()
                    .with_context(|| format!("restore root {}", r.display()))?,
            );
        }
        Ok(Self {
            store: Mutex::new(store),
            key: crate::config::fingerprint_key()?,
            restore_roots: roots,
        })
    }

    /// The store, with the current timeline read again (another command may have switched it).
    fn with_store<T>(
        &self,
        f: impl FnOnce(&Store) -> Result<T, BackendError>,
    ) -> Result<T, BackendError> {
        let mut store = self
            .store
            .lock()
            .map_err(|_| internal("an earlier call failed while holding the store"))?;
        store.ledger.meta = crate::store::read_meta(&store.ledger.conn).map_err(internal)?;
        f(&store)
    }

    /// Where a restore may write: a new directory, its parent existing, below an allowed root
    /// and outside the repository.
    fn restore_target(&self, to: &str, repo: &Path) -> Result<PathBuf, BackendError> {
        let to_path = Path::new(to);
        if !to_path.is_absolute() {
            return Err(bad(format!("to must be an absolute path; {to:?} is not")));
        }
        let name = to_path
            .file_name()
            .ok_or_else(|| bad(format!("to {to:?} has no final directory name")))?;
        if name == ".." || name == "." {
            return Err(bad(format!("to {to:?} must end in a new directory's name")));
        }
        if std::fs::symlink_metadata(to_path).is_ok() {
            return Err(bad(format!(
                "{to} already exists; restore writes only into a new directory"
            )));
        }
        let parent = to_path
            .parent()
            .ok_or_else(|| bad(format!("to {to:?} has no parent directory")))?
            .canonicalize()
            .map_err(|e| bad(format!("the parent of {to} cannot be used: {e}")))?;
        let target = parent.join(name);
        if !self.restore_roots.iter().any(|r| target.starts_with(r)) {
            return Err(bad(format!(
                "{to} is not below a directory this server may restore into ({}); `horde mcp --restore-root DIR` adds one",
                self.restore_roots
                    .iter()
                    .map(|r| r.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        let repo = repo.canonicalize().unwrap_or_else(|_| repo.to_owned());
        if target.starts_with(&repo) {
            return Err(bad(format!(
                "{to} is inside the repository; restore into a directory outside it"
            )));
        }
        Ok(target)
    }

    fn redact(&self, s: &str) -> String {
        crate::redact::redact_str(s, &self.key).0
    }
}

fn page_limit(page: &PageRequest) -> usize {
    page.limit.max(1)
}

impl Backend for EdgeBackend {
    async fn log(&self, q: LogQuery, page: PageRequest) -> Result<Page, BackendError> {
        let mut filter = query::log_filter(
            LogText {
                types: q.types,
                agents: q.agents,
                path: q.path,
                since: q.since,
                until: q.until,
                oldest_first: q.oldest_first,
            },
            "",
        )
        .map_err(bad_chain)?;
        filter.after = match page.cursor.as_deref() {
            None => None,
            Some(c) => Some(
                c.strip_prefix('e')
                    .and_then(|n| n.parse::<i64>().ok())
                    .ok_or_else(|| bad(format!("cursor {c:?} is not one log gave out")))?,
            ),
        };
        let limit = page_limit(&page);
        filter.limit = Some(limit + 1);
        self.with_store(|store| {
            let mut rows = read::log(&store.ledger.conn, &filter).map_err(internal)?;
            let more = rows.len() > limit;
            rows.truncate(limit);
            let mut items = Vec::with_capacity(rows.len());
            for r in &rows {
                items.push(Item {
                    after: format!("e{}", r.local_id),
                    value: query::event_json(r).map_err(internal_chain)?,
                });
            }
            let next = items.last().filter(|_| more).map(|i| i.after.clone());
            Ok(Page { items, next })
        })
    }

    async fn show(&self, event: String) -> Result<Shown, BackendError> {
        self.with_store(|store| {
            let shown =
                query::show(&store.ledger, &event, Some(store.device)).map_err(bad_chain)?;
            let mut j = horde_core::json::event_json(&shown.ev, &shown.hash);
            j["synced"] = json!(shown.row.synced);
            let blobs = shown
                .blobs
                .iter()
                .map(|b| {
                    let withheld = shown.withheld.contains(b);
                    let present = store.ledger.blobs.contains(b);
                    BlobInfo {
                        hash: b.to_hex(),
                        readable: present && !withheld,
                        note: if withheld {
                            Some(crate::output::WITHHELD_NOTE.trim().to_owned())
                        } else if !present {
                            Some("not on this device".to_owned())
                        } else {
                            None
                        },
                    }
                })
                .collect();
            Ok(Shown { event: j, blobs })
        })
    }

    async fn read_blob(
        &self,
        event: String,
        hash: String,
        offset: u64,
        len: usize,
    ) -> Result<Chunk, BackendError> {
        let wanted = hash
            .trim()
            .parse::<BlobHash>()
            .map_err(|_| bad(format!("hash {hash:?} is not a SHA-256 in hex")))?;
        self.with_store(|store| {
            let shown =
                query::show(&store.ledger, &event, Some(store.device)).map_err(bad_chain)?;
            if !shown.blobs.contains(&wanted) {
                return Err(BackendError::NotFound(format!(
                    "event {event} names no blob {hash} (show lists the blobs it names)"
                )));
            }
            if shown.withheld.contains(&wanted) {
                return Err(bad(format!(
                    "blob {hash} is withheld (a secret or a denied path's content); it is not shown"
                )));
            }
            let (size, bytes) = store
                .ledger
                .blobs
                .read_at(&wanted, offset, len)
                .map_err(|e| BackendError::NotFound(e.to_string()))?;
            Ok(Chunk { size, bytes })
        })
    }

    async fn history(&self, path: String, page: PageRequest) -> Result<Page, BackendError> {
        let path = RepoPath::parse(&path).map_err(|e| bad(format!("path: {e}")))?;
        self.with_store(|store| {
            let conn = &store.ledger.conn;
            let head = tt::head(conn, store.ledger.meta.timeline).map_err(internal)?;
            let rows = tt::path_history(conn, head, &path).map_err(internal)?;
            let all = rows
                .iter()
                .map(query::event_json)
                .collect::<anyhow::Result<Vec<_>>>()
                .map_err(internal_chain)?;
            Page::from_all(all, &page)
        })
    }

    async fn diff(
        &self,
        from: String,
        to: Option<String>,
        path: Option<String>,
        page: PageRequest,
    ) -> Result<(Value, Page), BackendError> {
        let path = path
            .as_deref()
            .map(RepoPath::parse)
            .transpose()
            .map_err(|e| bad(format!("path: {e}")))?;
        self.with_store(|store| {
            let ledger = &store.ledger;
            let resolve = |spec: &str, what: &str| {
                tt::resolve_point(&ledger.conn, spec, ledger.meta.timeline, Some(store.device))
                    .map_err(|e| bad(format!("{what}: {e}")))
            };
            let a = resolve(&from, "from")?;
            let b = resolve(to.as_deref().unwrap_or("HEAD"), "to")?;
            let sa = tt::state_at(ledger, a.point).map_err(internal)?;
            let sb = tt::state_at(ledger, b.point).map_err(internal)?;
            let (sa, sb) = match &path {
                Some(p) => (query::subtree(&sa, p), query::subtree(&sb, p)),
                None => (sa, sb),
            };
            let all = horde_replay::diff(&sa, &sb)
                .iter()
                .map(query::change_json)
                .collect();
            let points = json!({"from": query::point_json(&a), "to": query::point_json(&b)});
            Ok((points, Page::from_all(all, &page)?))
        })
    }

    async fn restore(&self, req: RestoreRequest) -> Result<Value, BackendError> {
        let path = req
            .path
            .as_deref()
            .map(RepoPath::parse)
            .transpose()
            .map_err(|e| bad(format!("path: {e}")))?;
        self.with_store(|store| {
            let ledger = &store.ledger;
            let dir = self.restore_target(&req.to, &ledger.layout.root)?;
            let at = tt::resolve_point(
                &ledger.conn,
                &req.at,
                ledger.meta.timeline,
                Some(store.device),
            )
            .map_err(|e| bad(format!("at: {e}")))?;
            let state = tt::state_at(ledger, at.point).map_err(internal)?;
            let state = match &path {
                Some(p) => {
                    let part = query::subtree(&state, p);
                    if part.is_empty() {
                        return Err(BackendError::NotFound(format!(
                            "{p} is not in the tree at #{} ({})",
                            at.event.seq, at.event.id
                        )));
                    }
                    part
                }
                None => state,
            };
            let (state, withheld) = query::without_withheld(&state);
            let report = tt::restore_to(ledger, &state, &dir, true, &|_| {})
                .map_err(|e| internal(format!("restoring into {}: {e}", dir.display())))?;
            let mut r = query::report_json(&report);
            r["withheld"] = json!(withheld);
            Ok(
                json!({"at": query::point_json(&at), "to": dir.display().to_string(),
                      "path": path.map(|p| p.to_string()), "report": r}),
            )
        })
    }

    async fn approvals(&self, all: bool, page: PageRequest) -> Result<Page, BackendError> {
        self.with_store(|store| {
            let list = crate::approvals::all(&store.ledger.conn).map_err(internal)?;
            let values = list
                .into_iter()
                .filter(|r| all || r.state == "pending")
                .map(|r| serde_json::to_value(&r).map_err(internal))
                .collect::<Result<Vec<_>, _>>()?;
            Page::from_all(values, &page)
        })
    }

    async fn status(&self) -> Result<Value, BackendError> {
        let (layout, device, counts) = self.with_store(|store| {
            let counts = read::counts(&store.ledger.conn).map_err(internal)?;
            Ok((store.ledger.layout.clone(), store.device, counts))
        })?;
        // The remote's check runs its own runtime: on a thread of its own, outside this one.
        let remote = std::thread::scope(|s| {
            s.spawn(|| -> anyhow::Result<Value> {
                let ledger = crate::store::Ledger::open(layout)?;
                crate::sync::remotes::status_json(&ledger, Some(device))
            })
            .join()
        })
        .map_err(|_| internal("the sync status check panicked"))?
        .map_err(internal_chain)?;
        Ok(json!({
            "events": counts.events,
            "unsynced": counts.unsynced,
            "last_event_at": counts.last_occurred_at.map(horde_core::time::format_micros),
            "remote": remote,
        }))
    }

    async fn record(&self, call: CallRecord) -> Result<(), BackendError> {
        // Submitted under the lock, awaited outside it: the writer answers on a oneshot, and
        // a blocking wait would stall (and, in a runtime, refuse) the server's thread.
        let pending = self.with_store(|store| {
            let payload = Payload::ToolCall(ToolCall {
                tool: call.tool.clone(),
                args: call.args.iter().map(|a| self.redact(a)).collect(),
                result_summary: self.redact(&call.summary),
                exit_code: i32::from(call.error.is_some()),
                duration_ms: call.duration_ms,
                call_id: call.call_id.clone(),
                session: call.client.clone(),
                error: call
                    .error
                    .as_deref()
                    .map(|e| self.redact(e))
                    .unwrap_or_default(),
                ..Default::default()
            });
            let draft = Draft::new(store.ledger.meta.timeline, AGENT, payload);
            Ok(store.writer.submit(AppendRequest {
                drafts: vec![draft],
                ..Default::default()
            }))
        })?;
        pending
            .rx
            .await
            .map_err(|_| internal(crate::store::StoreError::WriterGone))?
            .map_err(internal)?;
        Ok(())
    }
}
