package store

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// Peer is a node of a group taking part in HAProxy peers.
type Peer struct {
	Name    string `db:"name"`
	Address string `db:"peer_address"`
}

// PeerListByGroup lists the nodes of group groupID that registered a peer
// address, by name; with all, every node of the group (Address "" for those
// without one): the nodes taking part in the group's VRRP.
func PeerListByGroup(ctx context.Context, tx *Tx, groupID string, all bool) ([]Peer, error) {
	q := "SELECT name, peer_address FROM nodes WHERE node_group_id = $1 AND peer_address <> '' ORDER BY name"
	if all {
		q = "SELECT name, peer_address FROM nodes WHERE node_group_id = $1 ORDER BY name"
	}
	rows, _ := tx.pg.Query(ctx, q, groupID)
	peers, err := pgx.CollectRows(rows, pgx.RowToStructByName[Peer])
	if err != nil {
		return nil, fmt.Errorf("group peers: %w", mapError(err))
	}
	return peers, nil
}

// PeersChanged records that node group groupID's peers (PeerListByGroup),
// which every snapshot of the group carries, changed in this write: a node
// joined with a peer address, changed it, or left. The group takes the
// write's revision, in the same transaction and under the group's write
// lock, so the change is a revision like any other: its notification wakes
// the group's long-polls and streams, its nodes' next snapshot (a delta
// without load balancers when they hold the one before) carries the new
// peers, and a node far behind gets them with whatever it fetches.
func PeersChanged(ctx context.Context, tx *Tx, groupID string) error {
	return groupNodesChanged(ctx, tx, groupID, false)
}

// GroupNodesChanged is PeersChanged for a node without a peer address
// joining or leaving group groupID: it changes the group's list of VRRP
// nodes (the snapshot's vrrp.nodes, PeerListByGroup with all), which only
// a group using VRRP carries, so only such a group takes a new revision.
func GroupNodesChanged(ctx context.Context, tx *Tx, groupID string) error {
	return groupNodesChanged(ctx, tx, groupID, true)
}

func groupNodesChanged(ctx context.Context, tx *Tx, groupID string, vrrpOnly bool) error {
	if vrrpOnly {
		// No revision taken for a group without VRRP (a write that took
		// none, such as a node's deletion, takes none here).
		var vrrp bool
		if err := tx.pg.QueryRow(ctx, "SELECT vrrp_interface <> '' FROM node_groups WHERE id = $1", groupID).Scan(&vrrp); err != nil {
			if errors.Is(err, pgx.ErrNoRows) {
				return nil
			}
			return fmt.Errorf("group nodes changed: %w", mapError(err))
		}
		if !vrrp {
			return nil
		}
	}
	rev, err := tx.Revision(ctx)
	if err != nil {
		return err
	}
	if _, err := tx.pg.Exec(ctx, "UPDATE node_groups SET revision = $2 WHERE id = $1 AND revision < $2", groupID, rev); err != nil {
		return fmt.Errorf("group nodes changed: %w", mapError(err))
	}
	return nil
}
