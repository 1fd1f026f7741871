-- Edge ledger schema, version 4: withheld blobs.
-- Invariant: a worktree row's `withheld` is the bit its last StateChange carried (a secret was
-- found in the content, or a manifest denies the path); checkpoints built from the index copy
-- it into their manifests, so a blob marked withheld is never sent to the cloud.
ALTER TABLE worktree ADD COLUMN withheld INTEGER NOT NULL DEFAULT 0;
