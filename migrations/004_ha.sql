-- Placeholder so 005 applies on this branch: h9-ha's 004_ha.sql (VRRP settings of
-- node groups) replaces this file when the branches are merged.
SELECT 1;
