package store

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// The queries of a snapshot: what a node group serves (or one load balancer
// of it, for a dry run), read in one transaction. api/snapshot assembles
// them; ReadSnapshot opens the transaction that makes them consistent.

// NodeGroupGet reads a node group by id; ErrNotFound when there is none.
func NodeGroupGet(ctx context.Context, tx *Tx, id string) (*NodeGroup, error) {
	rows, _ := tx.pg.Query(ctx, "SELECT * FROM node_groups WHERE id = $1", id)
	g, err := pgx.CollectExactlyOneRow(rows, pgx.RowToAddrOfStructByNameLax[NodeGroup])
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return nil, fmt.Errorf("node group %s: %w", id, ErrNotFound)
	case err != nil:
		return nil, fmt.Errorf("read node group %s: %w", id, err)
	}
	return g, nil
}

// SnapshotScope selects the load balancers a snapshot's queries read: every
// live one of a node group, or one load balancer.
type SnapshotScope struct {
	col, cmp string // load_balancers column and its comparison with $1; never user input
	arg      any
}

// GroupScope is every live load balancer of node group groupID.
func GroupScope(groupID string) SnapshotScope {
	return SnapshotScope{col: "node_group_id", cmp: " = $1", arg: groupID}
}

// LoadBalancerScope is the load balancer lbID alone (if live).
func LoadBalancerScope(lbID string) SnapshotScope {
	return SnapshotScope{col: "id", cmp: " = $1", arg: lbID}
}

// LoadBalancersScope is the load balancers lbIDs (those live).
func LoadBalancersScope(lbIDs []string) SnapshotScope {
	return SnapshotScope{col: "id", cmp: " = ANY($1)", arg: lbIDs}
}

// children selects the live rows of child table table of the scope's live
// load balancers, in id order.
func (sc SnapshotScope) children(table string) string {
	return "SELECT t.* FROM " + table + " t JOIN load_balancers lb ON lb.id = t.load_balancer_id WHERE lb." + sc.col + sc.cmp +
		" AND lb.deleted_revision IS NULL AND t.deleted_revision IS NULL ORDER BY t.id"
}

// snapshotRows runs a query returning rows of one model.
func snapshotRows[T any](ctx context.Context, tx *Tx, what, q string, args ...any) ([]*T, error) {
	rows, _ := tx.pg.Query(ctx, q, args...)
	out, err := pgx.CollectRows(rows, pgx.RowToAddrOfStructByNameLax[T])
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", what, err)
	}
	return out, nil
}

// LoadBalancerListByScope lists the scope's live load balancers by id.
func LoadBalancerListByScope(ctx context.Context, tx *Tx, sc SnapshotScope) ([]*LoadBalancer, error) {
	return snapshotRows[LoadBalancer](ctx, tx, "load balancers",
		"SELECT t.* FROM load_balancers t WHERE t."+sc.col+sc.cmp+" AND t.deleted_revision IS NULL ORDER BY t.id", sc.arg)
}

// ListenerListByScope lists the live listeners of the scope's live load
// balancers by id.
func ListenerListByScope(ctx context.Context, tx *Tx, sc SnapshotScope) ([]*Listener, error) {
	return snapshotRows[Listener](ctx, tx, "listeners", sc.children("listeners"), sc.arg)
}

// PoolListByScope lists the live pools of the scope's live load balancers by id.
func PoolListByScope(ctx context.Context, tx *Tx, sc SnapshotScope) ([]*Pool, error) {
	return snapshotRows[Pool](ctx, tx, "pools", sc.children("pools"), sc.arg)
}

// MemberListByScope lists the live members of the scope's live load
// balancers by id.
func MemberListByScope(ctx context.Context, tx *Tx, sc SnapshotScope) ([]*Member, error) {
	return snapshotRows[Member](ctx, tx, "members", sc.children("members"), sc.arg)
}

// RoutingRuleListByScope lists the live routing rules of the scope's live
// load balancers by id.
func RoutingRuleListByScope(ctx context.Context, tx *Tx, sc SnapshotScope) ([]*RoutingRule, error) {
	return snapshotRows[RoutingRule](ctx, tx, "routing rules", sc.children("routing_rules"), sc.arg)
}

// CertificateListByScope lists, by id, the certificates the live listeners
// of the scope's live load balancers use (private keys still sealed).
func CertificateListByScope(ctx context.Context, tx *Tx, sc SnapshotScope) ([]*Certificate, error) {
	return snapshotRows[Certificate](ctx, tx, "certificates", sc.certificates(), sc.arg)
}

// certificates selects the certificates the live listeners of the scope's
// live load balancers use, by id.
func (sc SnapshotScope) certificates() string {
	return `SELECT c.* FROM certificates c WHERE c.id IN (
  SELECT lc.certificate_id FROM listener_certificates lc JOIN listeners l ON l.id = lc.listener_id JOIN load_balancers lb ON lb.id = l.load_balancer_id
  WHERE lb.` + sc.col + sc.cmp + ` AND lb.deleted_revision IS NULL AND l.deleted_revision IS NULL) ORDER BY c.id`
}

// RevisionTraceparentGet is the W3C trace context of the newest write at or
// before rev; "" when there is none or it was not traced.
func RevisionTraceparentGet(ctx context.Context, tx *Tx, rev int64) (string, error) {
	var tp string
	err := tx.pg.QueryRow(ctx, "SELECT traceparent FROM revisions WHERE revision <= $1 ORDER BY revision DESC LIMIT 1", rev).Scan(&tp)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return "", nil
	case err != nil:
		return "", fmt.Errorf("revision traceparent: %w", err)
	}
	return tp, nil
}

// groupWriteRevisions selects the revisions of the writes that changed
// something node group $1 serves and that are still visible: each object's
// last write and its delete.
var groupWriteRevisions = func() string {
	q := "SELECT revision FROM node_groups WHERE id = $1" +
		" UNION SELECT revision FROM load_balancers WHERE node_group_id = $1" +
		" UNION SELECT deleted_revision FROM load_balancers WHERE node_group_id = $1"
	for _, t := range []string{"listeners", "pools", "members", "routing_rules"} {
		for _, col := range []string{"revision", "deleted_revision"} {
			q += " UNION SELECT t." + col + " FROM " + t + " t JOIN load_balancers lb ON lb.id = t.load_balancer_id WHERE lb.node_group_id = $1"
		}
	}
	return q
}()

// RevisionTraceparentListByGroup returns the W3C trace contexts of the
// writes to the group in (after, rev], oldest first, the newest limit of
// them. An object written twice in that range shows only its last write.
func RevisionTraceparentListByGroup(ctx context.Context, tx *Tx, groupID string, after, rev int64, limit int) ([]string, error) {
	rows, _ := tx.pg.Query(ctx, `SELECT traceparent FROM (
  SELECT revision, traceparent FROM revisions
  WHERE revision > $2 AND revision <= $3 AND traceparent <> '' AND revision IN (`+groupWriteRevisions+`)
  ORDER BY revision DESC LIMIT $4) w ORDER BY revision`, groupID, after, rev, limit)
	tps, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("write traceparents: %w", err)
	}
	return tps, nil
}

// RevisionTraceparent is the W3C trace context of the write at Revision.
type RevisionTraceparent struct {
	Revision    int64
	Traceparent string
}

// RevisionTraceparentListByGroupUpTo returns the trace contexts of the newest
// limit writes to the group at or before rev, oldest first (as
// RevisionTraceparentListByGroup, with their revisions): the newest limit of
// those after any revision are a suffix of them.
func RevisionTraceparentListByGroupUpTo(ctx context.Context, tx *Tx, groupID string, rev int64, limit int) ([]RevisionTraceparent, error) {
	rows, _ := tx.pg.Query(ctx, `SELECT revision, traceparent FROM (
  SELECT revision, traceparent FROM revisions
  WHERE revision <= $2 AND traceparent <> '' AND revision IN (`+groupWriteRevisions+`)
  ORDER BY revision DESC LIMIT $3) w ORDER BY revision`, groupID, rev, limit)
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (RevisionTraceparent, error) {
		var t RevisionTraceparent
		err := r.Scan(&t.Revision, &t.Traceparent)
		return t, err
	})
	if err != nil {
		return nil, fmt.Errorf("write traceparents: %w", err)
	}
	return out, nil
}
