//! What every command shares: the current directory, the device key, opening the
//! repository's store or ledger, and reporting problems. It never imports a command.

use std::path::PathBuf;

use anyhow::{Context, Result};
use horde_core::DeviceKey;

use crate::config::device_key_path;
use crate::store::{Layout, Ledger, Store};

/// Exit code of a recording command when it succeeded but part of its effect was not recorded.
pub const EXIT_INCOMPLETE: u8 = 3;
/// Exit code of `horde policy check` when the answer is deny (or a person said no).
pub const EXIT_DENIED: u8 = 4;
/// Exit code of `horde policy check` when the answer is ask (and nobody answered yet).
pub const EXIT_ASK: u8 = 5;
/// Exit code of `horde secrets scan` when it found secrets.
pub const EXIT_FOUND: u8 = 6;
/// Exit code of `horde screen` when the content is quarantined (prompt injection likely).
pub const EXIT_QUARANTINED: u8 = 7;

pub fn cwd() -> Result<PathBuf> {
    std::env::current_dir().context("cannot read the current directory")
}

/// The user's device key, created on first use.
pub fn load_key() -> Result<DeviceKey> {
    Ok(DeviceKey::load_or_create(&device_key_path())?)
}

/// Opens the repository around the current directory for writing.
pub fn open_store() -> Result<Store> {
    let layout = Layout::discover(&cwd()?)?;
    Ok(Store::open(layout, load_key()?)?)
}

/// Opens the repository around the current directory for reading.
pub fn open_ledger() -> Result<Ledger> {
    Ok(Ledger::open(Layout::discover(&cwd()?)?)?)
}

/// This machine's device, if it has a key (reading never creates one).
pub fn local_device() -> Option<horde_core::DeviceId> {
    DeviceKey::load(&device_key_path())
        .ok()
        .map(|k| k.device_id())
}

/// Prints the warnings and the paths that could not be recorded.
pub fn print_problems(skipped: &[String], warnings: &[String]) {
    for w in warnings {
        eprintln!("horde: warning: {w}");
    }
    for s in skipped {
        eprintln!("horde: error: {s}");
    }
}

/// The distinctive end of a device id, as people see it (v7 ids made in the same minute share
/// their start).
pub fn short_device(id: &str) -> &str {
    &id[id.len().saturating_sub(8)..]
}
