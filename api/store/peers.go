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
