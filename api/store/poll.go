package store

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// The queries of a node group's poll view (api/snapshot/view.go): what every
// long-poll of the group needs of its nodes, read once per (group, wake-up)
// and shared by the group's pollers, and the deletes a delta needs, read
// with the group's part of the snapshot.

// PollNode is what a long-poll needs of a node: who it is and its admin
// state and revision (a cordon or a drain gives it a new one).
type PollNode struct {
	ID, Name, NodeGroupID, AdminState string
	Revision                          int64
	// Traceparent is the trace context of the write at Revision when
	// Revision is newer than the group's (as RevisionTraceparentGet), else "".
	Traceparent string
}

// NodeListForPoll lists node group groupID's nodes as long-polls need them,
// by id; groupRevision is the group's revision read in the same transaction
// (GroupRevision): a node newer than it carries its write's trace context.
func NodeListForPoll(ctx context.Context, tx *Tx, groupID string, groupRevision int64) ([]PollNode, error) {
	rows, _ := tx.pg.Query(ctx, `SELECT n.id, n.name, n.node_group_id, n.admin_state, n.revision,
  CASE WHEN n.revision > $2 THEN COALESCE((SELECT r.traceparent FROM revisions r WHERE r.revision <= n.revision ORDER BY r.revision DESC LIMIT 1), '') ELSE '' END
FROM nodes n WHERE n.node_group_id = $1 ORDER BY n.id`, groupID, groupRevision)
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (PollNode, error) {
		var n PollNode
		err := r.Scan(&n.ID, &n.Name, &n.NodeGroupID, &n.AdminState, &n.Revision, &n.Traceparent)
		return n, err
	})
	if err != nil {
		return nil, fmt.Errorf("list nodes for poll: %w", err)
	}
	return out, nil
}

// DeletedLoadBalancer is a load balancer deleted (and not purged yet) at
// Revision.
type DeletedLoadBalancer struct {
	ID       string
	Revision int64
}

// LoadBalancerListDeleted lists, by id, node group groupID's deleted load
// balancers that Purge has not removed yet, with their delete's revision.
func LoadBalancerListDeleted(ctx context.Context, tx *Tx, groupID string) ([]DeletedLoadBalancer, error) {
	rows, _ := tx.pg.Query(ctx, "SELECT id, deleted_revision FROM load_balancers WHERE node_group_id = $1 AND deleted_revision IS NOT NULL ORDER BY id", groupID)
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (DeletedLoadBalancer, error) {
		var d DeletedLoadBalancer
		err := r.Scan(&d.ID, &d.Revision)
		return d, err
	})
	if err != nil {
		return nil, fmt.Errorf("deleted load balancers: %w", err)
	}
	return out, nil
}
