//! What a ledger must answer for the MCP tools: the edge implements it over `.horde/`, the
//! cloud over `horde-ledger` for the tenant of a key. A backend validates what only it
//! can (event types, points, times, paths of its repository) and returns plain JSON values; it
//! knows nothing about MCP, paging sizes or recording formats, which this crate owns.

use std::future::Future;

use serde_json::Value;

/// Why a backend refused or failed a request. `BadInput` and `NotFound` are the caller's to
/// fix and are shown to the model as such; `Internal` is horde's own failure.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BackendError {
    #[error("{0}")]
    BadInput(String),
    #[error("{0}")]
    NotFound(String),
    #[error("horde failed: {0}")]
    Internal(String),
}

/// One page of a list: a page never holds more than the request's limit, and `next` (when
/// set) is the cursor that resumes right after the last item.
#[derive(Debug, Clone, Default)]
pub struct Page {
    pub items: Vec<Item>,
    pub next: Option<String>,
}

/// One listed value, with the cursor that resumes after it (so this crate can cut a page at
/// its size bound and still say where to go on).
#[derive(Debug, Clone)]
pub struct Item {
    pub after: String,
    pub value: Value,
}

/// Where a list starts and how many items it may hold.
#[derive(Debug, Clone, Default)]
pub struct PageRequest {
    pub cursor: Option<String>,
    pub limit: usize,
}

impl Page {
    /// Pages a whole list by position (for backends whose lists are short or cannot seek):
    /// cursors are `o<offset>`.
    pub fn from_all(all: Vec<Value>, req: &PageRequest) -> Result<Page, BackendError> {
        let start = match req.cursor.as_deref() {
            None => 0,
            Some(c) => c
                .strip_prefix('o')
                .and_then(|n| n.parse::<usize>().ok())
                .ok_or_else(|| {
                    BackendError::BadInput(format!("cursor {c:?} is not one this list gave out"))
                })?,
        };
        let total = all.len();
        let items: Vec<Item> = all
            .into_iter()
            .enumerate()
            .skip(start)
            .take(req.limit)
            .map(|(i, value)| Item {
                after: format!("o{}", i + 1),
                value,
            })
            .collect();
        let next = items
            .last()
            .filter(|_| start + req.limit < total)
            .map(|i| i.after.clone());
        Ok(Page { items, next })
    }
}

/// The filters of `horde log`, as text the backend parses.
#[derive(Debug, Clone, Default)]
pub struct LogQuery {
    pub types: Vec<String>,
    pub agents: Vec<String>,
    pub path: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
    pub oldest_first: bool,
}

/// An event and the blobs it names.
#[derive(Debug, Clone)]
pub struct Shown {
    /// The event as `horde show --json` prints it.
    pub event: Value,
    pub blobs: Vec<BlobInfo>,
}

#[derive(Debug, Clone)]
pub struct BlobInfo {
    /// SHA-256, hex.
    pub hash: String,
    /// Its content is here and may be read through [`Backend::read_blob`].
    pub readable: bool,
    /// Why not, when it is not (withheld: it holds a secret or a denied path's content).
    pub note: Option<String>,
}

/// Part of a blob.
#[derive(Debug, Clone)]
pub struct Chunk {
    pub size: u64,
    pub bytes: Vec<u8>,
}

/// Write the tree at `at` (or only `path` in it) into the new directory `to`.
#[derive(Debug, Clone)]
pub struct RestoreRequest {
    pub at: String,
    pub path: Option<String>,
    pub to: String,
}

/// One MCP tool call, as it is recorded.
#[derive(Debug, Clone)]
pub struct CallRecord {
    /// The MCP client's name (`clientInfo.name`), or "unknown".
    pub client: String,
    /// The JSON-RPC id of the call.
    pub call_id: String,
    pub tool: String,
    /// `name=value` for each argument, each bounded.
    pub args: Vec<String>,
    pub summary: String,
    pub error: Option<String>,
    pub duration_ms: u64,
}

/// The ledger behind the tools. Futures are `Send` so the server may run them on any
/// runtime; an implementation over a blocking store may do its work inline.
pub trait Backend: Send + Sync + 'static {
    /// Events newest first (or oldest first), filtered like `horde log`.
    fn log(
        &self,
        q: LogQuery,
        page: PageRequest,
    ) -> impl Future<Output = Result<Page, BackendError>> + Send;

    /// One event by id, unique id prefix or seq.
    fn show(&self, event: String) -> impl Future<Output = Result<Shown, BackendError>> + Send;

    /// `len` bytes from `offset` of a blob that `event` names. Refused for a blob that is not
    /// readable there (withheld, absent, not named by the event).
    fn read_blob(
        &self,
        event: String,
        hash: String,
        offset: u64,
        len: usize,
    ) -> impl Future<Output = Result<Chunk, BackendError>> + Send;

    /// Every recorded version of a path on the current timeline's lineage, oldest first.
    fn history(
        &self,
        path: String,
        page: PageRequest,
    ) -> impl Future<Output = Result<Page, BackendError>> + Send;

    /// What changed between two points (`to` defaults to HEAD), optionally only under `path`:
    /// `{from, to}` describing the points, and the changes as a page.
    fn diff(
        &self,
        from: String,
        to: Option<String>,
        path: Option<String>,
        page: PageRequest,
    ) -> impl Future<Output = Result<(Value, Page), BackendError>> + Send;

    /// Writes a tree (or a part of it) into a new directory; returns what was written.
    fn restore(
        &self,
        req: RestoreRequest,
    ) -> impl Future<Output = Result<Value, BackendError>> + Send;

    /// Approval requests: pending ones, or all.
    fn approvals(
        &self,
        all: bool,
        page: PageRequest,
    ) -> impl Future<Output = Result<Page, BackendError>> + Send;

    /// Where sync stands.
    fn status(&self) -> impl Future<Output = Result<Value, BackendError>> + Send;

    /// Records one call. A call that cannot be recorded is answered with an error.
    fn record(&self, call: CallRecord) -> impl Future<Output = Result<(), BackendError>> + Send;
}
