-- Node lifecycle: per-group heartbeat and down timing, operator states
-- (cordoned, draining), nodes failing every apply, the VIPs a node holds,
-- node tokens bound to one node, and tombstones of deleted nodes so a running
-- agent cannot silently re-register a node an operator deleted.
ALTER TABLE node_groups ADD COLUMN heartbeat_interval_ms integer NOT NULL DEFAULT 2000 CHECK (heartbeat_interval_ms BETWEEN 100 AND 600000);
ALTER TABLE node_groups ADD COLUMN down_timeout_ms integer NOT NULL DEFAULT 10000 CHECK (down_timeout_ms BETWEEN 200 AND 3600000);
ALTER TABLE node_groups ADD COLUMN down_node_cleanup_after_ms bigint NOT NULL DEFAULT 86400000 CHECK (down_node_cleanup_after_ms >= 1000);
ALTER TABLE node_groups ADD COLUMN apply_grace_ms integer NOT NULL DEFAULT 30000 CHECK (apply_grace_ms BETWEEN 0 AND 86400000);

-- '' (in service), 'cordoned' or 'draining': set by the operator.
ALTER TABLE nodes ADD COLUMN admin_state text NOT NULL DEFAULT '' CHECK (admin_state IN ('', 'cordoned', 'draining'));
-- Since when every report of the node failed to apply (a nack, or node
-- errors); NULL once it acknowledges a snapshot without node errors.
ALTER TABLE nodes ADD COLUMN apply_failing_since timestamptz;
-- The newest revision the node nacked: an ack at or past it ends the failure.
ALTER TABLE nodes ADD COLUMN apply_failing_revision bigint NOT NULL DEFAULT 0;
ALTER TABLE nodes ADD COLUMN vips jsonb NOT NULL DEFAULT '[]';

-- A node token bound to one node goes with it.
ALTER TABLE tokens ADD COLUMN node_id text REFERENCES nodes (id) ON DELETE CASCADE;
CREATE INDEX tokens_node_id_idx ON tokens (node_id);
ALTER TABLE tokens ADD CONSTRAINT tokens_node_id_check CHECK (kind = 'node' OR node_id IS NULL);

CREATE TABLE deleted_nodes (
    name          text PRIMARY KEY,
    node_group_id text NOT NULL REFERENCES node_groups (id) ON DELETE CASCADE,
    node_id       text NOT NULL,
    deleted_at    timestamptz NOT NULL DEFAULT now()
);

-- Every node with its derived state and whether it counts ("serves") for its
-- group: heard from within the group's down-timeout, neither cordoned nor
-- draining, and not failing every apply (nacks, or node errors) for longer
-- than the group's apply grace. Only serving nodes hold back `active`, their
-- rejections mark objects `error`, and their applied revisions gate purges.
-- api/store.NodeStateOf mirrors the state expression.
CREATE VIEW node_states AS
SELECT n.id, n.name, n.node_group_id, n.applied_revision, n.errors, n.last_seen_at, n.admin_state,
  n.last_seen_at IS NOT NULL AND n.last_seen_at < now() - g.down_timeout_ms * interval '1 millisecond' AS down,
  COALESCE(n.apply_failing_since < now() - g.apply_grace_ms * interval '1 millisecond', false)
    OR EXISTS (SELECT 1 FROM jsonb_array_elements(n.errors) e
      WHERE (e->>'since')::timestamptz < now() - g.apply_grace_ms * interval '1 millisecond') AS failing,
  CASE
    WHEN n.last_seen_at IS NULL THEN COALESCE(NULLIF(n.admin_state, ''), 'registered')
    WHEN n.last_seen_at < now() - g.down_timeout_ms * interval '1 millisecond' THEN 'down'
    WHEN n.admin_state <> '' THEN n.admin_state
    WHEN jsonb_array_length(n.errors) > 0 OR n.apply_failing_since IS NOT NULL THEN 'error'
    ELSE 'online' END AS state,
  COALESCE(n.last_seen_at >= now() - g.down_timeout_ms * interval '1 millisecond', false) AND n.admin_state = ''
    AND NOT COALESCE(n.apply_failing_since < now() - g.apply_grace_ms * interval '1 millisecond', false)
    AND NOT EXISTS (SELECT 1 FROM jsonb_array_elements(n.errors) e
      WHERE (e->>'since')::timestamptz < now() - g.apply_grace_ms * interval '1 millisecond') AS serving
FROM nodes n JOIN node_groups g ON g.id = n.node_group_id;
