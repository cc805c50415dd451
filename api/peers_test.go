package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/fulcrumlb/fulcrum/openapi"
)

// HAProxy peers (api/peers.go): every snapshot of a group lists the nodes
// that registered a peer address. A change of that list — a node joining
// with one, changing it, deregistering or being cleaned up — is a change of
// what the group's nodes serve: it reaches their next poll (or stream frame)
// without any tenant write, as a delta when they ask for one.

// peerPoll long-polls node's snapshot after revision after (format 2, a
// delta when delta) for at most wait; nil on 304.
func (b *bundle) peerPoll(node string, after int64, delta bool, wait time.Duration) *openapi.Snapshot {
	b.t.Helper()
	path := fmt.Sprintf("/v1/nodes/%s/snapshot?after=%d&wait=%s", node, after, wait)
	if delta {
		path += "&delta=true"
	}
	res, err := b.send(b.Node, http.MethodGet, path, nil, "Fulcrum-Agent-Format", "2")
	if err != nil {
		b.t.Fatal(err)
	}
	switch res.Status {
	case http.StatusNotModified:
		return nil
	case http.StatusOK:
	default:
		b.t.Fatalf("GET %s: %d %s", path, res.Status, res.Raw)
	}
	var s openapi.Snapshot
	if err := json.Unmarshal(res.Raw, &s); err != nil {
		b.t.Fatal(err)
	}
	return &s
}

// peerNames lists a snapshot's peers as "name=address", by name.
func peerNames(s *openapi.Snapshot) string {
	if s == nil || s.Peers == nil {
		return ""
	}
	var out []string
	for _, p := range *s.Peers {
		out = append(out, p.Name+"="+p.Address)
	}
	return strings.Join(out, ",")
}

// registerPeer registers (or heartbeats) node name with peer address addr.
func (b *bundle) registerPeer(name, addr string) {
	b.t.Helper()
	b.must(http.StatusOK, b.Node, http.MethodPut, "/v1/nodes/"+name, map[string]any{"node_group_id": b.GroupID, "peer_address": addr})
}

// TestPeersReachGroupWithoutWrite: two nodes serve a group; a third
// registers, changes its peer address, is deleted; a fourth is cleaned up
// after being down. With no tenant write, the nodes' waiting long-polls
// answer each change (as deltas carrying the new peers), a node far behind
// converges to the same peers, and a heartbeat that changes nothing wakes
// no one.
func TestPeersReachGroupWithoutWrite(t *testing.T) {
	b := setup(t)
	b.must(http.StatusOK, b.Admin, http.MethodPatch, "/v1/node-groups/"+b.GroupID, map[string]any{"down_node_cleanup_after_ms": 3600000})
	b.registerPeer("n1", "10.9.0.1:10000")
	b.registerPeer("n2", "10.9.0.2:10000")
	lb := b.create(b.TokenA, "/v1/load-balancers", map[string]any{"name": "web"})
	pool := b.create(b.TokenA, "/v1/pools", map[string]any{"load_balancer_id": lb, "protocol": "http"})
	b.create(b.TokenA, "/v1/listeners", map[string]any{"load_balancer_id": lb, "protocol": "http", "port": 8080, "default_pool_id": pool})

	full := b.peerPoll("n1", 0, false, 0)
	if got, want := peerNames(full), "n1=10.9.0.1:10000,n2=10.9.0.2:10000"; got != want {
		t.Fatalf("peers before: %q, want %q", got, want)
	}
	old := full.Revision // what a node far behind holds

	// changed long-polls n1 (delta) and n2 (complete) from their current
	// revisions while change runs, and checks both answer with peers want,
	// n1's as a delta without load balancers.
	held := map[string]int64{"n1": full.Revision, "n2": b.peerPoll("n2", 0, false, 0).Revision}
	changed := func(what string, change func(), want string) {
		t.Helper()
		type answer struct {
			node string
			s    *openapi.Snapshot
		}
		answers := make(chan answer, 2)
		for _, node := range []string{"n1", "n2"} {
			go func() {
				res, err := b.send(b.Node, http.MethodGet, fmt.Sprintf("/v1/nodes/%s/snapshot?after=%d&wait=10s%s", node, held[node],
					map[bool]string{true: "&delta=true"}[node == "n1"]), nil, "Fulcrum-Agent-Format", "2")
				var s *openapi.Snapshot
				if err == nil && res.Status == http.StatusOK {
					s = &openapi.Snapshot{}
					err = json.Unmarshal(res.Raw, s)
				}
				if err != nil {
					t.Errorf("%s: %s's poll: %v", what, node, err)
				}
				answers <- answer{node, s}
			}()
		}
		time.Sleep(200 * time.Millisecond) // most likely waiting by now; either way it must answer
		change()
		for range 2 {
			a := <-answers
			if a.s == nil {
				t.Fatalf("%s: %s's poll after %d answered 304: the group's nodes did not learn it", what, a.node, held[a.node])
			}
			if got := peerNames(a.s); got != want {
				t.Fatalf("%s: %s's peers %q, want %q", what, a.node, got, want)
			}
			if a.s.Revision <= held[a.node] {
				t.Fatalf("%s: %s got revision %d after %d", what, a.node, a.s.Revision, held[a.node])
			}
			isDelta := a.s.Delta != nil && *a.s.Delta
			if a.node == "n1" && (!isDelta || len(a.s.LoadBalancers) != 0) {
				t.Fatalf("%s: n1's answer: delta %v with %d load balancers, want a delta of the peers only", what, isDelta, len(a.s.LoadBalancers))
			}
			if a.node == "n2" && (isDelta || len(a.s.LoadBalancers) != 1) {
				t.Fatalf("%s: n2's answer: delta %v with %d load balancers, want the complete snapshot", what, isDelta, len(a.s.LoadBalancers))
			}
			held[a.node] = a.s.Revision
		}
		// A node far behind converges to the same peers, by delta or whole.
		if got := peerNames(b.peerPoll("n1", old, true, 0)); got != want {
			t.Fatalf("%s: peers from revision %d: %q, want %q", what, old, got, want)
		}
	}

	changed("n3 registers", func() { b.registerPeer("n3", "10.9.0.3:10000") },
		"n1=10.9.0.1:10000,n2=10.9.0.2:10000,n3=10.9.0.3:10000")

	// n3's heartbeats change nothing the group serves: no new revision.
	b.registerPeer("n3", "10.9.0.3:10000")
	if s := b.peerPoll("n1", held["n1"], true, time.Second); s != nil {
		t.Fatalf("a heartbeat with the same peer address gave the group revision %d (peers %q)", s.Revision, peerNames(s))
	}

	changed("n3 moves", func() { b.registerPeer("n3", "10.9.0.33:10001") },
		"n1=10.9.0.1:10000,n2=10.9.0.2:10000,n3=10.9.0.33:10001")
	changed("n3 is deleted", func() { b.must(http.StatusNoContent, b.Admin, http.MethodDelete, "/v1/nodes/n3", nil) },
		"n1=10.9.0.1:10000,n2=10.9.0.2:10000")
	changed("n4 registers", func() { b.registerPeer("n4", "10.9.0.4:10000") },
		"n1=10.9.0.1:10000,n2=10.9.0.2:10000,n4=10.9.0.4:10000")
	b.silence("n4", 7200) // the others have been silent for seconds
	changed("n4 is cleaned up", func() {
		if names, err := b.Store.CleanupDownNodes(context.Background()); err != nil || len(names) != 1 || names[0] != "n4" {
			t.Errorf("cleanup: %v %v", names, err)
		}
	}, "n1=10.9.0.1:10000,n2=10.9.0.2:10000")

	// A registration naming another group than the node's cannot change
	// the node's group's peers (it does not lock that group): refused,
	// naming the field; the same address is a heartbeat as before.
	other := b.create(b.Admin, "/v1/node-groups", map[string]any{"name": "other", "vip_range": "10.62.0.0/24"})
	res := b.do(b.Node, http.MethodPut, "/v1/nodes/n2", map[string]any{"node_group_id": other, "peer_address": "10.9.0.22:10000"})
	if res.Status != http.StatusUnprocessableEntity && res.Status != http.StatusBadRequest || !containsField(res.Body, "node_group_id") {
		t.Fatalf("re-registering n2 in another group with another peer address: %d %s", res.Status, res.Raw)
	}
	b.must(http.StatusOK, b.Node, http.MethodPut, "/v1/nodes/n2", map[string]any{"node_group_id": other, "peer_address": "10.9.0.2:10000"})

	// A node without a peer address changes no one's peers.
	b.register("n5")
	if s := b.peerPoll("n1", held["n1"], true, time.Second); s != nil {
		t.Fatalf("a node without a peer address gave the group revision %d", s.Revision)
	}
}
