package acceptance

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fulcrumlb/fulcrum/dataplane/agent"
	"github.com/fulcrumlb/fulcrum/internal/pgtest"
	"github.com/fulcrumlb/fulcrum/internal/testenv"
	"github.com/fulcrumlb/fulcrum/internal/teststack"
)

// snapshotRevision is the revision of node name's snapshot: the newest of
// what the stack's node group serves and the node's own.
func (s *stack) snapshotRevision(name string) int64 {
	s.t.Helper()
	var rev int64
	err := s.Store.PoolForTests().QueryRow(context.Background(), `SELECT max(r) FROM (
  SELECT max(revision) r FROM load_balancers UNION ALL SELECT max(revision) FROM listeners UNION ALL SELECT max(revision) FROM pools
  UNION ALL SELECT max(revision) FROM members UNION ALL SELECT max(revision) FROM routing_rules
  UNION ALL SELECT revision FROM nodes WHERE name = $1) x`, name).Scan(&rev)
	if err != nil {
		s.t.Fatal(err)
	}
	return rev
}

// renderedConfig is the haproxy.cfg agent a runs, its state directory
// written as STATE (so two agents' configs compare).
func renderedConfig(t *testing.T, a *agent.Agent) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(a.StateDir(), "haproxy.cfg"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.ReplaceAll(string(b), a.StateDir(), "STATE")
}

// waitApplied waits until a serves its snapshot's current revision.
func (s *stack) waitApplied(name string, a *agent.Agent) int64 {
	s.t.Helper()
	rev := s.snapshotRevision(name)
	teststack.WaitFor(s.t, fmt.Sprintf("%s to apply revision %d", name, rev), 30*time.Second, func() bool { return a.AppliedRevision() >= rev })
	return rev
}

// TestSnapshotDeltaAgentConverges: an agent on deltas that keeps up, that
// restarts after missing writes (and their notifications), and that falls
// so far behind that the deletes it missed are purged (the API then sends it
// a complete snapshot) always ends up running exactly the configuration a
// fresh agent renders from a complete snapshot.
func TestSnapshotDeltaAgentConverges(t *testing.T) {
	t.Parallel()
	s := newStack(t, pgtest.NewDatabase(t))
	n1 := s.StartAgent("node-1")
	a, b := teststack.StartBackend(t, "a"), teststack.StartBackend(t, "b")
	x := s.newLB(8301, nil, a)
	y := s.newLB(8302, nil, a)
	z := s.newLB(8303, nil, b)

	// Keeping up: member changes arrive as deltas.
	s.MustCall(http.StatusOK, "PATCH", "/v1/members/"+x.Members["a"], map[string]any{"weight": 5})
	s.WaitActive("/v1/members/" + x.Members["a"])
	s.waitApplied("node-1", n1)
	if d, _ := n1.SnapshotsReceived(); d == 0 {
		t.Errorf("node-1 received no delta while keeping up")
	}

	// A restart after missing writes: it resumes from its snapshot on disk.
	s.StopAgent("node-1")
	s.MustCall(http.StatusAccepted, "DELETE", "/v1/load-balancers/"+z.LB+"?cascade=true", nil)
	s.Create("/v1/members", map[string]any{"pool_id": y.Pool, "address": "127.0.0.1", "port": b.Port})
	w := s.Create("/v1/load-balancers", map[string]any{"name": "w"})["id"].(string)
	wPool := s.Create("/v1/pools", map[string]any{"load_balancer_id": w, "protocol": "http"})["id"].(string)
	s.Create("/v1/members", map[string]any{"pool_id": wPool, "address": "127.0.0.1", "port": a.Port})
	s.Create("/v1/listeners", map[string]any{"load_balancer_id": w, "protocol": "http", "port": 8304, "default_pool_id": wPool})
	n1 = s.StartAgent("node-1")
	rev := s.waitApplied("node-1", n1)
	if d, f := n1.SnapshotsReceived(); d == 0 {
		t.Errorf("node-1 restarted at an older revision received %d deltas, %d complete snapshots: want a delta", d, f)
	}
	t.Logf("node-1 restarted and caught up to %d", rev)
	if got := distribution(t, teststack.NewClient(nil), y.URL, 10); got["a"]+got["b"] != 10 || got["b"] == 0 {
		t.Fatalf("y after node-1's restart: %v, want a and b", got)
	}

	// Far behind: node-1 stopped and cordoned (it no longer holds deletes
	// back), node-2 applies deletes and they are purged.
	s.StopAgent("node-1")
	s.mustAs(s.AdminToken, http.StatusOK, "POST", "/v1/nodes/node-1/cordon", nil)
	held := n1.AppliedRevision()
	n2 := s.StartAgent("node-2")
	s.MustCall(http.StatusAccepted, "DELETE", "/v1/load-balancers/"+w+"?cascade=true", nil)
	s.MustCall(http.StatusAccepted, "DELETE", "/v1/members/"+x.Members["a"], nil)
	s.MustCall(http.StatusOK, "PATCH", "/v1/load-balancers/"+y.LB, map[string]any{"description": "changed"})
	s.mustAs(s.AdminToken, http.StatusOK, "POST", "/v1/nodes/node-1/uncordon", nil)
	s.waitApplied("node-2", n2)
	var purged int64
	teststack.WaitFor(t, "the deletes node-1 missed to be purged", 30*time.Second, func() bool {
		err := s.Store.PoolForTests().QueryRow(context.Background(), "SELECT COALESCE(max(purged_revision), 0) FROM snapshot_purges").Scan(&purged)
		return err == nil && purged > held
	})
	n1 = s.StartAgent("node-1")
	s.waitApplied("node-1", n1)
	if d, f := n1.SnapshotsReceived(); f == 0 {
		t.Errorf("node-1 behind purged deletes (held %d, purged up to %d) received %d deltas and no complete snapshot", held, purged, d)
	}

	// More changes while everyone keeps up, then a fresh agent: all three
	// run the same configuration.
	s.MustCall(http.StatusOK, "PATCH", "/v1/members/"+y.Members["a"], map[string]any{"weight": 9})
	n3 := s.StartAgent("node-3")
	rev = s.waitApplied("node-3", n3)
	s.waitApplied("node-1", n1)
	s.waitApplied("node-2", n2)
	want := renderedConfig(t, n3)
	for name, ag := range map[string]*agent.Agent{"node-1": n1, "node-2": n2} {
		if got := renderedConfig(t, ag); got != want {
			t.Errorf("%s at %d runs a configuration other than a fresh agent's:\n--- %s\n%s\n--- fresh\n%s", name, ag.AppliedRevision(), name, got, want)
		}
	}
	d1, f1 := n1.SnapshotsReceived()
	d2, f2 := n2.SnapshotsReceived()
	t.Logf("at revision %d: node-1 received %d deltas, %d complete; node-2 %d deltas, %d complete", rev, d1, f1, d2, f2)
	if _, err := teststack.Fetch(teststack.NewClient(nil), z.URL); err == nil {
		t.Errorf("the deleted load balancer z still answers")
	}
}

// formatRewriter is a proxy in front of the API that, while on, rewrites
// the format_version of the snapshots it passes to 99 (a format from the
// future).
type formatRewriter struct {
	on atomic.Bool
}

func (f *formatRewriter) start(t *testing.T, endpoint string) string {
	t.Helper()
	target, err := url.Parse(endpoint)
	if err != nil {
		t.Fatal(err)
	}
	p := httputil.NewSingleHostReverseProxy(target)
	director := p.Director
	p.Director = func(r *http.Request) {
		director(r)
		r.Header.Del("Accept-Encoding") // bodies stay plain JSON to rewrite
		r.Header.Del("Upgrade")         // polls (no raw stream through it: stream_test.go)
		r.Header.Del("Connection")
	}
	p.ModifyResponse = func(res *http.Response) error {
		if !f.on.Load() || res.StatusCode != http.StatusOK || !strings.HasSuffix(res.Request.URL.Path, "/snapshot") {
			return nil
		}
		var body map[string]any
		if err := json.NewDecoder(res.Body).Decode(&body); err != nil {
			return err
		}
		res.Body.Close()
		body["format_version"] = 99
		b, _ := json.Marshal(body)
		res.Body = io.NopCloser(bytes.NewReader(b))
		res.ContentLength = int64(len(b))
		res.Header.Set("Content-Length", strconv.Itoa(len(b)))
		return nil
	}
	srv := httptest.NewServer(p)
	t.Cleanup(srv.Close)
	return srv.URL
}

// TestSnapshotFormatNewerKeepsServing: an agent sent a snapshot in a format
// it does not know keeps serving what it has (real HAProxy, traffic), reports
// a snapshot_format node error, and applies the next snapshot it understands.
func TestSnapshotFormatNewerKeepsServing(t *testing.T) {
	t.Parallel()
	testenv.RequireHAProxy(t)
	s := newStack(t, pgtest.NewDatabase(t))
	rw := &formatRewriter{}
	endpoint := rw.start(t, s.Endpoint)
	dir := t.TempDir()
	ag := runAgent(t, s.Stack, endpoint, dir)
	a, b := teststack.StartBackend(t, "a"), teststack.StartBackend(t, "b")
	lb := s.newLB(8311, nil, a)
	cl := teststack.NewClient(nil)
	if got := distribution(t, cl, lb.URL, 6); got["a"] != 6 {
		t.Fatalf("before: %v", got)
	}
	held := ag.AppliedRevision()

	rw.on.Store(true)
	s.Create("/v1/members", map[string]any{"pool_id": lb.Pool, "address": "127.0.0.1", "port": b.Port})
	nodeError := func() string {
		_, n := s.CallAs(s.AdminToken, "GET", "/v1/nodes/node-1", nil)
		errs, _ := n["errors"].([]any)
		for _, e := range errs {
			if m, _ := e.(map[string]any); m["kind"] == "snapshot_format" {
				msg, _ := m["message"].(string)
				return msg
			}
		}
		return ""
	}
	teststack.WaitFor(t, "a snapshot_format node error", 30*time.Second, func() bool { return nodeError() != "" })
	t.Logf("node error: %s", nodeError())
	if got := ag.AppliedRevision(); got != held {
		t.Fatalf("the agent applied revision %d of an unknown format (held %d)", got, held)
	}
	if got := distribution(t, cl, lb.URL, 6); got["a"] != 6 {
		t.Fatalf("while the snapshot is not understood: %v, want the old configuration (a only)", got)
	}

	// Understood again: the next revision applies, the error goes.
	rw.on.Store(false)
	s.MustCall(http.StatusOK, "PATCH", "/v1/members/"+lb.Members["a"], map[string]any{"weight": 2})
	s.waitApplied("node-1", ag)
	teststack.WaitFor(t, "the snapshot_format error to clear", 30*time.Second, func() bool { return nodeError() == "" })
	teststack.WaitFor(t, "traffic to the new member", 10*time.Second, func() bool { return distribution(t, cl, lb.URL, 6)["b"] > 0 })
}

// TestSnapshotPurgedChildAgentConverges: an agent that keeps running but is
// cut off from the API (so its conversions stay cached by load balancer
// revision) while a member older than its load balancer's newest change is
// deleted and purged, once back, runs exactly the configuration of an agent
// that kept up: without the member. (A purge once put the load balancer back
// at the revision the cut-off agent held, with the member: the agent's cache
// kept serving it, and the group's revision fell to what it held.)
func TestSnapshotPurgedChildAgentConverges(t *testing.T) {
	t.Parallel()
	testenv.RequireHAProxy(t)
	s := newStack(t, pgtest.NewDatabase(t))
	var cut atomic.Bool
	target, err := url.Parse(s.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	p := stripUpgrades(target)                      // polls: a cut cuts them (stream_test.go)
	p.ModifyResponse = func(*http.Response) error { // answers of polls sent before the cut
		if cut.Load() {
			return fmt.Errorf("cut off")
		}
		return nil
	}
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if cut.Load() {
			http.Error(w, "cut off", http.StatusBadGateway)
			return
		}
		p.ServeHTTP(w, r)
	}))
	t.Cleanup(proxy.Close)
	n1 := runAgent(t, s.Stack, proxy.URL, t.TempDir())
	n2 := s.StartAgent("node-2")
	a, b := teststack.StartBackend(t, "a"), teststack.StartBackend(t, "b")
	y := s.newLB(8321, nil, a)
	// y's newest change is member b, newer than member a.
	mb := s.Create("/v1/members", map[string]any{"pool_id": y.Pool, "address": "127.0.0.1", "port": b.Port})["id"].(string)
	s.WaitActive("/v1/members/" + mb)
	held := s.waitApplied("node-1", n1)
	s.waitApplied("node-2", n2)

	// node-1 is cut off (and cordoned: it holds no delete back); member a
	// goes, node-2 applies it, the delete is purged.
	cut.Store(true)
	s.mustAs(s.AdminToken, http.StatusOK, "POST", "/v1/nodes/node-1/cordon", nil)
	s.MustCall(http.StatusAccepted, "DELETE", "/v1/members/"+y.Members["a"], nil)
	s.waitApplied("node-2", n2)
	var purged int64
	teststack.WaitFor(t, "member a's delete to be purged", 30*time.Second, func() bool {
		err := s.Store.PoolForTests().QueryRow(context.Background(), "SELECT COALESCE(max(purged_revision), 0) FROM snapshot_purges").Scan(&purged)
		return err == nil && purged > held
	})
	// Another load balancer: something newer for node-1 whatever y's revision.
	s.newLB(8322, nil, b)
	s.mustAs(s.AdminToken, http.StatusOK, "POST", "/v1/nodes/node-1/uncordon", nil)
	cut.Store(false)
	rev := s.waitApplied("node-1", n1)
	teststack.WaitFor(t, "node-1 to catch up with node-2", 30*time.Second, func() bool { return n1.AppliedRevision() >= n2.AppliedRevision() })
	got, want := renderedConfig(t, n1), renderedConfig(t, n2)
	if got != want || strings.Contains(got, y.Members["a"]) {
		t.Errorf("node-1, cut off from %d to after the purge up to %d, at %d runs a configuration other than node-2's (member a %s still in it: %v):\n--- node-1\n%s\n--- node-2\n%s",
			held, purged, n1.AppliedRevision(), y.Members["a"], strings.Contains(got, y.Members["a"]), got, want)
	}
	d, f := n1.SnapshotsReceived()
	t.Logf("node-1 held %d, deletes purged up to %d, caught up to %d: %d deltas, %d complete snapshots", held, purged, rev, d, f)
}

// runAgent runs agent node-1 of s against endpoint with state in dir until
// the test ends.
func runAgent(t *testing.T, s *teststack.Stack, endpoint, dir string) *agent.Agent {
	t.Helper()
	ag, err := agent.New(agent.Config{Endpoint: endpoint, Token: s.NodeToken, NodeName: "node-1", StateDir: dir, PollWait: pollWait,
		ReportInterval: 300 * time.Millisecond, HardStopAfter: 5 * time.Second, Logger: teststack.Logger(), StopHAProxyOnExit: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ag.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			t.Errorf("the agent did not stop")
		}
	})
	return ag
}
