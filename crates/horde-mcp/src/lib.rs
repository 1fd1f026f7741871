//! horde's tools over the Model Context Protocol, for the agents people already use (Claude
//! Code, Codex, …): read the log, an event and its blobs, a file's history, a diff between
//! points; restore a tree into a new directory; list approval requests; sync status.
//!
//! This crate owns the MCP side only: the tools' schemas and argument checks
//! ([`tools`]), the bounds on what a call returns (≤ [`tools::MAX_RESULT_BYTES`] of text,
//! cursor/limit paging), and the rmcp server ([`server`]) that speaks the 2026-07-28 protocol
//! (stateless, `server/discover`) and the `initialize` handshake of 2025-11-25 and before.
//! What the tools read and write is a [`Backend`]: the edge implements it over `.horde/`,
//! the cloud over its ledger.
//!
//! Invariants: every `tools/call` is recorded through [`Backend::record`] (arguments and a
//! result summary, bounded) before its result is returned, and a call that cannot be
//! recorded returns no result; no tool decides an approval (that is a person's act, and the
//! caller here is a model).

pub mod backend;
pub mod server;
pub mod tools;

pub use backend::{
    Backend, BackendError, BlobInfo, CallRecord, Chunk, Item, LogQuery, Page, PageRequest,
    RestoreRequest, Shown,
};
pub use server::{HordeMcp, ServeError, VERSIONS, serve_stdio};
