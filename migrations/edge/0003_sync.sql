-- Edge ledger schema, version 3: the syncer (store-and-forward to one cloud, pull, conflicts).
-- Invariants: an own event's `synced_version` is set only after the cloud acknowledged it;
-- pulled events arrive with theirs; `sync_state.pull_cursor` moves in the same transaction as
-- the events it covers, so a crash repeats a page and never skips one.

-- The cloud this project syncs with (one per repository: events carry one `synced_version`).
CREATE TABLE remotes (
    name       TEXT    PRIMARY KEY,
    url        TEXT    NOT NULL,
    api_key    TEXT,                          -- NULL: take HORDE_API_KEY at sync time
    created_at INTEGER NOT NULL
) WITHOUT ROWID;

-- One row per remote: what is known about the far side and how the last attempts went.
CREATE TABLE sync_state (
    remote          TEXT    PRIMARY KEY,
    registered      INTEGER NOT NULL DEFAULT 0, -- project and device known to the cloud
    pushed_id       INTEGER NOT NULL DEFAULT 0, -- every own event with id <= this is acknowledged
    pull_cursor     BLOB,                       -- versionstamp: pulled up to here
    merged_id       INTEGER NOT NULL DEFAULT 0, -- pulled events up to this id are in the tree
    last_success_at INTEGER,
    last_attempt_at INTEGER,
    last_error      TEXT
) WITHOUT ROWID;

-- Blobs that pulled events name and that are not here yet (fetched after the page).
CREATE TABLE missing_blobs (
    hash BLOB PRIMARY KEY
) WITHOUT ROWID;

-- Two devices changed one path from the same base while apart.
CREATE TABLE conflicts (
    id          INTEGER PRIMARY KEY,
    timeline    BLOB    NOT NULL,
    path        TEXT    NOT NULL,
    ours        INTEGER NOT NULL,             -- local event id of this device's change
    theirs      INTEGER NOT NULL,             -- local event id of the other device's change
    head        TEXT    NOT NULL,             -- 'ours' | 'theirs' | 'merged': what the tree took
    detected_at INTEGER NOT NULL,
    resolved_by BLOB                          -- event id that resolved it; NULL while open
);
CREATE INDEX conflicts_open ON conflicts (timeline, path) WHERE resolved_by IS NULL;

-- Forks this device made are announced to the cloud before their events are sent.
ALTER TABLE timelines ADD COLUMN published INTEGER NOT NULL DEFAULT 0;
-- Uploaded to the cloud (HEAD said present, or PUT stored it).
ALTER TABLE blobs ADD COLUMN uploaded INTEGER NOT NULL DEFAULT 0;
