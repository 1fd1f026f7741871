-- Edge ledger schema, version 1.
-- Invariants: events are append-only and never deleted by sync; (device_id, seq) is gap-free per
-- device from 1; `hash` is SHA-256(body) of the stored bytes; `worktree` changes only in the
-- same transaction as the events that record those changes.

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value BLOB NOT NULL
) WITHOUT ROWID;

-- No secondary index on events: an append touches one B-tree (the hot path). Lookups by
-- (device, seq), by event id and by time go through `segments`.
CREATE TABLE events (
    id             INTEGER PRIMARY KEY,   -- local order of arrival; per device, also seq order
    device_id      BLOB    NOT NULL,
    seq            INTEGER NOT NULL,
    event_id       BLOB    NOT NULL,
    hash           BLOB    NOT NULL,
    body           BLOB    NOT NULL,      -- encoded EventBody, exactly as hashed
    type           TEXT    NOT NULL,
    agent          TEXT    NOT NULL,
    timeline       BLOB    NOT NULL,
    occurred_at    INTEGER NOT NULL,      -- microseconds since the Unix epoch
    path           TEXT,                  -- state_change path, for `log --path`
    synced_version BLOB                   -- NULL until the cloud acknowledged it
);

-- One row per committed run of one device's events: events first_id..last_id are that
-- device's seqs first_seq, first_seq+1, … with no gap. Written in the same transaction.
CREATE TABLE segments (
    first_id     INTEGER PRIMARY KEY,
    last_id      INTEGER NOT NULL,
    device_id    BLOB    NOT NULL,
    first_seq    INTEGER NOT NULL,
    min_event_ms INTEGER NOT NULL,        -- range of the UUIDv7 timestamps of the event ids
    max_event_ms INTEGER NOT NULL,
    min_at       INTEGER NOT NULL,        -- range of occurred_at
    max_at       INTEGER NOT NULL
);
CREATE INDEX segments_device_seq ON segments (device_id, first_seq);

CREATE TABLE chain_heads (
    device_id  BLOB    NOT NULL,
    seq        INTEGER NOT NULL,
    hash       BLOB    NOT NULL,
    signed_at  INTEGER NOT NULL,
    public_key BLOB    NOT NULL,
    signature  BLOB    NOT NULL,
    PRIMARY KEY (device_id, seq)
) WITHOUT ROWID;

CREATE TABLE blobs (
    hash       BLOB    PRIMARY KEY,
    size       INTEGER NOT NULL,
    created_at INTEGER NOT NULL
) WITHOUT ROWID;

-- The tree as last recorded, per timeline: what `horde run` compares against so that only
-- changed files are hashed (size + mtime pre-check).
CREATE TABLE worktree (
    timeline BLOB    NOT NULL,
    path     TEXT    NOT NULL,
    kind     INTEGER NOT NULL,            -- horde.v1.FileKind
    mode     INTEGER NOT NULL,
    size     INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,            -- 0 = unknown, always re-hash
    hash     BLOB,                        -- NULL for directories
    PRIMARY KEY (timeline, path)
) WITHOUT ROWID;
