-- Failure containment: ports the operator keeps away from listeners, node-level
-- errors agents report (kept until the node reports them resolved), and what
-- each node rejects per load balancer (or per object of one), so statuses are
-- derived from every live node's view rather than the last reporter's.
ALTER TABLE node_groups ADD COLUMN reserved_ports integer[] NOT NULL DEFAULT '{}';

ALTER TABLE nodes ADD COLUMN errors jsonb NOT NULL DEFAULT '[]';

CREATE TABLE node_lb_errors (
    node_id          text NOT NULL REFERENCES nodes (id) ON DELETE CASCADE,
    load_balancer_id text NOT NULL REFERENCES load_balancers (id) ON DELETE CASCADE,
    -- The listener, pool, member or routing rule HAProxy named; '' for the
    -- load balancer as a whole.
    object_id        text NOT NULL DEFAULT '',
    field            text NOT NULL DEFAULT '',
    message          text NOT NULL,
    since            timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (node_id, load_balancer_id, object_id)
);
CREATE INDEX node_lb_errors_load_balancer_id_idx ON node_lb_errors (load_balancer_id);
