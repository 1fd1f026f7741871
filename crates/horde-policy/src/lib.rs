//! Governance for agents, knowing nothing about how tools run: what a role may read, write,
//! execute, reach and spend (capability manifests compiled to Cedar), command lines judged by
//! their structure, trust tiers and error budgets, approval requests and remembered answers,
//! secret scanning and redaction, and prompt-injection screening of untrusted content.
//!
//! Invariant: a decision that cannot be made is never "allow" (unparseable → ask; a missing or
//! corrupt manifest → an error, and callers treat an error as deny).

pub mod budget;
pub mod command;
pub mod decide;
pub mod injection;
pub mod manifest;
pub mod paths;
pub mod remember;
pub mod secrets;
pub mod tiers;
