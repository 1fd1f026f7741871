//! Configuration: `.horde/config.toml` per repository, `HORDE_*` environment overrides, and
//! where the device key lives. Every setting is documented in the README's Configuration
//! section.

use std::path::PathBuf;

use serde::Deserialize;

use crate::store::writer::{DEFAULT_CHECKPOINT_INTERVAL, DEFAULT_HEAD_INTERVAL};

/// Output captured per stream of a recorded command; past it, capture stops (the command's
/// output still reaches the terminal) and the observation is marked truncated.
pub const DEFAULT_CAPTURE_LIMIT: u64 = 256 * 1024 * 1024;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Agent name for `horde run` when `--agent` is not given (default: the command's name).
    pub agent: Option<String>,
    /// Sign the chain head at least every this many events.
    pub head_interval: u64,
    /// Bytes of stdout and of stderr captured per recorded command.
    pub capture_limit: u64,
    /// Write a checkpoint (a manifest of the whole tree) after at least this many file
    /// changes on a timeline, and after no fewer than a quarter of the tree's entries: the
    /// state at any point is then a checkpoint plus a bounded number of changes.
    pub checkpoint_interval: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            agent: None,
            head_interval: DEFAULT_HEAD_INTERVAL,
            capture_limit: DEFAULT_CAPTURE_LIMIT,
            checkpoint_interval: DEFAULT_CHECKPOINT_INTERVAL,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {0}: {1}")]
    Read(PathBuf, std::io::Error),
    #[error("{0} is not valid: {1}")]
    Parse(PathBuf, String),
    #[error("environment variable {0}={1:?} is not valid: {2}")]
    Env(&'static str, String, String),
}

impl Config {
    /// Reads `path` (a missing file means defaults), then applies `HORDE_*` overrides.
    pub fn load(path: &std::path::Path) -> Result<Self, ConfigError> {
        let mut cfg = match std::fs::read_to_string(path) {
            Ok(text) => toml::from_str::<Config>(&text)
                .map_err(|e| ConfigError::Parse(path.to_owned(), e.to_string()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Config::default(),
            Err(e) => return Err(ConfigError::Read(path.to_owned(), e)),
        };
        if let Ok(v) = std::env::var("HORDE_AGENT")
            && !v.is_empty()
        {
            cfg.agent = Some(v);
        }
        if let Ok(v) = std::env::var("HORDE_HEAD_INTERVAL") {
            cfg.head_interval = v.parse::<u64>().ok().filter(|n| *n > 0).ok_or_else(|| {
                ConfigError::Env(
                    "HORDE_HEAD_INTERVAL",
                    v.clone(),
                    "expected a positive integer".into(),
                )
            })?;
        }
        if let Ok(v) = std::env::var("HORDE_CHECKPOINT_INTERVAL") {
            cfg.checkpoint_interval =
                v.parse::<u64>().ok().filter(|n| *n > 0).ok_or_else(|| {
                    ConfigError::Env(
                        "HORDE_CHECKPOINT_INTERVAL",
                        v.clone(),
                        "expected a positive integer".into(),
                    )
                })?;
        }
        if cfg.checkpoint_interval == 0 {
            return Err(ConfigError::Parse(
                path.to_owned(),
                "checkpoint_interval must be at least 1".into(),
            ));
        }
        if cfg.head_interval == 0 {
            return Err(ConfigError::Parse(
                path.to_owned(),
                "head_interval must be at least 1".into(),
            ));
        }
        Ok(cfg)
    }
}

/// The text `horde init` writes to `.horde/config.toml`.
pub const DEFAULT_CONFIG_TOML: &str = "\
# horde settings for this repository. Environment variables override them (HORDE_AGENT,
# HORDE_HEAD_INTERVAL, HORDE_CHECKPOINT_INTERVAL). See the README's Configuration section.

# Agent name recorded by `horde run` when --agent is not given (default: the command's name).
# agent = \"builder\"

# Sign the device's chain head at least every this many events.
head_interval = 1000

# Bytes of stdout and of stderr captured per recorded command (256 MiB).
capture_limit = 268435456

# Write a checkpoint (a manifest of the whole tree) after at least this many file changes on a
# timeline (and no fewer than a quarter of the tree's entries), so that restoring any point
# reads one manifest and a bounded number of changes.
checkpoint_interval = 1000
";

static CONFIG_DIR_OVERRIDE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// Makes this process use `dir` as its config directory (the demo keeps its own device key).
pub fn override_user_config_dir(dir: PathBuf) {
    let _ = CONFIG_DIR_OVERRIDE.set(dir);
}

/// The user's horde config directory: `$HORDE_CONFIG_DIR`, else `$XDG_CONFIG_HOME/horde`, else
/// `~/.config/horde`.
pub fn user_config_dir() -> PathBuf {
    if let Some(d) = CONFIG_DIR_OVERRIDE.get() {
        return d.clone();
    }
    if let Some(d) = std::env::var_os("HORDE_CONFIG_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("XDG_CONFIG_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("horde");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    home.join(".config").join("horde")
}

/// The device key file.
pub fn device_key_path() -> PathBuf {
    user_config_dir().join("device.key")
}
