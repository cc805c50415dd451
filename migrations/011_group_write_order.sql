-- Writes ordered per node group (issue 10): a write no longer takes one
-- global lock; it locks the node groups whose snapshots it changes, so writes
-- to different groups run in parallel while, within a group, revisions still
-- commit in the order they were taken (a node that has seen revision N of its
-- group never later misses a write of its group below N).
--
-- Locks (all transaction-scoped advisory locks, taken before the write reads
-- anything it validates against):
--   * the write lock 7240117002: group writes take it shared, writes whose
--     groups cannot be known up front (node groups, nodes, certificates,
--     tenants, tokens) and the purge janitor take it exclusive;
--   * one lock per group, key (1718970231, hashtext(group id)), taken in
--     hash order so two multi-group writes never deadlock; a hash collision
--     only serializes two groups.
-- fulcrum_lock_groups takes them and records the groups in the setting
-- fulcrum.write_groups; the notify triggers then refuse any change of a row
-- of another group (SQLSTATE FL001), so a write cannot forget a group it
-- touches. '*' (the exclusive lock) and an unset setting (janitors, tests
-- writing rows directly) are not checked.

CREATE FUNCTION fulcrum_lock_groups(groups text[]) RETURNS text[] LANGUAGE plpgsql AS $$
DECLARE
    h integer;
    out text[];
BEGIN
    PERFORM pg_advisory_xact_lock_shared(7240117002);
    SELECT coalesce(array_agg(DISTINCT g ORDER BY g), '{}') INTO out FROM unnest(groups) g WHERE g IS NOT NULL;
    FOR h IN SELECT DISTINCT hashtext(g) FROM unnest(out) g ORDER BY 1 LOOP
        PERFORM pg_advisory_xact_lock(1718970231, h);
    END LOOP;
    PERFORM set_config('fulcrum.write_groups', ',' || array_to_string(out, ',') || ',', true);
    RETURN out;
END $$;

CREATE OR REPLACE FUNCTION fulcrum_notify_group(rev bigint, group_id text) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    scope text := current_setting('fulcrum.write_groups', true);
BEGIN
    IF group_id IS NOT NULL AND scope IS NOT NULL AND scope <> '' AND scope <> '*'
       AND position(',' || group_id || ',' IN scope) = 0 THEN
        RAISE EXCEPTION 'this write changed node group % but locked only %', group_id, scope USING ERRCODE = 'FL001';
    END IF;
    PERFORM pg_notify('fulcrum_revision', rev::text || ' ' || group_id);
END $$;

-- Quotas stay exact across groups: a quota-counted create locks its tenant's
-- row, then counts (a statement of its own, so it sees every create that held
-- the lock before). One round trip: tenant_found is false for an unknown tenant;
-- lim and used are NULL when quota_key is (kinds without a quota). The quota
-- key is the table's name (store.Quotas' JSON keys).
CREATE FUNCTION fulcrum_quota_use(tenant text, tbl text, quota_key text, soft_delete boolean,
                                  OUT tenant_found boolean, OUT lim integer, OUT used bigint) LANGUAGE plpgsql AS $$
DECLARE
    q jsonb;
BEGIN
    SELECT t.quotas INTO q FROM tenants t WHERE t.id = tenant FOR NO KEY UPDATE;
    tenant_found := FOUND;
    IF NOT tenant_found OR quota_key IS NULL THEN
        RETURN;
    END IF;
    lim := coalesce((q ->> quota_key)::integer, 0);
    -- Static statements (planned once per session), not EXECUTE.
    CASE tbl
    WHEN 'load_balancers' THEN SELECT count(*) INTO used FROM load_balancers WHERE tenant_id = tenant AND deleted_revision IS NULL;
    WHEN 'listeners' THEN SELECT count(*) INTO used FROM listeners WHERE tenant_id = tenant AND deleted_revision IS NULL;
    WHEN 'pools' THEN SELECT count(*) INTO used FROM pools WHERE tenant_id = tenant AND deleted_revision IS NULL;
    WHEN 'members' THEN SELECT count(*) INTO used FROM members WHERE tenant_id = tenant AND deleted_revision IS NULL;
    WHEN 'routing_rules' THEN SELECT count(*) INTO used FROM routing_rules WHERE tenant_id = tenant AND deleted_revision IS NULL;
    WHEN 'certificates' THEN SELECT count(*) INTO used FROM certificates WHERE tenant_id = tenant;
    ELSE
        EXECUTE format('SELECT count(*) FROM %I WHERE tenant_id = $1', tbl)
            || CASE WHEN soft_delete THEN ' AND deleted_revision IS NULL' ELSE '' END INTO used USING tenant;
    END CASE;
END $$;
