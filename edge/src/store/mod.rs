//! The edge store: `.horde/` beside a repository's files.
//!
//! - `horde.db`: SQLite in WAL mode, synchronous=FULL (an acknowledged append survives power
//!   loss). Schema in `migrations/edge/`.
//! - `blobs/`: content-addressed files, see [`blobs`].
//! - `config.toml`: settings, see [`crate::config`].
//!
//! Writes go through the one [`writer::Writer`] thread of a process, which batches concurrent
//! requests into one transaction (group commit); across processes `BEGIN IMMEDIATE` serializes
//! writers and each transaction re-reads the chain tip, so two `horde run`s in one repository
//! never fork a chain. Reads use their own connections.

pub mod blobs;
pub mod read;
pub mod schema;
pub mod writer;

use std::path::{Path, PathBuf};

use horde_core::{ProjectId, TimelineId};
use rusqlite::{Connection, OpenFlags, OptionalExtension};

pub use blobs::BlobStore;

/// The `.horde/` directory name.
pub const HORDE_DIR: &str = ".horde";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not a horde repository (no .horde/ in {0} or any parent); run `horde init` first")]
    NotARepo(PathBuf),
    #[error("{0} is already a horde repository")]
    AlreadyInitialized(PathBuf),
    #[error(
        "the ledger {path} cannot be opened: {source}; it may be corrupt: restore .horde/ from a backup, or re-sync it from the cloud"
    )]
    Corrupt {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error(
        "the ledger {path} has schema version {found}, newer than this horde understands ({known}); upgrade horde"
    )]
    TooNew {
        path: PathBuf,
        found: i64,
        known: i64,
    },
    #[error("ledger database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Event(#[from] horde_core::EventError),
    #[error(transparent)]
    Key(#[from] horde_core::KeyError),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("the ledger's writer thread stopped; see the error before this one")]
    WriterGone,
    #[error(
        "the ledger was altered: its last event (seq {0}) is not where its index says; run `horde verify` and restore .horde/ from a backup or the cloud"
    )]
    Inconsistent(u64),
    #[error("ledger metadata `{0}` is missing or malformed; the ledger is corrupt")]
    BadMeta(&'static str),
}

impl StoreError {
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            what: what.into(),
            source,
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Where a repository's horde files live.
#[derive(Debug, Clone)]
pub struct Layout {
    pub root: PathBuf,
    pub dir: PathBuf,
}

impl Layout {
    pub fn new(root: &Path) -> Self {
        Self {
            root: root.to_owned(),
            dir: root.join(HORDE_DIR),
        }
    }

    /// The repository containing `start`: the nearest directory upwards that has `.horde/`.
    pub fn discover(start: &Path) -> Result<Self> {
        let start = start
            .canonicalize()
            .map_err(|e| StoreError::io(format!("cannot resolve {}", start.display()), e))?;
        let mut cur = Some(start.as_path());
        while let Some(dir) = cur {
            if dir.join(HORDE_DIR).is_dir() {
                return Ok(Self::new(dir));
            }
            cur = dir.parent();
        }
        Err(StoreError::NotARepo(start))
    }

    pub fn db(&self) -> PathBuf {
        self.dir.join("horde.db")
    }

    pub fn blobs(&self) -> PathBuf {
        self.dir.join("blobs")
    }

    pub fn config(&self) -> PathBuf {
        self.dir.join("config.toml")
    }

    pub fn tmp(&self) -> PathBuf {
        self.dir.join("tmp")
    }
}

/// What a ledger is about: fixed at `horde init`, except the current timeline.
#[derive(Debug, Clone, Copy)]
pub struct Meta {
    pub project: ProjectId,
    pub timeline: TimelineId,
}

/// Opens a connection with the pragmas every connection needs. `create` only for `init`.
pub fn connect(path: &Path, create: bool) -> Result<Connection> {
    let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    if create {
        flags |= OpenFlags::SQLITE_OPEN_CREATE;
    }
    let corrupt = |source| StoreError::Corrupt {
        path: path.to_owned(),
        source,
    };
    if !create && !path.exists() {
        return Err(StoreError::Corrupt {
            path: path.to_owned(),
            source: rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CANTOPEN),
                Some("horde.db is missing".into()),
            ),
        });
    }
    let conn = Connection::open_with_flags(path, flags).map_err(corrupt)?;
    conn.busy_timeout(std::time::Duration::from_secs(30))
        .map_err(corrupt)?;
    // The first statement that reads the file is where SQLite notices garbage.
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(corrupt)?;
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(corrupt)?;
    Ok(conn)
}

pub fn read_meta(conn: &Connection) -> Result<Meta> {
    let get = |key: &'static str| -> Result<[u8; 16]> {
        let v: Option<Vec<u8>> = conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()?;
        v.and_then(|v| <[u8; 16]>::try_from(v.as_slice()).ok())
            .ok_or(StoreError::BadMeta(key))
    };
    Ok(Meta {
        project: ProjectId::from_bytes(get("project_id")?),
        timeline: TimelineId::from_bytes(get("timeline_id")?),
    })
}

/// Read access to a ledger: no key, no writer. What `log`, `show`, `status` and `verify` use.
pub struct Ledger {
    pub layout: Layout,
    pub conn: Connection,
    pub blobs: BlobStore,
    pub meta: Meta,
}

impl Ledger {
    pub fn open(layout: Layout) -> Result<Self> {
        let db = layout.db();
        let mut conn = connect(&db, false)?;
        schema::migrate(&mut conn, &db)?;
        let meta = read_meta(&conn)?;
        let blobs = BlobStore::new(layout.blobs(), layout.tmp());
        let restored = blobs::recover_journal(&mut conn, &blobs)?;
        if restored > 0 {
            tracing::warn!("{restored} blobs written again from the journal after a crash");
        }
        Ok(Self {
            layout,
            conn,
            blobs,
            meta,
        })
    }
}

/// A ledger that can be written: the device key and the writer thread.
pub struct Store {
    pub ledger: Ledger,
    pub device: horde_core::DeviceId,
    pub public_key: [u8; 32],
    pub config: crate::config::Config,
    pub writer: writer::Writer,
}

impl Store {
    /// Creates `.horde/` in `root` and an empty ledger for a new project.
    pub fn init(root: &Path, key: horde_core::DeviceKey) -> Result<Self> {
        Self::init_as(root, key, ProjectId::new(), TimelineId::new())
    }

    /// Creates `.horde/` for an existing project (a clone): its id and main timeline.
    pub fn init_as(
        root: &Path,
        key: horde_core::DeviceKey,
        project: ProjectId,
        main: TimelineId,
    ) -> Result<Self> {
        let layout = Layout::new(root);
        if layout.dir.exists() {
            return Err(StoreError::AlreadyInitialized(root.to_owned()));
        }
        let mkdir = |p: &Path| {
            std::fs::create_dir_all(p)
                .map_err(|e| StoreError::io(format!("cannot create {}", p.display()), e))
        };
        // Build in a temp dir beside, then rename: a failed init leaves no half-made .horde/.
        let staging = tempfile::Builder::new()
            .prefix(".horde-init-")
            .tempdir_in(root)
            .map_err(|e| StoreError::io(format!("cannot write in {}", root.display()), e))?;
        let stage = Layout {
            root: root.to_owned(),
            dir: staging.path().to_owned(),
        };
        mkdir(&stage.blobs())?;
        mkdir(&stage.tmp())?;
        let write = |p: PathBuf, text: &str| {
            std::fs::write(&p, text)
                .map_err(|e| StoreError::io(format!("cannot write {}", p.display()), e))
        };
        write(stage.config(), crate::config::DEFAULT_CONFIG_TOML)?;
        // Keeps .horde/ out of git without touching the user's own .gitignore.
        write(stage.dir.join(".gitignore"), "*\n")?;
        {
            let db = stage.db();
            let mut conn = connect(&db, true)?;
            schema::migrate(&mut conn, &db)?;
            let tx = conn.transaction()?;
            let put = |k: &str, v: &[u8]| {
                tx.execute(
                    "INSERT INTO meta (key, value) VALUES (?1, ?2)",
                    rusqlite::params![k, v],
                )
            };
            put("project_id", project.as_bytes())?;
            put("timeline_id", main.as_bytes())?;
            put("created_at", &horde_core::time::now_micros().to_be_bytes())?;
            tx.commit()?;
            conn.pragma_update(None, "wal_checkpoint", "TRUNCATE")?;
        }
        let staged = staging.keep();
        std::fs::rename(&staged, &layout.dir).map_err(|e| {
            let _ = std::fs::remove_dir_all(&staged);
            StoreError::io(format!("cannot create {}", layout.dir.display()), e)
        })?;
        Self::open(layout, key)
    }

    pub fn open(layout: Layout, key: horde_core::DeviceKey) -> Result<Self> {
        let config = crate::config::Config::load(&layout.config())?;
        let ledger = Ledger::open(layout)?;
        let device = key.device_id();
        let public_key = key.public_key();
        let conn = connect(&ledger.layout.db(), false)?;
        let writer = writer::Writer::start(
            conn,
            ledger.meta.project,
            key,
            config.head_interval,
            writer::CheckpointPolicy {
                interval: config.checkpoint_interval,
                blobs: ledger.blobs.clone(),
            },
        );
        Ok(Self {
            ledger,
            device,
            public_key,
            config,
            writer,
        })
    }
}
