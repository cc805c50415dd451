package agent

import (
	"slices"
	"testing"

	"github.com/fulcrumlb/fulcrum/dataplane/keepalived"
	"github.com/fulcrumlb/fulcrum/openapi"
)

// Nodes without a peer address (multicast VRRP, no HAProxy peers) rank
// their VRRP priorities among the group's nodes (vrrp.nodes) too: no two
// share a priority for a router id. From an API that sends no vrrp.nodes,
// the peers rank them as before.
func TestGroupNodesRankNodesWithoutPeerAddress(t *testing.T) {
	names := []string{"mc-node-3", "mc-node-1", "mc-node-2"}
	snaps := map[string]*openapi.Snapshot{}
	for _, n := range names {
		s := snapshot(5)
		s.Node = &openapi.SnapshotNode{Id: "id_" + n, Name: n, AdminState: "in_service"}
		all := []string{"mc-node-1", "mc-node-2", "mc-node-3"}
		s.Vrrp = &openapi.SnapshotVRRP{Interface: "eth0", RouterIdMin: 1, RouterIdMax: 255, AdvertIntervalMs: 100, Nodes: &all}
		snaps[n] = s // no peers: none registered a peer address
	}
	for id := 1; id <= 255; id++ {
		var prios []int
		for _, n := range names {
			p := keepalived.RankedPriority(n, id, groupNodes(snaps[n]))
			if p == 0 {
				t.Fatalf("router id %d: %s is not ranked (hashed priority kept) without a peer address", id, n)
			}
			prios = append(prios, p)
		}
		slices.Sort(prios)
		if !slices.Equal(prios, []int{1, 64, keepalived.MaxBasePriority}) {
			t.Fatalf("router id %d: priorities %v; want 1, 64, %d", id, prios, keepalived.MaxBasePriority)
		}
	}

	// An older API: no vrrp.nodes, the peers rank.
	old := peerSnapshot(5, []string{"node-1", "node-2"})
	if got := groupNodes(old); !slices.Equal(got, []string{"node-1", "node-2"}) {
		t.Errorf("without vrrp.nodes: group nodes %v, want the peers", got)
	}
	// vrrp.nodes wins over the peers (a node without a peer address is
	// among the group's nodes, not among the peers).
	all := []string{"node-1", "node-2", "node-3"}
	old.Vrrp.Nodes = &all
	if got := groupNodes(old); !slices.Equal(got, all) {
		t.Errorf("with vrrp.nodes: group nodes %v, want %v", got, all)
	}
}
