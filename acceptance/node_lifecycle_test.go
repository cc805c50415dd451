package acceptance

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fulcrumlb/fulcrum/internal/pgtest"
	"github.com/fulcrumlb/fulcrum/internal/teststack"
)

// nackingNode is a node that reports but cannot apply anything: it registers
// and then nacks the newest revision every interval until stopped.
type nackingNode struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func startNackingNode(t *testing.T, s *stack, name string, interval time.Duration) *nackingNode {
	t.Helper()
	if code, body := s.CallAs(s.NodeToken, "PUT", "/v1/nodes/"+name, map[string]any{"agent_version": "nacker"}); code != http.StatusOK {
		t.Fatalf("register %s: %d %v", name, code, body)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n := &nackingNode{cancel: cancel}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		c := &http.Client{Timeout: 5 * time.Second}
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for i := 0; i < 10000; i++ {
			rev, err := s.Store.CurrentRevision(ctx)
			if err == nil {
				body, _ := json.Marshal(map[string]any{"revision": rev, "status": "nack", "message": "cannot bind: Cannot assign requested address"})
				req, _ := http.NewRequestWithContext(ctx, http.MethodPost, s.Endpoint+"/v1/nodes/"+name+"/reports", bytes.NewReader(body))
				req.Header.Set("Authorization", "Bearer "+s.NodeToken)
				req.Header.Set("Content-Type", "application/json")
				if res, err := c.Do(req); err == nil {
					res.Body.Close()
				}
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	t.Cleanup(n.stop)
	return n
}

func (n *nackingNode) stop() { n.cancel(); n.wg.Wait() }

// mustAs is MustCall with token.
func (s *stack) mustAs(token string, want int, method, path string, body any) map[string]any {
	s.t.Helper()
	code, out := s.CallAs(token, method, path, body)
	if code != want {
		s.t.Fatalf("%s %s: %d, want %d: %v", method, path, code, want, out)
	}
	return out
}

// TestNodeLifecycleDownAndFailingNodes: two real agents; one stopped hard (no
// more heartbeats) stops counting once the group's down-timeout passed, so a
// write goes active on the node that serves, and the load balancer reads
// degraded naming it down. A node that nacks every revision holds the group
// back no longer than its apply grace. The stopped node back, it counts again.
func TestNodeLifecycleDownAndFailingNodes(t *testing.T) {
	t.Parallel()
	s := newStack(t, pgtest.NewDatabase(t))
	if code, body := s.CallAs(s.AdminToken, "PATCH", "/v1/node-groups/"+s.NodeGroupID,
		map[string]any{"heartbeat_interval_ms": 500, "down_timeout_ms": 2000, "apply_grace_ms": 2000}); code != http.StatusOK {
		t.Fatalf("PATCH node group: %d %v", code, body)
	}
	s.StartAgent("node-1")
	s.StartAgent("node-2")
	a := teststack.StartBackend(t, "a")
	lb := s.newLB(8097, nil, a)
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
	nodeStatus := func(name string) string {
		_, n := s.CallAs(s.AdminToken, "GET", "/v1/nodes/"+name, nil)
		st, _ := n["status"].(string)
		return st
	}

	// node-2 stops hard: a write goes active once the down-timeout passed.
	s.StopAgent("node-2")
	member := "/v1/members/" + lb.Members["a"]
	start := time.Now()
	s.MustCall(http.StatusOK, "PATCH", member, map[string]any{"weight": 5})
	s.WaitActive(member)
	t.Logf("write active %v after node-2 stopped (down-timeout 2s)", time.Since(start).Round(10*time.Millisecond))
	if got := nodeStatus("node-2"); got != "down" {
		t.Fatalf("node-2 after its agent stopped: %s", got)
	}
	teststack.WaitFor(t, "the load balancer degraded naming node-2 down", 10*time.Second, func() bool {
		st, nodes := tree()
		n2 := nodes["node-2"]
		return st == "degraded" && n2 != nil && n2["status"] == "down"
	})
	teststack.WaitFor(t, "GET LB degraded with node-2 down", 10*time.Second, func() bool {
		_, body := s.Call("GET", "/v1/load-balancers/"+lb.LB, nil)
		return body["operating_status"] == "degraded"
	})
	if got := distribution(t, teststack.NewClient(nil), lb.URL, 10); got["a"] != 10 {
		t.Fatalf("node-1 should serve meanwhile: %v", got)
	}

	// node-3 reports but nacks every revision: it blocks a write at most its grace.
	nacker := startNackingNode(t, s, "node-3", 300*time.Millisecond)
	teststack.WaitFor(t, "node-3 in error", 10*time.Second, func() bool { return nodeStatus("node-3") == "error" })
	start = time.Now()
	s.MustCall(http.StatusOK, "PATCH", member, map[string]any{"weight": 6})
	s.WaitActive(member)
	t.Logf("write active %v after it was made, with node-3 nacking (apply grace 2s)", time.Since(start).Round(10*time.Millisecond))
	teststack.WaitFor(t, "node-3 named as failing", 10*time.Second, func() bool {
		_, nodes := tree()
		n3 := nodes["node-3"]
		return n3 != nil && n3["status"] == "error" && strings.Contains(fmt.Sprint(n3["status_message"]), "apply grace")
	})
	// Past the grace, writes do not wait for it at all.
	s.MustCall(http.StatusOK, "PATCH", member, map[string]any{"weight": 7})
	s.WaitActive(member)

	// node-2 back: it counts again and the tree no longer names it.
	s.StartAgent("node-2")
	teststack.WaitFor(t, "node-2 online again", 20*time.Second, func() bool { return nodeStatus("node-2") == "online" })
	s.MustCall(http.StatusOK, "PATCH", member, map[string]any{"weight": 8})
	s.WaitActive(member)
	teststack.WaitFor(t, "node-2 no longer named", 20*time.Second, func() bool {
		_, nodes := tree()
		return nodes["node-2"] == nil
	})

	// The nacking node deleted for good: the tree clears, and it cannot register again.
	nacker.stop()
	s.mustAs(s.AdminToken, http.StatusNoContent, "DELETE", "/v1/nodes/node-3", nil)
	if code, body := s.CallAs(s.NodeToken, "PUT", "/v1/nodes/node-3", map[string]any{}); code != http.StatusConflict || body["type"] == nil ||
		!strings.HasSuffix(fmt.Sprint(body["type"]), "node-deleted") {
		t.Fatalf("re-registering deleted node-3: %d %v", code, body)
	}
	teststack.WaitFor(t, "the load balancer online with node-3 deleted", 20*time.Second, func() bool {
		st, nodes := tree()
		return st == "online" && len(nodes) == 0
	})
}

// TestDeregisterRunningNode: a running agent whose node an admin deleted is
// refused when it re-registers (it keeps serving what it has) and the node
// does not come back under a new id; re-created by an admin, it registers.
func TestDeregisterRunningNode(t *testing.T) {
	t.Parallel()
	s := newStack(t, pgtest.NewDatabase(t))
	s.StartAgent("node-1")
	a := teststack.StartBackend(t, "a")
	lb := s.newLB(8098, nil, a)
	s.WaitActive("/v1/load-balancers/" + lb.LB)
	teststack.WaitFor(t, "node-1 serving", 20*time.Second, func() bool {
		_, err := teststack.Get(lb.URL)
		return err == nil
	})
	s.mustAs(s.AdminToken, http.StatusNoContent, "DELETE", "/v1/nodes/node-1", nil)
	// The agent polls, gets 404, tries to register and is refused: the node stays gone.
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		if code, _ := s.CallAs(s.AdminToken, "GET", "/v1/nodes/node-1", nil); code != http.StatusNotFound {
			t.Fatalf("deleted node-1 is back: %d", code)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if got := distribution(t, teststack.NewClient(nil), lb.URL, 5); got["a"] != 5 {
		t.Fatalf("the refused agent should keep serving: %v", got)
	}
	s.mustAs(s.AdminToken, http.StatusCreated, "POST", "/v1/nodes", map[string]any{"name": "node-1", "node_group_id": s.NodeGroupID})
	teststack.WaitFor(t, "node-1 registered again", 20*time.Second, func() bool {
		_, n := s.CallAs(s.AdminToken, "GET", "/v1/nodes/node-1", nil)
		return n["status"] == "online"
	})
}

// TestDrainCordonRunningNode: a drain and a cordon reach the running agent at
// once through its snapshot, the node reads draining/cordoned and is named in
// the status tree, writes go active, and traffic is not disturbed (without a
// VIP manager both loopback nodes keep serving); uncordon returns it.
func TestDrainCordonRunningNode(t *testing.T) {
	t.Parallel()
	s := newStack(t, pgtest.NewDatabase(t))
	s.StartAgent("node-1")
	ag2 := s.StartAgent("node-2")
	a := teststack.StartBackend(t, "a")
	lb := s.newLB(8099, nil, a)
	s.WaitActive("/v1/load-balancers/" + lb.LB)
	cl := teststack.NewClient(nil)
	member := "/v1/members/" + lb.Members["a"]
	for i, op := range []struct{ path, agentState, status string }{
		{"drain", "draining", "draining"}, {"uncordon", "in_service", "online"}, {"cordon", "cordoned", "cordoned"}, {"uncordon", "in_service", "online"},
	} {
		n := s.mustAs(s.AdminToken, http.StatusOK, "POST", "/v1/nodes/node-2/"+op.path, nil)
		if n["status"] != op.status {
			t.Fatalf("%s: node status %v, want %s", op.path, n["status"], op.status)
		}
		teststack.WaitFor(t, "node-2's agent "+op.agentState, 15*time.Second, func() bool { return ag2.AdminState() == op.agentState })
		teststack.WaitFor(t, "the status tree after "+op.path, 15*time.Second, func() bool {
			_, body := s.Call("GET", "/v1/load-balancers/"+lb.LB+"/status", nil)
			var n2 map[string]any
			list, _ := body["nodes"].([]any)
			for _, x := range list {
				if m := x.(map[string]any); m["name"] == "node-2" {
					n2 = m
				}
			}
			if op.status == "online" {
				return n2 == nil
			}
			return n2 != nil && n2["status"] == op.status
		})
		s.MustCall(http.StatusOK, "PATCH", member, map[string]any{"weight": 10 + i})
		s.WaitActive(member)
		if got := distribution(t, cl, lb.URL, 10); got["a"] != 10 {
			t.Fatalf("traffic after %s: %v", op.path, got)
		}
	}
}
