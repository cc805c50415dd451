-- Indexes on the revision columns (issue 10): a group's snapshot is rebuilt
-- from the rows written since the previous build (store.GroupRevisionSince,
-- store.LoadBalancersChangedSince), and the poll view reads the group's
-- revision the same way. Without these indexes each of those reads scans
-- every row of the group's tree (≈ 11,000 rows at 1,000 load balancers of 10
-- members: 1.5–4 ms each, twice per write); with them it reads the few rows
-- newer than the last build.
CREATE INDEX load_balancers_revision_idx ON load_balancers (revision);
CREATE INDEX listeners_revision_idx ON listeners (revision);
CREATE INDEX pools_revision_idx ON pools (revision);
CREATE INDEX members_revision_idx ON members (revision);
CREATE INDEX routing_rules_revision_idx ON routing_rules (revision);
CREATE INDEX certificates_revision_idx ON certificates (revision);
