package store

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

// dependents are the live objects that stop a delete even with cascade: other
// objects refer to this one without being its children.
var dependents = map[string][]string{
	"pools": {
		"SELECT id FROM listeners WHERE default_pool_id = $1 AND deleted_revision IS NULL",
		"SELECT r.id FROM routing_rules r JOIN routing_rule_pools p ON p.routing_rule_id = r.id WHERE p.pool_id = $1 AND r.deleted_revision IS NULL",
	},
	"certificates": {
		"SELECT l.id FROM listeners l JOIN listener_certificates c ON c.listener_id = l.id WHERE c.certificate_id = $1 AND l.deleted_revision IS NULL",
	},
	"tenants": {
		"SELECT id FROM load_balancers WHERE tenant_id = $1",
		"SELECT id FROM certificates WHERE tenant_id = $1",
	},
	"node_groups": {
		"SELECT id FROM nodes WHERE node_group_id = $1",
		"SELECT id FROM load_balancers WHERE node_group_id = $1",
	},
}

// children are the live objects a cascade delete takes along and a plain delete
// refuses to orphan.
var children = map[string][]string{
	"load_balancers": {
		"SELECT id FROM listeners WHERE load_balancer_id = $1 AND deleted_revision IS NULL",
		"SELECT id FROM pools WHERE load_balancer_id = $1 AND deleted_revision IS NULL",
	},
	"listeners": {"SELECT id FROM routing_rules WHERE listener_id = $1 AND deleted_revision IS NULL"},
	"pools":     {"SELECT id FROM members WHERE pool_id = $1 AND deleted_revision IS NULL"},
}

// cascades soft-delete an object's descendants with the object's revision.
var cascades = map[string][]string{
	"load_balancers": {"listeners", "pools", "members", "routing_rules"},
	"listeners":      {"routing_rules"},
	"pools":          {"members"},
}

var parentColumn = map[string]string{"load_balancers": "load_balancer_id", "listeners": "listener_id", "pools": "pool_id"}

func collectIDs(ctx context.Context, tx *Tx, queries []string, id string) ([]string, error) {
	var ids []string
	for _, q := range queries {
		rows, _ := tx.pg.Query(ctx, q+" LIMIT 20", id)
		got, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return nil, fmt.Errorf("find references: %w", err)
		}
		ids = append(ids, got...)
	}
	return ids, nil
}

// owned fails with ErrNotFound unless k/id exists and, for tenanted kinds, is
// tenantID's: a write on an object goes through it (or filters on the tenant
// itself), so no write reaches another tenant's object.
func owned(ctx context.Context, tx *Tx, k Kind, tenantID, id string) error {
	q := "SELECT EXISTS (SELECT 1 FROM " + k.Table + " WHERE id = $1"
	args := []any{id}
	if k.Tenanted {
		q += " AND tenant_id = $2"
		args = append(args, tenantID)
	}
	var ok bool
	if err := tx.pg.QueryRow(ctx, q+")", args...).Scan(&ok); err != nil {
		return fmt.Errorf("find %s: %w", k.Name, err)
	}
	if !ok {
		return notFound(k, id)
	}
	return nil
}

// CheckDeletable fails with a ConflictError naming the objects that stop
// k/id from being deleted: dependents always, children unless cascade. For
// tenanted kinds the object must be tenantID's (ErrNotFound otherwise).
func CheckDeletable(ctx context.Context, tx *Tx, k Kind, tenantID, id string, cascade bool) error {
	if err := owned(ctx, tx, k, tenantID, id); err != nil {
		return err
	}
	deps, err := collectIDs(ctx, tx, dependents[k.Table], id)
	if err != nil {
		return err
	}
	if len(deps) > 0 {
		return conflict(ReasonInUse, fmt.Sprintf("%s %q is still used by %s; change or delete those first.", k.Name, id, strings.Join(deps, ", ")),
			FieldError{Field: "id", Message: "is used by " + strings.Join(deps, ", ")})
	}
	if cascade {
		return nil
	}
	kids, err := collectIDs(ctx, tx, children[k.Table], id)
	if err != nil {
		return err
	}
	if len(kids) > 0 {
		return conflict(ReasonHasChildren, fmt.Sprintf("%s %q still has %s; delete them first or pass cascade=true.", k.Name, id, strings.Join(kids, ", ")),
			FieldError{Field: "cascade", Message: "is false but the object has children: " + strings.Join(kids, ", ")})
	}
	return nil
}

// MarkDeleted accepts the delete of a dataplane object (and, with cascade, its
// descendants): they read pending_delete until Purge removes them. The object
// must be tenantID's (ErrNotFound otherwise); one already being deleted stays
// as it is.
func MarkDeleted(ctx context.Context, tx *Tx, k Kind, tenantID, id string, cascade bool) error {
	if !k.Tenanted || !k.SoftDelete {
		return fmt.Errorf("delete %s: not a soft-deleted kind", k.Name)
	}
	if err := owned(ctx, tx, k, tenantID, id); err != nil {
		return err
	}
	rev, err := tx.Revision(ctx)
	if err != nil {
		return err
	}
	const set = " SET deleted_revision = $1, revision = $1, provisioning_status = 'pending_delete', updated_at = now() "
	if _, err := tx.pg.Exec(ctx, "UPDATE "+k.Table+set+"WHERE id = $2 AND tenant_id = $3 AND deleted_revision IS NULL", rev, id, tenantID); err != nil {
		return fmt.Errorf("delete %s: %w", k.Name, err)
	}
	if cascade {
		for _, table := range cascades[k.Table] {
			if _, err := tx.pg.Exec(ctx, "UPDATE "+table+set+"WHERE "+parentColumn[k.Table]+" = $2 AND tenant_id = $3 AND deleted_revision IS NULL", rev, id, tenantID); err != nil {
				return fmt.Errorf("delete %s: cascade to %s: %w", k.Name, table, err)
			}
		}
	}
	return Purge(ctx, tx)
}

// Purge removes deleted objects every node of their group has dropped: those
// whose deleted_revision is at or below the lowest revision the group's nodes
// applied (serving nodes: see the node_states view). A group without serving
// nodes serves nothing, so its deletes finish at once. A write scoped to node
// groups (WriteIn) purges those groups only.
//
// Purging never lowers a revision a snapshot shows (snapshot_delta.go): a
// load balancer whose newest change was a child's delete keeps that
// revision (its own row takes it), and the group's revision counts the
// deletes purged (snapshot_purges, GroupRevision). Otherwise one revision
// would name two contents: an agent holding the load balancer at its older
// revision, with the child, would keep serving the child.
func Purge(ctx context.Context, tx *Tx) error {
	const floor = `WITH floor AS (
  SELECT g.id AS node_group_id, COALESCE(min(n.applied_revision), 9223372036854775807) AS rev
  FROM node_groups g LEFT JOIN node_states n ON n.node_group_id = g.id AND n.serving
  WHERE $1::text[] IS NULL OR g.id = ANY($1::text[])
  GROUP BY g.id) `
	for _, table := range []string{"routing_rules", "members", "listeners", "pools"} {
		q := floor + ", purged AS (DELETE FROM " + table + ` t USING load_balancers lb, floor f
WHERE t.deleted_revision IS NOT NULL AND t.load_balancer_id = lb.id AND lb.node_group_id = f.node_group_id AND t.deleted_revision <= f.rev
RETURNING lb.id AS load_balancer_id, lb.node_group_id, t.deleted_revision)` + keepLBRevision + recordPurge // snapshot_delta.go
		if _, err := tx.pg.Exec(ctx, q, tx.groups); err != nil {
			return fmt.Errorf("purge %s: %w", table, err)
		}
	}
	q := floor + `, purged AS (DELETE FROM load_balancers t USING floor f
WHERE t.deleted_revision IS NOT NULL AND t.node_group_id = f.node_group_id AND t.deleted_revision <= f.rev
RETURNING t.node_group_id, t.deleted_revision)` + recordPurge
	if _, err := tx.pg.Exec(ctx, q, tx.groups); err != nil {
		return fmt.Errorf("purge load_balancers: %w", err)
	}
	return nil
}

// HardDelete removes a control-plane object (tenant, token, node group, node,
// certificate) at once. For tenanted kinds the object must be tenantID's;
// other kinds take "". A missing object is ErrNotFound.
func HardDelete(ctx context.Context, tx *Tx, k Kind, tenantID, id string) error {
	if _, err := tx.Revision(ctx); err != nil {
		return err
	}
	q := "DELETE FROM " + k.Table + " WHERE id = $1"
	args := []any{id}
	if k.Tenanted {
		q += " AND tenant_id = $2"
		args = append(args, tenantID)
	}
	tag, err := tx.pg.Exec(ctx, q, args...)
	if err != nil {
		return fmt.Errorf("delete %s: %w", k.Name, mapError(err))
	}
	if tag.RowsAffected() == 0 {
		return notFound(k, id)
	}
	return nil
}
