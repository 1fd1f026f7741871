-- Edge ledger schema, version 7: small blobs made durable by the commit of the events that
-- name them. A blob up to 64 KiB is written to blobs/ without an fsync of its own; its bytes
-- go here in the same transaction as those events, so the WAL's one fsync covers both. After a
-- machine crash (rows of another boot) opening the ledger writes the files again from here;
-- rows of this boot are dropped once their files are flushed, half a minute later.
CREATE TABLE blob_journal (
    hash  BLOB PRIMARY KEY,
    data  BLOB NOT NULL,
    boot  TEXT NOT NULL,       -- /proc/sys/kernel/random/boot_id when written
    at    INTEGER NOT NULL     -- microseconds
);
CREATE INDEX blob_journal_boot ON blob_journal (boot);
CREATE INDEX blob_journal_at ON blob_journal (at);
