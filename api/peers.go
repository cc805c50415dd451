package api

import (
	"context"
	"net/netip"
	"slices"

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

// peersMoved records, in a node's registration, creation or removal, that
// its peer address went from before to after ("" when it had none or has
// none any more) in group groupID, and with joined that the node joined or
// left the group: when that changes the group's peers, or its VRRP nodes
// (every node of a group using VRRP, the snapshot's vrrp.nodes), the group
// takes the write's revision (store.PeersChanged, store.GroupNodesChanged),
// so its nodes learn of it from their next snapshot without waiting for a
// tenant's write. The write must hold groupID's lock; a registration naming
// another group than the node's (an agent's --node-group that is not its
// node's) does not, and is refused naming the field.
func peersMoved(ctx context.Context, tx *store.Tx, groupID string, joined bool, before, after string) error {
	if before == after && !joined {
		return nil
	}
	if locked := tx.WriteGroups(); locked != nil && !slices.Contains(locked, groupID) {
		return problem.InvalidField("node_group_id", "is not the node's group (%s)", groupID)
	}
	if before == after {
		return store.GroupNodesChanged(ctx, tx, groupID)
	}
	return store.PeersChanged(ctx, tx, groupID)
}
