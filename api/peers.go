package api

import (
	"context"
	"net/netip"

	"github.com/fulcrumlb/fulcrum/api/problem"
	"github.com/fulcrumlb/fulcrum/api/store"
	"github.com/fulcrumlb/fulcrum/openapi"
)

// peerAddress checks a registration's peer_address: "" or ip:port.
func peerAddress(b openapi.NodeRegistration) (string, error) {
	if b.PeerAddress == nil || *b.PeerAddress == "" {
		return "", nil
	}
	ap, err := netip.ParseAddrPort(*b.PeerAddress)
	if err != nil || ap.Port() == 0 || !ap.Addr().IsValid() || ap.Addr().IsUnspecified() {
		return "", problem.InvalidField("peer_address", "must be ip:port (the node's LAN address and a port for HAProxy peers)")
	}
	return ap.String(), nil
}

// snapshotPeers lists the group's HAProxy peers for a snapshot; nil when
// fewer than two nodes take part (nothing to share).
func snapshotPeers(ctx context.Context, tx *store.Tx, groupID string) (*[]openapi.SnapshotPeer, error) {
	peers, err := store.GroupPeers(ctx, tx, groupID)
	if err != nil || len(peers) < 2 {
		return nil, err
	}
	out := make([]openapi.SnapshotPeer, 0, len(peers))
	for _, p := range peers {
		out = append(out, openapi.SnapshotPeer{Name: p.Name, Address: p.Address})
	}
	return &out, nil
}
