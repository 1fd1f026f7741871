//! Configuration: `.horde/config.toml` per repository, `HORDE_*` environment overrides, and
//! where the device key lives. Every setting is documented in the README's Configuration
//! section.

use std::path::PathBuf;

use serde::Deserialize;

use crate::store::writer::{DEFAULT_CHECKPOINT_INTERVAL, DEFAULT_HEAD_INTERVAL};

/// Output captured per stream of a recorded command; past it, capture stops (the command's
/// output still reaches the terminal) and the observation is marked truncated.
pub const DEFAULT_CAPTURE_LIMIT: u64 = 256 * 1024 * 1024;

/// An approval request unanswered this long expires (one hour).
pub const DEFAULT_APPROVAL_TTL_SECS: u64 = 60 * 60;
/// The longest an approval request may wait (a week): a forgotten request must not stay
/// answerable for ever.
pub const MAX_APPROVAL_TTL_SECS: u64 = 7 * 24 * 60 * 60;

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
    /// Seconds an approval request waits for a person before it expires.
    pub approval_ttl_secs: u64,
    /// Model prices by model-name prefix (`[prices."claude-opus"]`), over the built-in ones.
    pub prices: std::collections::BTreeMap<String, crate::prices::Price>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            agent: None,
            head_interval: DEFAULT_HEAD_INTERVAL,
            capture_limit: DEFAULT_CAPTURE_LIMIT,
            checkpoint_interval: DEFAULT_CHECKPOINT_INTERVAL,
            approval_ttl_secs: DEFAULT_APPROVAL_TTL_SECS,
            prices: std::collections::BTreeMap::new(),
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
        if let Ok(v) = std::env::var("HORDE_APPROVAL_TTL") {
            cfg.approval_ttl_secs = v.parse::<u64>().ok().ok_or_else(|| {
                ConfigError::Env(
                    "HORDE_APPROVAL_TTL",
                    v.clone(),
                    "expected a number of seconds".into(),
                )
            })?;
        }
        if cfg.approval_ttl_secs == 0 || cfg.approval_ttl_secs > MAX_APPROVAL_TTL_SECS {
            return Err(ConfigError::Parse(
                path.to_owned(),
                format!("approval_ttl_secs must be between 1 and {MAX_APPROVAL_TTL_SECS} (a week)"),
            ));
        }
        for (prefix, price) in &cfg.prices {
            if prefix.is_empty() {
                return Err(ConfigError::Parse(
                    path.to_owned(),
                    "[prices.\"\"]: a price needs a model-name prefix".into(),
                ));
            }
            price.check().map_err(|e| {
                ConfigError::Parse(path.to_owned(), format!("[prices.{prefix:?}]: {e}"))
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

# Seconds an approval request waits for a person before it expires (at most a week).
approval_ttl_secs = 3600

# Model prices in US dollars per million tokens, by model-name prefix (the longest matching
# prefix wins), over horde's built-in list prices. They price the model calls read from agents'
# transcripts. cache_read and cache_write default to the input price.
# [prices.\"claude-opus\"]
# input = 5.0
# output = 25.0
# cache_read = 0.5
# cache_write = 6.25
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

impl Config {
    pub fn approval_ttl(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.approval_ttl_secs)
    }
}

/// The key of this user's secret fingerprints (`fingerprint.key` beside the device key,
/// 32 random bytes, mode 0600, made on first use): one secret gets one fingerprint on this
/// machine, and without the key a fingerprint cannot be tested against guesses.
pub fn fingerprint_key() -> anyhow::Result<horde_policy::secrets::FingerprintKey> {
    use anyhow::Context;
    let path = user_config_dir().join("fingerprint.key");
    let read =
        |p: &std::path::Path| -> anyhow::Result<Option<horde_policy::secrets::FingerprintKey>> {
            match std::fs::read(p) {
                Ok(b) => {
                    let a: [u8; 32] = b.as_slice().try_into().map_err(|_| {
                        anyhow::anyhow!(
                            "{} is not a fingerprint key (32 bytes); remove it",
                            p.display()
                        )
                    })?;
                    Ok(Some(horde_policy::secrets::FingerprintKey::new(a)))
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(e).with_context(|| format!("cannot read {}", p.display())),
            }
        };
    if let Some(k) = read(&path)? {
        return Ok(k);
    }
    let dir = user_config_dir();
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).map_err(|e| anyhow::anyhow!("no randomness for a key: {e}"))?;
    // Written aside and linked into place: two processes racing both end up with one key.
    let tmp = dir.join(format!(".fingerprint.key.{}", std::process::id()));
    crate::sys::write_private(&tmp, &b)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    let linked = std::fs::hard_link(&tmp, &path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e).with_context(|| format!("cannot write {}", path.display())),
    }
    read(&path)?.ok_or_else(|| anyhow::anyhow!("{} vanished", path.display()))
}

/// The device key file.
pub fn device_key_path() -> PathBuf {
    user_config_dir().join("device.key")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_are_read_by_prefix_and_checked() {
        let dir = tempfile::tempdir().expect("tmp");
        let p = dir.path().join("config.toml");
        std::fs::write(
            &p,
            "[prices.\"claude-opus\"]\ninput = 4.0\noutput = 20.0\n\n[prices.\"my-model\"]\ninput = 1\noutput = 2\ncache_read = 0.1\n",
        )
        .expect("write");
        let cfg = Config::load(&p).expect("valid");
        assert_eq!(cfg.prices["claude-opus"].input, 4.0);
        assert_eq!(cfg.prices["my-model"].cache_read, Some(0.1));
        let (name, _) = crate::prices::lookup(&cfg.prices, "my-model-2").expect("priced");
        assert_eq!(name, "config: my-model");

        std::fs::write(&p, "[prices.\"x\"]\ninput = -1.0\noutput = 1.0\n").expect("write");
        let e = Config::load(&p).expect_err("negative").to_string();
        assert!(e.contains("prices") && e.contains("\"x\""), "{e}");
        std::fs::write(&p, "[prices.\"x\"]\ninput = 1.0\n").expect("write");
        assert!(Config::load(&p).is_err(), "output is required");
        // The commented example `horde init` writes parses.
        std::fs::write(&p, DEFAULT_CONFIG_TOML).expect("write");
        assert!(Config::load(&p).expect("default").prices.is_empty());
    }
}
