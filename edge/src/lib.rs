//! The horde edge: the `horde` CLI, the edge store (`.horde/`), and the recorders that turn
//! work on a repository into signed, hash-chained events. See ARCHITECTURE.md for the map.

pub mod approvals;
pub mod cli;
pub mod commands;
pub mod config;
pub mod daemon;
pub mod gate;
pub mod hooks;
pub mod import;
pub mod mcp;
pub mod merge;
pub mod output;
pub mod prices;
pub mod pty;
pub mod query;
pub mod record;
pub mod redact;
pub mod run;
pub mod scan;
pub mod session;
pub mod store;
pub mod sync;
pub(crate) mod sys;
pub mod timetravel;
pub mod trust;
pub mod verify;
pub mod watch;
pub mod withhold;
