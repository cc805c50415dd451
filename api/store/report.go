package store

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// GroupRevisionSince is GroupRevision for a caller that knows an earlier
// GroupRevision of the group, floor: it reads only the rows written after
// floor, not the group's whole tree. It never returns less than floor, and
// it counts the newest delete purged (as GroupRevision does): a delete that
// Purge removed before any reader saw it (in its own transaction, when no
// node of the group serves) leaves no row at its revision, and missing it
// the poll views and the snapshot cache would label the group's part from
// before the delete with a newer node's revision, losing the delete.
func GroupRevisionSince(ctx context.Context, tx *Tx, groupID string, floor int64) (int64, error) {
	const q = `SELECT GREATEST($2::bigint,
  (SELECT revision FROM node_groups WHERE id = $1),
  (SELECT max(revision) FROM load_balancers WHERE node_group_id = $1 AND revision > $2),
  (SELECT max(t.revision) FROM listeners t JOIN load_balancers lb ON lb.id = t.load_balancer_id WHERE t.revision > $2 AND lb.node_group_id = $1),
  (SELECT max(t.revision) FROM pools t JOIN load_balancers lb ON lb.id = t.load_balancer_id WHERE t.revision > $2 AND lb.node_group_id = $1),
  (SELECT max(t.revision) FROM members t JOIN load_balancers lb ON lb.id = t.load_balancer_id WHERE t.revision > $2 AND lb.node_group_id = $1),
  (SELECT max(t.revision) FROM routing_rules t JOIN load_balancers lb ON lb.id = t.load_balancer_id WHERE t.revision > $2 AND lb.node_group_id = $1),
  (SELECT purged_revision FROM snapshot_purges WHERE node_group_id = $1))`
	var rev int64
	if err := tx.pg.QueryRow(ctx, q, pgx.QueryExecModeExec, groupID, floor).Scan(&rev); err != nil {
		return 0, fmt.Errorf("group revision: %w", err)
	}
	return rev, nil
}

// GroupRevision is the newest revision of anything a node of the group serves
// (deleted objects included; once purged, the newest delete purged counts,
// so a purge never lowers it): a node whose snapshot is older must fetch a
// new one.
func GroupRevision(ctx context.Context, tx *Tx, groupID string) (int64, error) {
	const q = `SELECT GREATEST(
  (SELECT revision FROM node_groups WHERE id = $1),
  (SELECT max(revision) FROM load_balancers WHERE node_group_id = $1),
  (SELECT max(t.revision) FROM listeners t JOIN load_balancers lb ON lb.id = t.load_balancer_id WHERE lb.node_group_id = $1),
  (SELECT max(t.revision) FROM pools t JOIN load_balancers lb ON lb.id = t.load_balancer_id WHERE lb.node_group_id = $1),
  (SELECT max(t.revision) FROM members t JOIN load_balancers lb ON lb.id = t.load_balancer_id WHERE lb.node_group_id = $1),
  (SELECT max(t.revision) FROM routing_rules t JOIN load_balancers lb ON lb.id = t.load_balancer_id WHERE lb.node_group_id = $1),
  (SELECT purged_revision FROM snapshot_purges WHERE node_group_id = $1))`
	var rev *int64
	if err := tx.pg.QueryRow(ctx, q, groupID).Scan(&rev); err != nil {
		return 0, fmt.Errorf("group revision: %w", err)
	}
	if rev == nil {
		return 0, nil
	}
	return *rev, nil
}

var childTables = []string{"listeners", "pools", "members", "routing_rules"}

// LBError is one load balancer (or one object of it, when ObjectID is set) a
// node rejects.
type LBError struct {
	LoadBalancerID, ObjectID, Field, Message string
}

// Report is what a node's report changes besides its heartbeat.
type Report struct {
	// LBErrors replace the node's earlier ones; nil leaves them as they are.
	LBErrors []LBError
	// ReplaceLBErrors says LBErrors were sent (an empty list clears).
	ReplaceLBErrors bool
	// MemberStatus is HAProxy's view of members by id.
	MemberStatus map[string]string
}

// ReplaceNodeErrors stores errs as the node's errors, keeping the since of a
// kind already reported and dropping kinds no longer reported.
func ReplaceNodeErrors(ctx context.Context, tx *Tx, n *Node, errs []NodeError, now time.Time) ([]NodeError, error) {
	out := NodeErrorsSince(n.Errors, errs, now) // reportbatch.go
	if _, err := tx.pg.Exec(ctx, "UPDATE nodes SET errors = $2 WHERE id = $1", n.ID, out); err != nil {
		return nil, fmt.Errorf("store node errors: %w", err)
	}
	return out, nil
}

// storeLBErrors replaces the node's rejected load balancers and objects by errs
// (errors about load balancers not of the group are dropped).
// It says whether anything changed.
func storeLBErrors(ctx context.Context, tx *Tx, nodeID, groupID string, errs []LBError) (bool, error) {
	seen := map[[2]string]bool{}
	var lbs, objs, fields, msgs []string
	for _, e := range errs {
		k := [2]string{e.LoadBalancerID, e.ObjectID}
		if seen[k] {
			continue
		}
		seen[k] = true
		lbs, objs, fields, msgs = append(lbs, e.LoadBalancerID), append(objs, e.ObjectID), append(fields, e.Field), append(msgs, e.Message)
	}
	del, err := tx.pg.Exec(ctx, `DELETE FROM node_lb_errors e WHERE e.node_id = $1 AND NOT EXISTS (
  SELECT 1 FROM unnest($2::text[], $3::text[]) v(lb, obj) WHERE v.lb = e.load_balancer_id AND v.obj = e.object_id)`, nodeID, lbs, objs)
	if err != nil {
		return false, fmt.Errorf("store load balancer errors: %w", err)
	}
	if len(lbs) == 0 {
		return del.RowsAffected() > 0, nil
	}
	ins, err := tx.pg.Exec(ctx, `INSERT INTO node_lb_errors (node_id, load_balancer_id, object_id, field, message)
SELECT $1, v.lb, v.obj, v.field, v.msg FROM unnest($2::text[], $3::text[], $4::text[], $5::text[]) v(lb, obj, field, msg)
JOIN load_balancers lb ON lb.id = v.lb AND lb.node_group_id = $6
ON CONFLICT (node_id, load_balancer_id, object_id) DO UPDATE SET field = EXCLUDED.field, message = EXCLUDED.message
WHERE (node_lb_errors.field, node_lb_errors.message) IS DISTINCT FROM (EXCLUDED.field, EXCLUDED.message)`,
		nodeID, lbs, objs, fields, msgs, groupID)
	if err != nil {
		return false, fmt.Errorf("store load balancer errors: %w", err)
	}
	return del.RowsAffected() > 0 || ins.RowsAffected() > 0, nil
}

// objectTable is the table of an object id by its prefix ("" when unknown).
func objectTable(id string) string {
	prefix, _, _ := strings.Cut(id, "_")
	switch prefix {
	case KindListener.Prefix:
		return "listeners"
	case KindPool.Prefix:
		return "pools"
	case KindMember.Prefix:
		return "members"
	case KindRoutingRule.Prefix:
		return "routing_rules"
	case KindCertificate.Prefix:
		return "certificates"
	}
	return ""
}

// errorTargets is what the live nodes of a group reject, resolved to objects.
type errorTargets struct {
	// lb maps load balancers rejected as a whole to the message.
	lb map[string]string
	// objects maps table → object id → message.
	objects map[string]map[string]string
	// any lists every load balancer with an error of either kind.
	any []string
}

func (t *errorTargets) setObject(table, id, msg string) {
	if t.objects[table] == nil {
		t.objects[table] = map[string]string{}
	}
	if _, ok := t.objects[table][id]; !ok {
		t.objects[table][id] = msg
	}
}

// resolveErrors reads the errors the group's serving nodes report and maps each
// to what it is about: an object of the load balancer (a certificate, which
// belongs to the tenant, to the load balancer's listeners using it), or the
// load balancer when the object is unknown or not given.
func resolveErrors(ctx context.Context, tx *Tx, groupID string) (*errorTargets, error) {
	rows, _ := tx.pg.Query(ctx, `SELECT DISTINCT ON (e.load_balancer_id, e.object_id) e.load_balancer_id, e.object_id, e.field, e.message
FROM node_lb_errors e JOIN node_states n ON n.id = e.node_id JOIN load_balancers lb ON lb.id = e.load_balancer_id
WHERE n.node_group_id = $1 AND n.serving AND lb.deleted_revision IS NULL
ORDER BY e.load_balancer_id, e.object_id, e.since, n.name`, groupID)
	type row struct{ lb, obj, field, msg string }
	found, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (row, error) {
		var x row
		err := r.Scan(&x.lb, &x.obj, &x.field, &x.msg)
		return x, err
	})
	if err != nil {
		return nil, fmt.Errorf("read load balancer errors: %w", err)
	}
	t := &errorTargets{lb: map[string]string{}, objects: map[string]map[string]string{}, any: []string{}}
	for _, r := range found {
		if len(t.any) == 0 || t.any[len(t.any)-1] != r.lb {
			t.any = append(t.any, r.lb)
		}
		msg := r.msg
		if r.field != "" {
			msg = r.field + ": " + r.msg
		}
		switch table := objectTable(r.obj); table {
		case "":
		case "certificates":
			rows, _ := tx.pg.Query(ctx, `SELECT l.id FROM listeners l JOIN listener_certificates lc ON lc.listener_id = l.id
WHERE lc.certificate_id = $1 AND l.load_balancer_id = $2 AND l.deleted_revision IS NULL`, r.obj, r.lb)
			ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
			if err != nil {
				return nil, fmt.Errorf("listeners of certificate: %w", err)
			}
			for _, id := range ids {
				t.setObject("listeners", id, "certificate "+r.obj+": "+msg)
			}
			if len(ids) > 0 {
				continue
			}
		default:
			var ok bool
			if err := tx.pg.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM "+table+" WHERE id = $1 AND load_balancer_id = $2 AND deleted_revision IS NULL)",
				r.obj, r.lb).Scan(&ok); err != nil {
				return nil, fmt.Errorf("find rejected object: %w", err)
			}
			if ok {
				t.setObject(table, r.obj, msg)
				continue
			}
		}
		if _, ok := t.lb[r.lb]; !ok {
			t.lb[r.lb] = msg
		}
	}
	// A load balancer rejected as a whole takes its changed children along.
	for lb, msg := range t.lb {
		for _, table := range childTables {
			rows, _ := tx.pg.Query(ctx, "SELECT id FROM "+table+" WHERE load_balancer_id = $1 AND deleted_revision IS NULL AND provisioning_status <> 'active'", lb)
			ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
			if err != nil {
				return nil, fmt.Errorf("children of rejected load balancer: %w", err)
			}
			for _, id := range ids {
				t.setObject(table, id, msg)
			}
		}
	}
	return t, nil
}

// ApplyReport records a node's report and turns every live node's reports
// into statuses. What a node rejects goes to error with its message: an
// object the node named (its load balancer reads degraded, serving its last
// good version), or the load balancer as a whole (with its changed children).
// Errors no live node reports any more are cleared. Every other object whose
// revision all live nodes applied becomes active. Member health sets
// members' operating status, rolled up to pools, listeners and load balancers.
func ApplyReport(ctx context.Context, tx *Tx, node *Node, r Report) error {
	if r.ReplaceLBErrors {
		if _, err := storeLBErrors(ctx, tx, node.ID, node.NodeGroupID, r.LBErrors); err != nil {
			return err
		}
	}
	return DeriveStatuses(ctx, tx, node.NodeGroupID, r.MemberStatus)
}

// DeriveStatuses turns what every live node of the group reported (their
// applied revisions and load balancer errors, read from the database) and
// the member health memberStatus (by member id; may be empty) into the
// statuses of the group's objects, as ApplyReport describes: every object
// of the group (DeriveGroupAll; deriveStatuses with full).
func DeriveStatuses(ctx context.Context, tx *Tx, groupID string, memberStatus map[string]string) error {
	return deriveStatuses(ctx, tx, groupID, memberStatus, true)
}

// unsettled is the predicate of the *_unsettled_idx indexes
// (migrations/013_derive_scope.sql): an object written and not yet applied
// everywhere, rejected, or being deleted. Every other object is active
// without a message, and stays so until a write or an error changes it.
const unsettled = `(provisioning_status <> 'active' OR status_message <> '')`

// deriveReadsDone, when set (by tests), runs in deriveStatuses between its
// reads and its first write, with the group's id.
var deriveReadsDone func(groupID string)

// deriveStatuses is DeriveStatuses. It reads first (errors, the load
// balancers some live node does not serve, and, unless full, the load
// balancers whose statuses may move), taking no row lock, then writes only
// rows whose statuses change, in statements that each read the unsettled
// objects (an index of their own) or the load balancers in scope, never
// every row of the group's tree: the row locks a tenant's write may meet
// are held for that short write part only. Unless full, the operating
// statuses are rolled up for the load balancers in scope only: those with
// an unsettled object, the ones reading degraded, rejected or not served
// now, and those of the members in memberStatus; every other load
// balancer's inputs did not change since the previous derivation (a write
// unsettles what it changes; the next derivation after it sees it).
func deriveStatuses(ctx context.Context, tx *Tx, groupID string, memberStatus map[string]string, full bool) error {
	t, err := resolveErrors(ctx, tx, groupID)
	if err != nil {
		return err
	}
	degraded, allDegraded, floor, err := degradedLoadBalancers(ctx, tx, groupID)
	if err != nil {
		return err
	}
	degraded = append(append([]string{}, degraded...), t.any...) // never NULL in SQL
	memberIDs := make([]string, 0, len(memberStatus))
	memberSts := make([]string, 0, len(memberStatus))
	for id, s := range memberStatus {
		if s == "maint" {
			s = "offline"
		}
		memberIDs, memberSts = append(memberIDs, id), append(memberSts, s)
	}
	var scope []string // nil: every load balancer of the group
	if !full && !allDegraded {
		lbs, err := deriveScope(ctx, tx, groupID, memberIDs)
		if err != nil {
			return err
		}
		scope = append(append([]string{}, lbs...), degraded...) // never nil: nil is every LB
	}

	if deriveReadsDone != nil {
		deriveReadsDone(groupID)
	}

	lbErrIDs := make([]string, 0, len(t.lb))
	lbErrMsgs := make([]string, 0, len(t.lb))
	for id, msg := range t.lb {
		lbErrIDs, lbErrMsgs = append(lbErrIDs, id), append(lbErrMsgs, msg)
	}
	if len(lbErrIDs) > 0 {
		if _, err := tx.pg.Exec(ctx, `UPDATE load_balancers lb SET provisioning_status = 'error', operating_status = 'error', status_message = v.msg
FROM unnest($2::text[], $3::text[]) v(id, msg)
WHERE lb.id = v.id AND lb.node_group_id = $1 AND lb.deleted_revision IS NULL
AND (lb.provisioning_status, lb.operating_status, lb.status_message) IS DISTINCT FROM ('error', 'error', v.msg)`, groupID, lbErrIDs, lbErrMsgs); err != nil {
			return fmt.Errorf("mark error: %w", err)
		}
	}
	if _, err := tx.pg.Exec(ctx, `UPDATE load_balancers SET provisioning_status = 'pending_update', status_message = ''
WHERE node_group_id = $1 AND `+unsettled+` AND deleted_revision IS NULL AND provisioning_status = 'error' AND NOT (id = ANY($2))`, groupID, lbErrIDs); err != nil {
		return fmt.Errorf("clear errors: %w", err)
	}
	for _, table := range childTables {
		ids := make([]string, 0, len(t.objects[table]))
		msgs := make([]string, 0, len(t.objects[table]))
		for id, msg := range t.objects[table] {
			ids, msgs = append(ids, id), append(msgs, msg)
		}
		// Errors no longer reported: the object is not applied yet (its load
		// balancer may still be held back), until activated below.
		if _, err := tx.pg.Exec(ctx, `UPDATE `+table+` c SET provisioning_status = 'pending_update', status_message = ''
FROM load_balancers lb WHERE lb.id = c.load_balancer_id AND lb.node_group_id = $1 AND c.deleted_revision IS NULL
AND (c.provisioning_status <> 'active' OR c.status_message <> '') AND c.provisioning_status = 'error' AND NOT (c.id = ANY($2))`, groupID, ids); err != nil {
			return fmt.Errorf("clear errors of %s: %w", table, err)
		}
		if len(ids) > 0 {
			if _, err := tx.pg.Exec(ctx, `UPDATE `+table+` c SET provisioning_status = 'error', status_message = v.msg
FROM unnest($1::text[], $2::text[]) v(id, msg)
WHERE c.id = v.id AND c.deleted_revision IS NULL AND (c.provisioning_status, c.status_message) IS DISTINCT FROM ('error', v.msg)`, ids, msgs); err != nil {
				return fmt.Errorf("mark error: %w", err)
			}
		}
	}
	// Activated: what every serving node applied (floor, read above with
	// the nodes: activation is as of that read, as it was as of each
	// statement; nothing active goes back to pending but by a write).
	if _, err := tx.pg.Exec(ctx, `UPDATE load_balancers SET provisioning_status = 'active', status_message = ''
WHERE node_group_id = $1 AND `+unsettled+` AND deleted_revision IS NULL AND revision <= $3 AND NOT (id = ANY($2))`, groupID, t.any, floor); err != nil {
		return fmt.Errorf("activate: %w", err)
	}
	for _, table := range childTables {
		if _, err := tx.pg.Exec(ctx, `UPDATE `+table+` c SET provisioning_status = 'active', status_message = ''
FROM load_balancers lb WHERE lb.id = c.load_balancer_id AND lb.node_group_id = $1 AND c.deleted_revision IS NULL
AND c.revision <= $3 AND NOT (lb.id = ANY($2)) AND (c.provisioning_status <> 'active' OR c.status_message <> '')`, groupID, t.any, floor); err != nil {
			return fmt.Errorf("activate %s: %w", table, err)
		}
	}
	if len(memberIDs) > 0 {
		if _, err := tx.pg.Exec(ctx, `UPDATE members m SET operating_status = v.status
FROM unnest($2::text[], $3::text[]) AS v(id, status), load_balancers lb
WHERE m.id = v.id AND lb.id = m.load_balancer_id AND lb.node_group_id = $1 AND m.operating_status <> v.status`, groupID, memberIDs, memberSts); err != nil {
			return fmt.Errorf("member status: %w", err)
		}
	}
	// Load balancers some live node does not serve at their current version
	// read degraded (never online) while they serve elsewhere.
	return deriveOperatingStatus(ctx, tx, groupID, lbErrIDs, degraded, allDegraded, scope)
}

// deriveScope lists the load balancers of the group whose operating status
// may move in an incremental derivation (see deriveStatuses): those with an
// unsettled object or reading degraded, and those of members memberIDs.
// Duplicates are harmless.
func deriveScope(ctx context.Context, tx *Tx, groupID string, memberIDs []string) ([]string, error) {
	rows, _ := tx.pg.Query(ctx, `SELECT id FROM load_balancers WHERE node_group_id = $1 AND `+unsettled+`
UNION SELECT id FROM load_balancers WHERE node_group_id = $1 AND operating_status = 'degraded'
UNION SELECT c.load_balancer_id FROM listeners c JOIN load_balancers lb ON lb.id = c.load_balancer_id WHERE lb.node_group_id = $1 AND (c.provisioning_status <> 'active' OR c.status_message <> '')
UNION SELECT c.load_balancer_id FROM pools c JOIN load_balancers lb ON lb.id = c.load_balancer_id WHERE lb.node_group_id = $1 AND (c.provisioning_status <> 'active' OR c.status_message <> '')
UNION SELECT c.load_balancer_id FROM members c JOIN load_balancers lb ON lb.id = c.load_balancer_id WHERE lb.node_group_id = $1 AND (c.provisioning_status <> 'active' OR c.status_message <> '')
UNION SELECT c.load_balancer_id FROM routing_rules c JOIN load_balancers lb ON lb.id = c.load_balancer_id WHERE lb.node_group_id = $1 AND (c.provisioning_status <> 'active' OR c.status_message <> '')
UNION SELECT load_balancer_id FROM members WHERE id = ANY($2)`, groupID, memberIDs)
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("derivation scope: %w", err)
	}
	return ids, nil
}

// degradedLoadBalancers lists the load balancers of the group that some
// live node does not serve at their current version (those LaggingNodes
// lists), without pairing every load balancer with every node: when a live
// node is not serving or not online, that is every live load balancer of
// the group (all is true, the list nil); otherwise it is those a live node
// rejects, and those whose newest revision (their own rows', their
// children's, their certificates') is above the oldest revision a live
// node applied, floor, and older than NodeBehindGrace: the node at floor
// is behind on them. Only load balancers with a row written after floor
// can be such, and the revision indexes find them. It also reads the
// lowest revision every serving node of the group applied (see the
// node_states view: down, cordoned, draining and failing nodes do not
// count), nil when no node serves.
func degradedLoadBalancers(ctx context.Context, tx *Tx, groupID string) (lbs []string, all bool, serving *int64, err error) {
	var floor *int64
	if err := tx.pg.QueryRow(ctx, `SELECT coalesce(bool_or(NOT serving OR state <> 'online'), false), min(applied_revision),
  min(applied_revision) FILTER (WHERE serving)
FROM node_states WHERE node_group_id = $1 AND last_seen_at IS NOT NULL`, groupID).Scan(&all, &floor, &serving); err != nil {
		return nil, false, nil, fmt.Errorf("lagging nodes: %w", err)
	}
	if all || floor == nil { // every load balancer, or no live node
		return nil, all, serving, nil
	}
	rows, _ := tx.pg.Query(ctx, `WITH c AS (
  SELECT id FROM load_balancers WHERE node_group_id = $1 AND revision > $2
  UNION SELECT t.load_balancer_id FROM listeners t JOIN load_balancers lb ON lb.id = t.load_balancer_id WHERE t.revision > $2 AND lb.node_group_id = $1
  UNION SELECT t.load_balancer_id FROM pools t JOIN load_balancers lb ON lb.id = t.load_balancer_id WHERE t.revision > $2 AND lb.node_group_id = $1
  UNION SELECT t.load_balancer_id FROM members t JOIN load_balancers lb ON lb.id = t.load_balancer_id WHERE t.revision > $2 AND lb.node_group_id = $1
  UNION SELECT t.load_balancer_id FROM routing_rules t JOIN load_balancers lb ON lb.id = t.load_balancer_id WHERE t.revision > $2 AND lb.node_group_id = $1
  UNION SELECT l.load_balancer_id FROM certificates c JOIN listener_certificates lc ON lc.certificate_id = c.id
    JOIN listeners l ON l.id = lc.listener_id JOIN load_balancers lb ON lb.id = l.load_balancer_id
    WHERE c.revision > $2 AND lb.node_group_id = $1 AND l.deleted_revision IS NULL),
r AS (
  SELECT lb.id, GREATEST(lb.revision,
    (SELECT max(revision) FROM listeners WHERE load_balancer_id = lb.id),
    (SELECT max(revision) FROM pools WHERE load_balancer_id = lb.id),
    (SELECT max(revision) FROM members WHERE load_balancer_id = lb.id),
    (SELECT max(revision) FROM routing_rules WHERE load_balancer_id = lb.id),
    (SELECT max(c.revision) FROM certificates c JOIN listener_certificates lc ON lc.certificate_id = c.id
       JOIN listeners l ON l.id = lc.listener_id WHERE l.load_balancer_id = lb.id AND l.deleted_revision IS NULL)) AS rev
  FROM load_balancers lb WHERE lb.id IN (SELECT id FROM c) AND lb.deleted_revision IS NULL)
SELECT id FROM r WHERE rev > $2
  AND COALESCE((SELECT created_at FROM revisions WHERE revision = r.rev), '-infinity') < now() - make_interval(secs => $3)
UNION SELECT e.load_balancer_id FROM node_lb_errors e JOIN nodes n ON n.id = e.node_id
  JOIN load_balancers lb ON lb.id = e.load_balancer_id AND lb.node_group_id = $1 AND lb.deleted_revision IS NULL
WHERE n.node_group_id = $1 AND n.last_seen_at IS NOT NULL`, pgx.QueryExecModeExec, groupID, *floor, NodeBehindGrace.Seconds())
	lbs, err = pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, false, nil, fmt.Errorf("lagging nodes: %w", err)
	}
	return lbs, false, serving, nil
}

// deriveOperatingStatus rolls member health up to pools, listeners and load
// balancers. A load balancer reads online when every listener is, offline
// when none serves (or it is disabled or has no listener), and degraded in
// between: one degraded listener (a pool with a member down) never makes it
// offline. Load balancers in degraded (an object rejected, a node not
// serving it), or every one when allDegraded, never read online; those in
// rejected read error. Only the load balancers in scope are rolled up, or
// every one of the group when scope is nil.
func deriveOperatingStatus(ctx context.Context, tx *Tx, groupID string, rejected, degraded []string, allDegraded bool, scope []string) error {
	in := func(col string) string { // the scope's condition on column col
		if scope == nil {
			return " AND $3::text[] IS NULL" // every load balancer
		}
		return " AND " + col + " = ANY($3)"
	}
	pools := `WITH agg AS (
  SELECT p.id,
    count(m.id) FILTER (WHERE (m.spec->>'enabled')::boolean) AS total,
    count(m.id) FILTER (WHERE (m.spec->>'enabled')::boolean AND m.operating_status IN ('online', 'no_monitor', 'draining')) AS up,
    bool_and(m.operating_status = 'no_monitor') FILTER (WHERE (m.spec->>'enabled')::boolean) AS unmonitored
  FROM pools p JOIN load_balancers lb ON lb.id = p.load_balancer_id
  LEFT JOIN members m ON m.pool_id = p.id AND m.deleted_revision IS NULL
  WHERE lb.node_group_id = $1 AND p.deleted_revision IS NULL AND NOT (lb.id = ANY($2))` + in("lb.id") + `
  GROUP BY p.id),
st AS (SELECT id, CASE
    WHEN total = 0 THEN 'offline'
    WHEN unmonitored THEN 'no_monitor'
    WHEN up = total THEN 'online'
    WHEN up > 0 THEN 'degraded'
    ELSE 'offline' END AS status FROM agg)
UPDATE pools p SET operating_status = st.status
FROM st WHERE st.id = p.id AND p.provisioning_status <> 'pending_create' AND p.operating_status <> st.status`
	listeners := `WITH st AS (
  SELECT l.id, CASE
    WHEN l.default_pool_id IS NULL THEN 'online'
    WHEN p.operating_status IN ('online', 'no_monitor') THEN 'online'
    ELSE p.operating_status END AS status
  FROM listeners l JOIN load_balancers lb ON lb.id = l.load_balancer_id
  JOIN pools p ON p.id = COALESCE(l.default_pool_id, (SELECT id FROM pools WHERE load_balancer_id = lb.id LIMIT 1))
  WHERE lb.node_group_id = $1 AND l.deleted_revision IS NULL AND NOT (lb.id = ANY($2)) AND l.provisioning_status <> 'pending_create'` + in("lb.id") + `)
UPDATE listeners l SET operating_status = st.status FROM st WHERE st.id = l.id AND l.operating_status <> st.status`
	lbs := `WITH agg AS (
  SELECT lb.id, count(l.id) AS total,
    count(l.id) FILTER (WHERE l.operating_status = 'online') AS up,
    count(l.id) FILTER (WHERE l.operating_status IN ('offline', 'error')) AS down
  FROM load_balancers lb LEFT JOIN listeners l ON l.load_balancer_id = lb.id AND l.deleted_revision IS NULL
    AND l.provisioning_status <> 'pending_create'
  WHERE lb.node_group_id = $1 AND lb.deleted_revision IS NULL AND NOT (lb.id = ANY($2))` + in("lb.id") + ` GROUP BY lb.id),
st AS (SELECT agg.id, CASE
    WHEN NOT lb.enabled OR agg.total = 0 OR agg.down = agg.total THEN 'offline'
    WHEN agg.up = agg.total AND NOT $5::boolean AND NOT (agg.id = ANY($4)) THEN 'online'
    ELSE 'degraded' END AS status
  FROM agg JOIN load_balancers lb ON lb.id = agg.id WHERE lb.provisioning_status <> 'pending_create')
UPDATE load_balancers lb SET operating_status = st.status FROM st WHERE st.id = lb.id AND lb.operating_status <> st.status`
	args := []any{groupID, rejected, scope}
	for _, q := range []string{pools, listeners} {
		if _, err := tx.pg.Exec(ctx, q, args...); err != nil {
			return fmt.Errorf("derive operating status: %w", err)
		}
	}
	if _, err := tx.pg.Exec(ctx, lbs, append(args, degraded, allDegraded)...); err != nil {
		return fmt.Errorf("derive operating status: %w", err)
	}
	return nil
}
