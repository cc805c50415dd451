-- Incremental status derivation (issue 10, session 5): a derivation reads
-- and writes the objects that are not settled (not active, or carrying a
-- message: written and not yet applied everywhere, rejected, being deleted)
-- instead of every row of the group's tree, so it costs what changed, not
-- the group's size (1,000 nodes × 1,000 load balancers took seconds). Each
-- index holds the unsettled rows only: a handful in a settled group.
CREATE INDEX load_balancers_unsettled_idx ON load_balancers (node_group_id)
    WHERE provisioning_status <> 'active' OR status_message <> '';
CREATE INDEX listeners_unsettled_idx ON listeners (load_balancer_id)
    WHERE provisioning_status <> 'active' OR status_message <> '';
CREATE INDEX pools_unsettled_idx ON pools (load_balancer_id)
    WHERE provisioning_status <> 'active' OR status_message <> '';
CREATE INDEX members_unsettled_idx ON members (load_balancer_id)
    WHERE provisioning_status <> 'active' OR status_message <> '';
CREATE INDEX routing_rules_unsettled_idx ON routing_rules (load_balancer_id)
    WHERE provisioning_status <> 'active' OR status_message <> '';
-- Load balancers reading degraded may recover when a node catches up.
CREATE INDEX load_balancers_degraded_idx ON load_balancers (node_group_id)
    WHERE operating_status = 'degraded';
