-- A node token may be bound to one node name: it then registers, polls and
-- reports for that node only. NULL: any node (of its group, when bound to one).
ALTER TABLE tokens ADD COLUMN node_name text;
ALTER TABLE tokens ADD CONSTRAINT tokens_node_name_check CHECK (kind = 'node' OR node_name IS NULL);
