//! Configuration: command-line flags, then `HORDE_*` environment variables (clap reads both),
//! then the TOML file given with `--config`, then defaults. Every setting has all three names:
//! the flag `--max-blob-bytes`, the variable `HORDE_MAX_BLOB_BYTES`, the key `max_blob_bytes`.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, bail};
use horde_blob::S3Config;
use serde::Deserialize;

/// Largest sync request body (protobuf `SyncBatch`).
pub const DEFAULT_MAX_SYNC_BYTES: usize = 8 << 20;
/// Most events in one sync request.
pub const DEFAULT_MAX_SYNC_EVENTS: usize = 5_000;
/// Largest blob upload.
pub const DEFAULT_MAX_BLOB_BYTES: u64 = 1 << 30;
/// Largest JSON request body.
pub const MAX_JSON_BYTES: usize = 64 << 10;

#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// TOML file with any of the settings below (keys as the flags, with `_` for `-`)
    #[arg(long, env = "HORDE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to listen on; port 0 picks a free port (the address is printed on stdout)
    #[arg(long, env = "HORDE_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Event store: `sqlite:PATH` (embedded, one process) or `fdb:CLUSTER_FILE` (FoundationDB;
    /// `fdb:` alone uses the default cluster file; needs a build with `--features fdb`)
    #[arg(long, env = "HORDE_STORE")]
    pub store: Option<String>,
    /// Blob store: `fs:DIR` or `s3://BUCKET[/PREFIX]`
    #[arg(long, env = "HORDE_BLOBS")]
    pub blobs: Option<String>,
    /// S3 endpoint URL (for S3-compatible servers; default: AWS)
    #[arg(long, env = "HORDE_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,
    /// S3 region (default: from the AWS environment, else us-east-1)
    #[arg(long, env = "HORDE_S3_REGION")]
    pub s3_region: Option<String>,
    /// S3 access key id (default: the AWS credential chain)
    #[arg(long, env = "HORDE_S3_ACCESS_KEY_ID")]
    pub s3_access_key_id: Option<String>,
    /// S3 secret access key
    #[arg(long, env = "HORDE_S3_SECRET_ACCESS_KEY", hide_env_values = true)]
    pub s3_secret_access_key: Option<String>,
    /// Path-style S3 addressing (`ENDPOINT/BUCKET/KEY`), needed by most S3-compatible servers
    #[arg(long, env = "HORDE_S3_PATH_STYLE")]
    pub s3_path_style: Option<bool>,
    /// Largest sync request body in bytes [default: 8 MiB]
    #[arg(long, env = "HORDE_MAX_SYNC_BYTES")]
    pub max_sync_bytes: Option<usize>,
    /// Most events in one sync request [default: 5000]
    #[arg(long, env = "HORDE_MAX_SYNC_EVENTS")]
    pub max_sync_events: Option<usize>,
    /// Largest blob upload in bytes [default: 1 GiB]
    #[arg(long, env = "HORDE_MAX_BLOB_BYTES")]
    pub max_blob_bytes: Option<u64>,
    /// Requests per second allowed per API key (sustained) [default: 100]
    #[arg(long, env = "HORDE_RATE_LIMIT")]
    pub rate_limit: Option<u32>,
    /// Requests an API key may burst above the sustained rate [default: 200]
    #[arg(long, env = "HORDE_RATE_BURST")]
    pub rate_burst: Option<u32>,
    /// Signups per minute allowed per client address [default: 10]
    #[arg(long, env = "HORDE_SIGNUP_RATE")]
    pub signup_rate: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<SocketAddr>,
    store: Option<String>,
    blobs: Option<String>,
    s3_endpoint: Option<String>,
    s3_region: Option<String>,
    s3_access_key_id: Option<String>,
    s3_secret_access_key: Option<String>,
    s3_path_style: Option<bool>,
    max_sync_bytes: Option<usize>,
    max_sync_events: Option<usize>,
    max_blob_bytes: Option<u64>,
    rate_limit: Option<u32>,
    rate_burst: Option<u32>,
    signup_rate: Option<u32>,
}

/// Where the events live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreLocation {
    Sqlite(PathBuf),
    Fdb(Option<PathBuf>),
}

impl StoreLocation {
    pub fn parse(s: &str) -> anyhow::Result<Self> {
        if let Some(path) = s.strip_prefix("sqlite:") {
            if path.is_empty() {
                bail!(
                    "store {s:?}: `sqlite:` needs a file path, e.g. sqlite:/var/lib/horde/cloud.db"
                );
            }
            return Ok(StoreLocation::Sqlite(PathBuf::from(path)));
        }
        if let Some(path) = s.strip_prefix("fdb:") {
            return Ok(StoreLocation::Fdb(
                (!path.is_empty()).then(|| PathBuf::from(path)),
            ));
        }
        bail!("store {s:?}: expected sqlite:PATH or fdb:CLUSTER_FILE")
    }
}

/// The settings `serve` runs with.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub store: StoreLocation,
    pub blobs: String,
    pub s3: S3Config,
    pub limits: Limits,
    pub rate_limit: u32,
    pub rate_burst: u32,
    pub signup_rate: u32,
}

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_sync_bytes: usize,
    pub max_sync_events: usize,
    pub max_blob_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_sync_bytes: DEFAULT_MAX_SYNC_BYTES,
            max_sync_events: DEFAULT_MAX_SYNC_EVENTS,
            max_blob_bytes: DEFAULT_MAX_BLOB_BYTES,
        }
    }
}

impl Config {
    pub fn load(args: &ServeArgs) -> anyhow::Result<Config> {
        let file: FileConfig = match &args.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading config file {}", path.display()))?;
                toml::from_str(&text).with_context(|| format!("config file {}", path.display()))?
            }
            None => FileConfig::default(),
        };
        let a = args.clone();
        let store = a
            .store
            .or(file.store)
            .unwrap_or_else(|| "sqlite:horde-cloud.db".into());
        let limits = Limits {
            max_sync_bytes: a
                .max_sync_bytes
                .or(file.max_sync_bytes)
                .unwrap_or(DEFAULT_MAX_SYNC_BYTES),
            max_sync_events: a
                .max_sync_events
                .or(file.max_sync_events)
                .unwrap_or(DEFAULT_MAX_SYNC_EVENTS),
            max_blob_bytes: a
                .max_blob_bytes
                .or(file.max_blob_bytes)
                .unwrap_or(DEFAULT_MAX_BLOB_BYTES),
        };
        if limits.max_sync_events == 0 || limits.max_sync_events > horde_ledger::MAX_BATCH_EVENTS {
            bail!(
                "max_sync_events must be 1 to {}",
                horde_ledger::MAX_BATCH_EVENTS
            );
        }
        if limits.max_sync_bytes < 1024 || limits.max_sync_bytes > horde_ledger::MAX_BATCH_BYTES {
            bail!(
                "max_sync_bytes must be 1024 to {}",
                horde_ledger::MAX_BATCH_BYTES
            );
        }
        let rate_limit = a.rate_limit.or(file.rate_limit).unwrap_or(100);
        let rate_burst = a.rate_burst.or(file.rate_burst).unwrap_or(200);
        let signup_rate = a.signup_rate.or(file.signup_rate).unwrap_or(10);
        if rate_limit == 0 || rate_burst == 0 || signup_rate == 0 {
            bail!("rate_limit, rate_burst and signup_rate must be at least 1");
        }
        Ok(Config {
            listen: a
                .listen
                .or(file.listen)
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080))),
            store: StoreLocation::parse(&store)?,
            blobs: a
                .blobs
                .or(file.blobs)
                .unwrap_or_else(|| "fs:horde-cloud-blobs".into()),
            s3: S3Config {
                endpoint: a.s3_endpoint.or(file.s3_endpoint),
                region: a.s3_region.or(file.s3_region),
                access_key_id: a.s3_access_key_id.or(file.s3_access_key_id),
                secret_access_key: a.s3_secret_access_key.or(file.s3_secret_access_key),
                path_style: a.s3_path_style.or(file.s3_path_style).unwrap_or(false),
            },
            limits,
            rate_limit,
            rate_burst,
            signup_rate,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_locations() {
        assert_eq!(
            StoreLocation::parse("sqlite:/x/y.db").expect("sqlite"),
            StoreLocation::Sqlite("/x/y.db".into())
        );
        assert_eq!(
            StoreLocation::parse("fdb:").expect("fdb"),
            StoreLocation::Fdb(None)
        );
        for bad in ["", "sqlite:", "postgres://x", "/tmp/x.db"] {
            assert!(StoreLocation::parse(bad).is_err(), "{bad}");
        }
    }
}
