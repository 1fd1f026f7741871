//! The commands, one family per module (as cargo keeps them). Each takes its own arguments
//! (the clap `Args` types live here, not in `cli.rs`) and returns the exit code; what they
//! share is in [`crate::session`]. Nothing here imports [`crate::cli`].

pub mod agents;
pub mod daemon;
pub mod demo;
pub mod hooks;
pub mod import;
pub mod ledger;
pub mod mcp;
pub mod policy;
pub mod remote;
pub mod run;
pub mod sandbox;
pub mod screen;
pub mod secrets;
pub mod travel;
