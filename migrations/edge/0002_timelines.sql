-- Edge ledger schema, version 2: timelines and checkpoints (time travel).
-- Invariants: a fork's first event is a Checkpoint on the new timeline; `checkpoints` lists
-- every Checkpoint event (written in the same transaction); events of a forked timeline all
-- come after `fork_id` in local order.

-- Every timeline this ledger knows. The main timeline has no parent. A fork shares its
-- parent's history up to and including local event `fork_id` (0: none of it).
CREATE TABLE timelines (
    id               BLOB    PRIMARY KEY,
    parent           BLOB,
    fork_id          INTEGER,
    fork_event       BLOB,               -- event_id of event fork_id (what the cloud knows)
    name             TEXT,
    created_at       INTEGER NOT NULL,
    since_checkpoint INTEGER NOT NULL DEFAULT 0  -- file changes since its last checkpoint
) WITHOUT ROWID;

-- Checkpoint events: where each timeline's tree was written down whole.
CREATE TABLE checkpoints (
    timeline BLOB    NOT NULL,
    id       INTEGER NOT NULL,               -- local event id of the Checkpoint event
    manifest BLOB    NOT NULL,               -- its manifest blob hash
    PRIMARY KEY (timeline, id)
) WITHOUT ROWID;

INSERT INTO timelines (id, created_at)
    SELECT value, 0 FROM meta WHERE key = 'timeline_id';
-- Checkpoints of a ledger from version 1 are listed by `schema.rs` (it decodes their events).
