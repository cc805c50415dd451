-- Incremental snapshots (issue 10): a delta after revision N must show every
-- delete since N, and Purge forgets deletes. snapshot_purges remembers, per
-- node group, the newest deleted_revision purged: a node asking after an
-- older revision gets a full snapshot.
CREATE TABLE snapshot_purges (
    node_group_id   text PRIMARY KEY REFERENCES node_groups(id) ON DELETE CASCADE,
    purged_revision bigint NOT NULL
);
