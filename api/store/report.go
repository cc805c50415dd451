package store

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// Select runs a query returning rows of one model.
func Select[T any](ctx context.Context, tx *Tx, q string, args ...any) ([]*T, error) {
	rows, _ := tx.Query(ctx, q, args...)
	out, err := pgx.CollectRows(rows, pgx.RowToAddrOfStructByNameLax[T])
	if err != nil {
		return nil, fmt.Errorf("select: %w", err)
	}
	return out, nil
}

// GroupRevision is the newest revision of anything a node of the group serves
// (deleted objects included, until purged): a node whose snapshot is older
// must fetch a new one.
func GroupRevision(ctx context.Context, tx *Tx, groupID string) (int64, error) {
	const q = `SELECT GREATEST(
  (SELECT revision FROM node_groups WHERE id = $1),
  (SELECT max(revision) FROM load_balancers WHERE node_group_id = $1),
  (SELECT max(t.revision) FROM listeners t JOIN load_balancers lb ON lb.id = t.load_balancer_id WHERE lb.node_group_id = $1),
  (SELECT max(t.revision) FROM pools t JOIN load_balancers lb ON lb.id = t.load_balancer_id WHERE lb.node_group_id = $1),
  (SELECT max(t.revision) FROM members t JOIN load_balancers lb ON lb.id = t.load_balancer_id WHERE lb.node_group_id = $1),
  (SELECT max(t.revision) FROM routing_rules t JOIN load_balancers lb ON lb.id = t.load_balancer_id WHERE lb.node_group_id = $1))`
	var rev *int64
	if err := tx.QueryRow(ctx, q, groupID).Scan(&rev); err != nil {
		return 0, fmt.Errorf("group revision: %w", err)
	}
	if rev == nil {
		return 0, nil
	}
	return *rev, nil
}

// liveFloor is the lowest revision every live node of the group applied, or
// nil when the group has no live node.
const liveFloor = `(SELECT min(applied_revision) FROM nodes WHERE node_group_id = $1 AND last_seen_at > now() - interval '` + LiveNodeWindow + `')`

var childTables = []string{"listeners", "pools", "members", "routing_rules"}

// ApplyReport turns a node's report into statuses: load balancers HAProxy
// rejected (and their changed children) go to error with its message; every
// object whose revision all live nodes applied becomes active; member health
// sets members' operating status, from which pools', listeners' and load
// balancers' operating status are derived.
func ApplyReport(ctx context.Context, tx *Tx, groupID string, lbErrors map[string]string, memberStatus map[string]string) error {
	errored := make([]string, 0, len(lbErrors))
	for id, msg := range lbErrors {
		errored = append(errored, id)
		if _, err := tx.Exec(ctx, `UPDATE load_balancers SET provisioning_status = 'error', operating_status = 'error', status_message = $3
WHERE id = $1 AND node_group_id = $2 AND deleted_revision IS NULL`, id, groupID, msg); err != nil {
			return fmt.Errorf("mark error: %w", err)
		}
		for _, t := range childTables {
			if _, err := tx.Exec(ctx, `UPDATE `+t+` SET provisioning_status = 'error', status_message = $2
WHERE load_balancer_id = $1 AND deleted_revision IS NULL AND provisioning_status <> 'active'`, id, msg); err != nil {
				return fmt.Errorf("mark error: %w", err)
			}
		}
	}
	if _, err := tx.Exec(ctx, `UPDATE load_balancers SET provisioning_status = 'active', status_message = ''
WHERE node_group_id = $1 AND deleted_revision IS NULL AND revision <= `+liveFloor+` AND NOT (id = ANY($2))
AND (provisioning_status <> 'active' OR status_message <> '')`, groupID, errored); err != nil {
		return fmt.Errorf("activate: %w", err)
	}
	for _, t := range childTables {
		if _, err := tx.Exec(ctx, `UPDATE `+t+` c SET provisioning_status = 'active', status_message = ''
FROM load_balancers lb WHERE lb.id = c.load_balancer_id AND lb.node_group_id = $1 AND c.deleted_revision IS NULL
AND c.revision <= `+liveFloor+` AND NOT (lb.id = ANY($2)) AND (c.provisioning_status <> 'active' OR c.status_message <> '')`, groupID, errored); err != nil {
			return fmt.Errorf("activate %s: %w", t, err)
		}
	}
	if len(memberStatus) > 0 {
		ids := make([]string, 0, len(memberStatus))
		sts := make([]string, 0, len(memberStatus))
		for id, s := range memberStatus {
			if s == "maint" {
				s = "offline"
			}
			ids = append(ids, id)
			sts = append(sts, s)
		}
		if _, err := tx.Exec(ctx, `UPDATE members m SET operating_status = v.status
FROM unnest($2::text[], $3::text[]) AS v(id, status), load_balancers lb
WHERE m.id = v.id AND lb.id = m.load_balancer_id AND lb.node_group_id = $1 AND m.operating_status <> v.status`, groupID, ids, sts); err != nil {
			return fmt.Errorf("member status: %w", err)
		}
	}
	return deriveOperatingStatus(ctx, tx, groupID)
}

// deriveOperatingStatus rolls member health up to pools, listeners and load balancers.
func deriveOperatingStatus(ctx context.Context, tx *Tx, groupID string) error {
	const pools = `WITH agg AS (
  SELECT p.id,
    count(m.id) FILTER (WHERE (m.spec->>'enabled')::boolean) AS total,
    count(m.id) FILTER (WHERE (m.spec->>'enabled')::boolean AND m.operating_status IN ('online', 'no_monitor', 'draining')) AS up,
    bool_and(m.operating_status = 'no_monitor') FILTER (WHERE (m.spec->>'enabled')::boolean) AS unmonitored
  FROM pools p JOIN load_balancers lb ON lb.id = p.load_balancer_id
  LEFT JOIN members m ON m.pool_id = p.id AND m.deleted_revision IS NULL
  WHERE lb.node_group_id = $1 AND p.deleted_revision IS NULL AND lb.provisioning_status <> 'error'
  GROUP BY p.id)
UPDATE pools p SET operating_status = CASE
    WHEN agg.total = 0 THEN 'offline'
    WHEN agg.unmonitored THEN 'no_monitor'
    WHEN agg.up = agg.total THEN 'online'
    WHEN agg.up > 0 THEN 'degraded'
    ELSE 'offline' END
FROM agg WHERE agg.id = p.id AND p.provisioning_status <> 'pending_create'`
	const listeners = `UPDATE listeners l SET operating_status = CASE
    WHEN l.default_pool_id IS NULL THEN 'online'
    WHEN p.operating_status IN ('online', 'no_monitor') THEN 'online'
    ELSE p.operating_status END
FROM load_balancers lb, pools p
WHERE lb.id = l.load_balancer_id AND lb.node_group_id = $1 AND l.deleted_revision IS NULL AND lb.provisioning_status <> 'error'
AND l.provisioning_status <> 'pending_create' AND p.id = COALESCE(l.default_pool_id, (SELECT id FROM pools WHERE load_balancer_id = lb.id LIMIT 1))`
	const lbs = `WITH agg AS (
  SELECT lb.id, count(l.id) AS total, count(l.id) FILTER (WHERE l.operating_status = 'online') AS up
  FROM load_balancers lb LEFT JOIN listeners l ON l.load_balancer_id = lb.id AND l.deleted_revision IS NULL
  WHERE lb.node_group_id = $1 AND lb.deleted_revision IS NULL AND lb.provisioning_status <> 'error' GROUP BY lb.id)
UPDATE load_balancers lb SET operating_status = CASE
    WHEN NOT lb.enabled OR agg.total = 0 THEN 'offline'
    WHEN agg.up = agg.total THEN 'online'
    WHEN agg.up > 0 THEN 'degraded'
    ELSE 'offline' END
FROM agg WHERE agg.id = lb.id AND lb.provisioning_status <> 'pending_create'`
	for _, q := range []string{pools, listeners, lbs} {
		if _, err := tx.Exec(ctx, q, groupID); err != nil {
			return fmt.Errorf("derive operating status: %w", err)
		}
	}
	return nil
}
