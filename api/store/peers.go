package store

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// Peer is a node of a group taking part in HAProxy peers.
type Peer struct {
	Name    string `db:"name"`
	Address string `db:"peer_address"`
}

// PeerListByGroup lists the nodes of group groupID that registered a peer address,
// by name.
func PeerListByGroup(ctx context.Context, tx *Tx, groupID string) ([]Peer, error) {
	rows, _ := tx.pg.Query(ctx, "SELECT name, peer_address FROM nodes WHERE node_group_id = $1 AND peer_address <> '' ORDER BY name", groupID)
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
	rev, err := tx.Revision(ctx)
	if err != nil {
		return err
	}
	if _, err := tx.pg.Exec(ctx, "UPDATE node_groups SET revision = $2 WHERE id = $1 AND revision < $2", groupID, rev); err != nil {
		return fmt.Errorf("group peers changed: %w", mapError(err))
	}
	return nil
}
