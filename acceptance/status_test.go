package acceptance

import (
	"testing"
	"time"

	"github.com/fulcrumlb/fulcrum/internal/pgtest"
	"github.com/fulcrumlb/fulcrum/internal/teststack"
)

// TestStatusRollupWhileServing: a pool with one of two members down makes its
// listener and load balancer degraded — never offline while the load balancer
// serves 200s — and online again once the member is back. Real agent,
// HAProxy health checks and traffic.
func TestStatusRollupWhileServing(t *testing.T) {
	t.Parallel()
	s := newStack(t, pgtest.NewDatabase(t))
	s.StartAgent("node-1")
	a, b := teststack.StartBackend(t, "a"), teststack.StartBackend(t, "b")
	// fall 3 and a generous timeout: a loaded machine must not flap a.
	lb := s.newLB(8095, map[string]any{"health_monitor": map[string]any{"type": "http", "path": "/health",
		"interval_ms": 500, "timeout_ms": 500, "rise": 1, "fall": 3, "expected_codes": "200"}}, a, b)
	cl := teststack.NewClient(nil)
	statuses := func() (lbStatus, listener, pool string, nodes int) {
		_, tree := s.Call("GET", "/v1/load-balancers/"+lb.LB+"/status", nil)
		lbStatus, _ = tree["load_balancer"].(map[string]any)["operating_status"].(string)
		listener, _ = tree["listeners"].([]any)[0].(map[string]any)["operating_status"].(string)
		pool, _ = tree["pools"].([]any)[0].(map[string]any)["operating_status"].(string)
		list, _ := tree["nodes"].([]any)
		return lbStatus, listener, pool, len(list)
	}
	lbField := func() string {
		_, body := s.Call("GET", "/v1/load-balancers/"+lb.LB, nil)
		v, _ := body["operating_status"].(string)
		return v
	}
	teststack.WaitFor(t, "the load balancer online", 20*time.Second, func() bool {
		l, _, _, _ := statuses()
		return l == "online" && lbField() == "online"
	})

	b.Stop()
	teststack.WaitFor(t, "the load balancer degraded", 20*time.Second, func() bool {
		l, ls, p, _ := statuses()
		return l == "degraded" && ls == "degraded" && p == "degraded" && lbField() == "degraded"
	})
	// It serves meanwhile, from a: every request a 200.
	if got := distribution(t, cl, lb.URL, 30); got["a"] != 30 {
		t.Fatalf("with b down every request should reach a: %v", got)
	}
	// And it stays degraded (never offline) over several reports.
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		l, ls, p, nodes := statuses()
		if l != "degraded" || ls != "degraded" || p != "degraded" {
			t.Fatalf("while serving with one member down: LB %s, listener %s, pool %s", l, ls, p)
		}
		if nodes != 0 {
			t.Fatalf("the only node serves the LB, yet the tree lists %d nodes", nodes)
		}
		if _, err := teststack.Fetch(cl, lb.URL); err != nil {
			t.Fatalf("request while degraded: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}

	b.Restart(t)
	teststack.WaitFor(t, "the load balancer online again", 20*time.Second, func() bool {
		l, ls, p, _ := statuses()
		return l == "online" && ls == "online" && p == "online" && lbField() == "online"
	})
}

// TestNodeNotApplyingNamedInStatus: with one of two nodes stopped, a change
// is never active; once the grace after it passed, the status tree names the
// node that did not apply it and the load balancer reads degraded (not
// offline: the other node serves). The node back, all clears.
func TestNodeNotApplyingNamedInStatus(t *testing.T) {
	t.Parallel()
	s := newStack(t, pgtest.NewDatabase(t))
	s.StartAgent("node-1")
	s.StartAgent("node-2")
	a := teststack.StartBackend(t, "a")
	lb := s.newLB(8096, nil, a)
	s.WaitActive("/v1/load-balancers/" + lb.LB)
	tree := func() (string, map[string]map[string]any) {
		_, body := s.Call("GET", "/v1/load-balancers/"+lb.LB+"/status", nil)
		nodes := map[string]map[string]any{}
		list, _ := body["nodes"].([]any)
		for _, n := range list {
			m := n.(map[string]any)
			nodes[m["name"].(string)] = m
		}
		st, _ := body["load_balancer"].(map[string]any)["operating_status"].(string)
		return st, nodes
	}
	teststack.WaitFor(t, "the load balancer online on both nodes", 20*time.Second, func() bool {
		st, nodes := tree()
		return st == "online" && len(nodes) == 0
	})

	s.StopAgent("node-2")
	member := "/v1/members/" + lb.Members["a"]
	s.MustCall(200, "PATCH", member, map[string]any{"weight": 5})
	teststack.WaitFor(t, "node-2 named in the status tree", 30*time.Second, func() bool {
		st, nodes := tree()
		n2 := nodes["node-2"]
		return st == "degraded" && len(nodes) == 1 && n2 != nil && n2["status"] == "applying"
	})
	if _, m := s.Call("GET", member, nil); m["provisioning_status"] == "active" {
		t.Fatalf("member active although node-2 did not apply it: %v", m)
	}
	// The stored status follows with node-1's next report.
	teststack.WaitFor(t, "GET LB degraded with node-2 behind", 10*time.Second, func() bool {
		_, lbBody := s.Call("GET", "/v1/load-balancers/"+lb.LB, nil)
		return lbBody["operating_status"] == "degraded"
	})
	if got := distribution(t, teststack.NewClient(nil), lb.URL, 10); got["a"] != 10 {
		t.Fatalf("node-1 should serve meanwhile: %v", got)
	}

	s.StartAgent("node-2")
	s.WaitActive(member)
	teststack.WaitFor(t, "the load balancer online again", 20*time.Second, func() bool {
		st, nodes := tree()
		return st == "online" && len(nodes) == 0
	})
}
