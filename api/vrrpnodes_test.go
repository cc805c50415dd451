package api_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/fulcrumlb/fulcrum/openapi"
)

// vrrpNodes lists a snapshot's vrrp.nodes, comma-separated; "-" when it
// carries none.
func vrrpNodes(s *openapi.Snapshot) string {
	if s == nil || s.Vrrp == nil || s.Vrrp.Nodes == nil {
		return "-"
	}
	return strings.Join(*s.Vrrp.Nodes, ",")
}

// TestVRRPNodesReachGroupWithoutWrite: every snapshot of a group using
// VRRP lists all the group's nodes (vrrp.nodes), those without a peer
// address too (multicast VRRP, no HAProxy peers), from which each node
// ranks its VRRP priorities. A node created, registering for the first time,
// deleted or cleaned up gives the group a new revision that reaches the
// nodes' waiting polls with no tenant write; a heartbeat does not; a node of
// another group never appears and moves nothing.
func TestVRRPNodesReachGroupWithoutWrite(t *testing.T) {
	b := setup(t)
	b.must(http.StatusOK, b.Admin, http.MethodPatch, "/v1/node-groups/"+b.GroupID,
		map[string]any{"down_node_cleanup_after_ms": 3600000, "vrrp_interface": "eth0"})
	other := b.create(b.Admin, "/v1/node-groups", map[string]any{"name": "other", "vip_range": "10.62.0.0/24"})
	b.must(http.StatusOK, b.Admin, http.MethodPatch, "/v1/node-groups/"+other, map[string]any{"vrrp_interface": "eth0"})
	b.register("n1")
	b.register("n2")
	b.must(http.StatusOK, b.Node, http.MethodPut, "/v1/nodes/m1", map[string]any{"node_group_id": other})
	lb := b.create(b.TokenA, "/v1/load-balancers", map[string]any{"name": "web"})
	pool := b.create(b.TokenA, "/v1/pools", map[string]any{"load_balancer_id": lb, "protocol": "http"})
	b.create(b.TokenA, "/v1/listeners", map[string]any{"load_balancer_id": lb, "protocol": "http", "port": 8080, "default_pool_id": pool})

	full := b.peerPoll("n1", 0, false, 0)
	if got, want := vrrpNodes(full), "n1,n2"; got != want {
		t.Fatalf("vrrp.nodes before: %q, want %q", got, want)
	}
	if full.Peers != nil {
		t.Fatalf("peers %q: no node registered a peer address", peerNames(full))
	}
	held := full.Revision

	// changed long-polls n1 (a delta) from the revision it holds while
	// change runs: the answer must come, newer, without load balancers,
	// listing want; a node far behind (complete) converges to the same.
	changed := func(what string, change func(), want string) {
		t.Helper()
		answer := make(chan *openapi.Snapshot, 1)
		go func() { answer <- b.peerPoll("n1", held, true, 10*time.Second) }()
		time.Sleep(200 * time.Millisecond) // most likely waiting by now; either way it must answer
		change()
		s := <-answer
		if s == nil {
			t.Fatalf("%s: n1's poll after %d answered 304: the group's nodes did not learn it", what, held)
		}
		if got := vrrpNodes(s); got != want {
			t.Fatalf("%s: vrrp.nodes %q, want %q", what, got, want)
		}
		if s.Revision <= held || s.Delta == nil || !*s.Delta || len(s.LoadBalancers) != 0 {
			t.Fatalf("%s: revision %d after %d, delta %v with %d load balancers; want a newer delta of the nodes only", what, s.Revision, held, s.Delta, len(s.LoadBalancers))
		}
		held = s.Revision
		if got := vrrpNodes(b.peerPoll("n2", 0, false, 0)); got != want {
			t.Fatalf("%s: n2's complete snapshot lists %q, want %q", what, got, want)
		}
	}
	quiet := func(what string, change func()) {
		t.Helper()
		change()
		if s := b.peerPoll("n1", held, true, time.Second); s != nil {
			t.Fatalf("%s gave the group revision %d (vrrp.nodes %q)", what, s.Revision, vrrpNodes(s))
		}
	}

	changed("n3 registers without a peer address", func() { b.register("n3") }, "n1,n2,n3")
	quiet("n3's heartbeat", func() { b.register("n3") })
	quiet("a node registering in another group", func() {
		b.must(http.StatusOK, b.Node, http.MethodPut, "/v1/nodes/m2", map[string]any{"node_group_id": other})
	})
	changed("an admin creates n4", func() {
		b.create(b.Admin, "/v1/nodes", map[string]any{"name": "n4", "node_group_id": b.GroupID})
	}, "n1,n2,n3,n4")
	quiet("n4's agent registers", func() { b.register("n4") })
	changed("n3 is deleted", func() { b.must(http.StatusNoContent, b.Admin, http.MethodDelete, "/v1/nodes/n3", nil) }, "n1,n2,n4")
	b.silence("n4", 7200) // the others have been silent for seconds
	changed("n4 is cleaned up", func() {
		if names, err := b.Store.CleanupDownNodes(context.Background()); err != nil || len(names) != 1 || names[0] != "n4" {
			t.Errorf("cleanup: %v %v", names, err)
		}
	}, "n1,n2")
	changed("n5 registers with a peer address", func() { b.registerPeer("n5", "10.9.0.5:10000") }, "n1,n2,n5")

	// The other group's nodes see their own group only.
	if got := vrrpNodes(b.peerPoll("m1", 0, false, 0)); got != "m1,m2" {
		t.Fatalf("the other group's vrrp.nodes: %q, want m1,m2", got)
	}

	// A group without VRRP carries no list, and its nodes joining move
	// nothing (no snapshot for every node of a large group at each join).
	b.must(http.StatusOK, b.Admin, http.MethodPatch, "/v1/node-groups/"+b.GroupID, map[string]any{"vrrp_interface": ""})
	s := b.peerPoll("n1", 0, false, 0)
	if s.Vrrp != nil {
		t.Fatalf("a group without VRRP: vrrp %+v", *s.Vrrp)
	}
	held = s.Revision
	quiet("n6 registering in a group without VRRP", func() { b.register("n6") })
	quiet("n6 deleted from a group without VRRP", func() {
		b.must(http.StatusNoContent, b.Admin, http.MethodDelete, "/v1/nodes/n6", nil)
	})
}
