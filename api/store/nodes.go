package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fulcrumlb/fulcrum/openapi"
)

// Node states (the Node schema's status enum). NodeCordoned and NodeDraining
// are also the values of Node.AdminState.
const (
	NodeRegistered = "registered"
	NodeOnline     = "online"
	NodeDown       = "down"
	NodeDraining   = "draining"
	NodeCordoned   = "cordoned"
	NodeErrored    = "error"
)

// Node group lifecycle defaults (milliseconds).
const (
	DefaultHeartbeatIntervalMs    = openapi.NodeGroupHeartbeatIntervalMsDefault
	DefaultDownTimeoutMs          = openapi.NodeGroupDownTimeoutMsDefault
	DefaultDownNodeCleanupAfterMs = openapi.NodeGroupDownNodeCleanupAfterMsDefault
	DefaultApplyGraceMs           = openapi.NodeGroupApplyGraceMsDefault
)

// NodeStateOf derives a node's state as the node_states view does: never
// reported → registered (or the operator's state); silent past the group's
// down-timeout → down; cordoned or draining; error while it reports node
// errors or its last applies failed; online otherwise.
func NodeStateOf(n *Node, g *NodeGroup, now time.Time) string {
	switch {
	case n.LastSeenAt == nil:
		if n.AdminState != "" {
			return n.AdminState
		}
		return NodeRegistered
	case now.Sub(*n.LastSeenAt) > time.Duration(g.DownTimeoutMs)*time.Millisecond:
		return NodeDown
	case n.AdminState != "":
		return n.AdminState
	case len(n.Errors) > 0 || n.ApplyFailingSince != nil:
		return NodeErrored
	}
	return NodeOnline
}

// NodeFailingPastGrace says whether the node has failed every apply (nacks,
// or node errors) for longer than the group's apply grace, so it no longer
// counts for its group.
func NodeFailingPastGrace(n *Node, g *NodeGroup, now time.Time) bool {
	grace := time.Duration(g.ApplyGraceMs) * time.Millisecond
	if n.ApplyFailingSince != nil && now.Sub(*n.ApplyFailingSince) > grace {
		return true
	}
	for _, e := range n.Errors {
		if now.Sub(e.Since) > grace {
			return true
		}
	}
	return false
}

// SetNodeAdminState cordons, drains or returns a node to service. The node
// takes a new revision so its agent's next snapshot (which carries the
// state) is newer than the one it has.
func SetNodeAdminState(ctx context.Context, tx *Tx, nodeID, state string) (*Node, error) {
	rev, err := tx.Revision(ctx)
	if err != nil {
		return nil, err
	}
	return Update[Node](ctx, tx, KindNode, "", nodeID, []Column{{Name: "admin_state", Value: state}, {Name: "revision", Value: rev}})
}

// Rederive recomputes the statuses of a group's objects after its set of
// serving nodes changed without a report (a cordon, drain, delete), and
// finishes deletes no serving node holds back any more.
func Rederive(ctx context.Context, tx *Tx, groupID string) error {
	if err := ApplyReport(ctx, tx, &Node{NodeGroupID: groupID}, Report{}); err != nil {
		return err
	}
	return Purge(ctx, tx)
}

// TombstoneNode remembers a deleted node's name so a group token cannot
// register it again until an admin re-creates it.
func TombstoneNode(ctx context.Context, tx *Tx, n *Node) error {
	if _, err := tx.pg.Exec(ctx, `INSERT INTO deleted_nodes (name, node_group_id, node_id) VALUES ($1, $2, $3)
ON CONFLICT (name) DO UPDATE SET node_group_id = EXCLUDED.node_group_id, node_id = EXCLUDED.node_id, deleted_at = now()`,
		n.Name, n.NodeGroupID, n.ID); err != nil {
		return fmt.Errorf("tombstone node: %w", err)
	}
	return nil
}

// NodeTombstone returns when a node of that name was deleted (nil if never).
func NodeTombstone(ctx context.Context, tx *Tx, name string) (*time.Time, error) {
	var at time.Time
	err := tx.pg.QueryRow(ctx, "SELECT deleted_at FROM deleted_nodes WHERE name = $1", name).Scan(&at)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("node tombstone: %w", err)
	}
	return &at, nil
}

// ClearNodeTombstone lets a name register again (an admin created it).
func ClearNodeTombstone(ctx context.Context, tx *Tx, name string) error {
	if _, err := tx.pg.Exec(ctx, "DELETE FROM deleted_nodes WHERE name = $1", name); err != nil {
		return fmt.Errorf("clear node tombstone: %w", err)
	}
	return nil
}

// nodeJanitorLockID is the advisory lock one API replica holds while it
// removes down nodes.
const nodeJanitorLockID = 0x66756c6e6f6465 // "fulnode"

// CleanupDownNodes removes the nodes that have been down longer than their
// group's down_node_cleanup_after_ms (their tokens bound to them go too) and
// returns their names. Only one replica at a time does it (an advisory lock);
// the others return nothing. A removed node that comes back registers again.
// Removing a node with a peer address changes its group's peers
// (PeersChanged); removing any node of a group using VRRP changes its VRRP
// nodes (GroupNodesChanged): the group takes the write's revision either way.
func (s *Store) CleanupDownNodes(ctx context.Context) ([]string, error) {
	return cleanupDownNodes(ctx, s.pool)
}

func cleanupDownNodes(ctx context.Context, pool *pgxpool.Pool) ([]string, error) {
	var names []string
	err := pgx.BeginFunc(ctx, pool, func(t pgx.Tx) error {
		var got bool
		if err := t.QueryRow(ctx, "SELECT pg_try_advisory_xact_lock($1)", int64(nodeJanitorLockID)).Scan(&got); err != nil || !got {
			return err
		}
		if _, err := t.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", int64(writeLockID)); err != nil {
			return fmt.Errorf("take write lock: %w", err)
		}
		rows, _ := t.Query(ctx, `DELETE FROM nodes n USING node_groups g WHERE g.id = n.node_group_id AND n.last_seen_at IS NOT NULL
AND n.last_seen_at < now() - g.down_node_cleanup_after_ms * interval '1 millisecond' RETURNING n.name, n.node_group_id, n.peer_address, g.vrrp_interface`)
		var name, group, peer, vrrp string
		var peerGroups []string // the groups of removed peers or VRRP nodes: their lists changed
		_, err := pgx.ForEachRow(rows, []any{&name, &group, &peer, &vrrp}, func() error {
			names = append(names, name)
			if (peer != "" || vrrp != "") && !slices.Contains(peerGroups, group) {
				peerGroups = append(peerGroups, group)
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("clean up down nodes: %w", err)
		}
		if len(names) == 0 {
			return nil
		}
		tx := &Tx{pg: t}
		for _, g := range peerGroups {
			if err := PeersChanged(ctx, tx, g); err != nil {
				return err
			}
		}
		return Purge(ctx, tx)
	})
	return names, err
}

// RecordNodeHeartbeat writes what a node reports about itself (last seen,
// applied revision, messages, VIPs, failures). It does not bump the node's
// version: that (the ETag) tracks what admins set (description, labels,
// cordon and drain), so an If-Match read a moment ago still holds after the
// node's next heartbeat.
func RecordNodeHeartbeat(ctx context.Context, tx *Tx, id string, cols []Column) (*Node, error) {
	sets := make([]string, 0, len(cols))
	args := make([]any, 0, len(cols)+1)
	for _, c := range cols {
		args = append(args, c.Value)
		sets = append(sets, fmt.Sprintf("%s = $%d", c.Name, len(args)))
	}
	args = append(args, id)
	q := fmt.Sprintf("UPDATE nodes SET %s WHERE id = $%d RETURNING *", strings.Join(sets, ", "), len(args))
	rows, _ := tx.pg.Query(ctx, q, args...)
	n, err := pgx.CollectExactlyOneRow(rows, pgx.RowToAddrOfStructByNameLax[Node])
	if err != nil {
		return nil, fmt.Errorf("record node heartbeat: %w", mapError(err))
	}
	return n, nil
}

// NodeGetByName reads the node named idOrName, or whose id it is (nodes are
// addressed by either; an id match wins). A missing node is ErrNotFound; any
// other failure is returned as it is, never as ErrNotFound.
func NodeGetByName(ctx context.Context, tx *Tx, idOrName string, forUpdate bool) (*Node, error) {
	q := "SELECT * FROM nodes WHERE id = $1 OR name = $1 ORDER BY id = $1 DESC LIMIT 1"
	if forUpdate {
		q += " FOR UPDATE"
	}
	rows, _ := tx.pg.Query(ctx, q, idOrName)
	n, err := pgx.CollectExactlyOneRow(rows, pgx.RowToAddrOfStructByNameLax[Node])
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, notFound(KindNode, idOrName)
	}
	if err != nil {
		return nil, fmt.Errorf("look up node: %w", err)
	}
	return n, nil
}

// LiveNode is a node that reported within LiveNodeWindow.
type LiveNode struct {
	Name, NodeGroupID string
	AppliedRevision   int64
}

// NodeListLive lists the nodes that reported within LiveNodeWindow.
func NodeListLive(ctx context.Context, tx *Tx) ([]LiveNode, error) {
	rows, _ := tx.pg.Query(ctx, "SELECT name, node_group_id, applied_revision FROM nodes WHERE last_seen_at > now() - interval '"+LiveNodeWindow+"'")
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (LiveNode, error) {
		var n LiveNode
		err := r.Scan(&n.Name, &n.NodeGroupID, &n.AppliedRevision)
		return n, err
	})
	if err != nil {
		return nil, fmt.Errorf("list live nodes: %w", err)
	}
	return out, nil
}
