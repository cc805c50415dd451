-- Targeted wake-ups: a write notifies only the node groups whose snapshots it
-- changed, so only their agents' long-polls wake. The database derives the
-- groups, so no writer can forget one: every row that enters a group's
-- snapshot (the group itself, its load balancers and their listeners, pools,
-- members and routing rules, and its nodes, whose revision carries their admin
-- state) notifies channel fulcrum_revision with '<revision> <node group id>'
-- when it is inserted or takes a new revision. A certificate's rotation gives
-- the listeners using it a new revision, so it wakes their groups. Postgres
-- sends one notification per distinct payload at commit, none on rollback.
-- Status updates (reports) do not change revisions and notify nobody; purges
-- delete rows no snapshot shows any more.

CREATE FUNCTION fulcrum_notify_group(rev bigint, group_id text) RETURNS void LANGUAGE sql AS
$$ SELECT pg_notify('fulcrum_revision', rev::text || ' ' || group_id) $$;

-- Rows with their own node_group_id: node groups (their id), load balancers
-- and nodes. A row moved to another group notifies both.
CREATE FUNCTION fulcrum_notify_group_row() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM fulcrum_notify_group((SELECT last_value FROM revision_seq), OLD.node_group_id);
        RETURN NULL;
    END IF;
    PERFORM fulcrum_notify_group(NEW.revision, NEW.node_group_id);
    IF TG_OP = 'UPDATE' AND OLD.node_group_id IS DISTINCT FROM NEW.node_group_id THEN
        PERFORM fulcrum_notify_group(NEW.revision, OLD.node_group_id);
    END IF;
    RETURN NULL;
END $$;

CREATE FUNCTION fulcrum_notify_node_group() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM fulcrum_notify_group(NEW.revision, NEW.id);
    RETURN NULL;
END $$;

-- Children of a load balancer: their group is their load balancer's.
CREATE FUNCTION fulcrum_notify_lb_child() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM fulcrum_notify_group(NEW.revision, lb.node_group_id) FROM load_balancers lb WHERE lb.id = NEW.load_balancer_id;
    RETURN NULL;
END $$;

CREATE TRIGGER node_groups_notify_update AFTER UPDATE ON node_groups FOR EACH ROW
    WHEN (OLD.revision IS DISTINCT FROM NEW.revision) EXECUTE FUNCTION fulcrum_notify_node_group();

CREATE TRIGGER load_balancers_notify_insert AFTER INSERT ON load_balancers FOR EACH ROW EXECUTE FUNCTION fulcrum_notify_group_row();
CREATE TRIGGER load_balancers_notify_update AFTER UPDATE ON load_balancers FOR EACH ROW
    WHEN (OLD.revision IS DISTINCT FROM NEW.revision OR OLD.node_group_id IS DISTINCT FROM NEW.node_group_id)
    EXECUTE FUNCTION fulcrum_notify_group_row();

-- A node's insert, its delete (its long-poll then answers 404), and any
-- change of its revision (cordon, drain) or group wake its group.
CREATE TRIGGER nodes_notify_insert_delete AFTER INSERT OR DELETE ON nodes FOR EACH ROW EXECUTE FUNCTION fulcrum_notify_group_row();
CREATE TRIGGER nodes_notify_update AFTER UPDATE ON nodes FOR EACH ROW
    WHEN (OLD.revision IS DISTINCT FROM NEW.revision OR OLD.node_group_id IS DISTINCT FROM NEW.node_group_id
          OR OLD.admin_state IS DISTINCT FROM NEW.admin_state)
    EXECUTE FUNCTION fulcrum_notify_group_row();

CREATE TRIGGER listeners_notify_insert AFTER INSERT ON listeners FOR EACH ROW EXECUTE FUNCTION fulcrum_notify_lb_child();
CREATE TRIGGER listeners_notify_update AFTER UPDATE ON listeners FOR EACH ROW
    WHEN (OLD.revision IS DISTINCT FROM NEW.revision) EXECUTE FUNCTION fulcrum_notify_lb_child();
CREATE TRIGGER pools_notify_insert AFTER INSERT ON pools FOR EACH ROW EXECUTE FUNCTION fulcrum_notify_lb_child();
CREATE TRIGGER pools_notify_update AFTER UPDATE ON pools FOR EACH ROW
    WHEN (OLD.revision IS DISTINCT FROM NEW.revision) EXECUTE FUNCTION fulcrum_notify_lb_child();
CREATE TRIGGER members_notify_insert AFTER INSERT ON members FOR EACH ROW EXECUTE FUNCTION fulcrum_notify_lb_child();
CREATE TRIGGER members_notify_update AFTER UPDATE ON members FOR EACH ROW
    WHEN (OLD.revision IS DISTINCT FROM NEW.revision) EXECUTE FUNCTION fulcrum_notify_lb_child();
CREATE TRIGGER routing_rules_notify_insert AFTER INSERT ON routing_rules FOR EACH ROW EXECUTE FUNCTION fulcrum_notify_lb_child();
CREATE TRIGGER routing_rules_notify_update AFTER UPDATE ON routing_rules FOR EACH ROW
    WHEN (OLD.revision IS DISTINCT FROM NEW.revision) EXECUTE FUNCTION fulcrum_notify_lb_child();
