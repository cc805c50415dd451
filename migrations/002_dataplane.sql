-- The dataplane protocol: the trace context of each write (snapshots carry the
-- newest one, so an agent's apply span links to the write that caused it),
-- per-node traffic counters, and what agents tell about themselves.
CREATE TABLE revisions (
    revision    bigint PRIMARY KEY,
    traceparent text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE load_balancer_stats (
    node_id          text NOT NULL REFERENCES nodes (id) ON DELETE CASCADE,
    load_balancer_id text NOT NULL REFERENCES load_balancers (id) ON DELETE CASCADE,
    counters         jsonb NOT NULL,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (node_id, load_balancer_id)
);
CREATE INDEX load_balancer_stats_load_balancer_id_idx ON load_balancer_stats (load_balancer_id);

ALTER TABLE nodes ADD COLUMN agent_version text NOT NULL DEFAULT '';
