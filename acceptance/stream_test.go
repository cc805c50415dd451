package acceptance

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/fulcrumlb/fulcrum/dataplane/agent"
	"github.com/fulcrumlb/fulcrum/internal/pgtest"
	"github.com/fulcrumlb/fulcrum/internal/testenv"
	"github.com/fulcrumlb/fulcrum/internal/teststack"
)

// Node protocol 3 (api/node_stream.go, dataplane/agent/stream.go): agents
// of the test stack stream their snapshots from an API that serves it.

// TestStreamAgentConvergesAcrossAPIRestart: an agent on a stream applies
// writes and acknowledges them on it (objects go active); when the API
// restarts (its shutdown ends the stream at once) it opens a stream again
// and converges, deletions included, to exactly what a fresh agent runs.
func TestStreamAgentConvergesAcrossAPIRestart(t *testing.T) {
	t.Parallel()
	testenv.RequireHAProxy(t)
	s := newStack(t, pgtest.NewDatabase(t))
	n1 := s.StartAgent("node-1")
	a, b := teststack.StartBackend(t, "a"), teststack.StartBackend(t, "b")
	x := s.newLB(8321, nil, a)
	y := s.newLB(8322, nil, a)
	s.MustCall(http.StatusOK, "PATCH", "/v1/members/"+x.Members["a"], map[string]any{"weight": 5})
	s.WaitActive("/v1/members/" + x.Members["a"])
	s.waitApplied("node-1", n1)
	opened, frames := n1.Streams()
	if opened == 0 || frames == 0 || n1.PollAcks() == 0 {
		t.Fatalf("node-1 before the restart: %d streams opened, %d snapshots on them, %d acknowledgements carried: want a stream", opened, frames, n1.PollAcks())
	}
	if raw := n1.RawStreams(); raw != opened {
		t.Fatalf("node-1 before the restart: %d of %d streams opened raw, want all (nothing between the agent and the API)", raw, opened)
	}
	if got := distribution(t, teststack.NewClient(nil), y.URL, 6); got["a"] != 6 {
		t.Fatalf("y: %v", got)
	}

	start := time.Now()
	s.StopAPI()
	stopped := time.Since(start)
	t.Logf("API stopped in %s with node-1's stream open", stopped.Round(time.Millisecond))
	if stopped >= 5*time.Second { // the stack's shutdown timeout: the stream held the shutdown
		t.Errorf("the API's shutdown took %s: the stream did not end at once", stopped)
	}
	s.StartAPI()
	s.MustCall(http.StatusAccepted, "DELETE", "/v1/load-balancers/"+y.LB+"?cascade=true", nil)
	s.Create("/v1/members", map[string]any{"pool_id": x.Pool, "address": "127.0.0.1", "port": b.Port})
	w := s.Create("/v1/load-balancers", map[string]any{"name": "w"})["id"].(string)
	wPool := s.Create("/v1/pools", map[string]any{"load_balancer_id": w, "protocol": "http"})["id"].(string)
	m := s.Create("/v1/members", map[string]any{"pool_id": wPool, "address": "127.0.0.1", "port": a.Port})["id"].(string)
	s.Create("/v1/listeners", map[string]any{"load_balancer_id": w, "protocol": "http", "port": 8323, "default_pool_id": wPool})
	s.WaitActive("/v1/members/" + m)
	rev := s.waitApplied("node-1", n1)
	if again, _ := n1.Streams(); again <= opened || n1.RawStreams() != again {
		t.Errorf("node-1 opened no raw stream after the API's restart (%d before, %d now, %d raw)", opened, again, n1.RawStreams())
	}

	n2 := s.StartAgent("node-2")
	s.waitApplied("node-2", n2)
	s.waitApplied("node-1", n1)
	if got, want := renderedConfig(t, n1), renderedConfig(t, n2); got != want {
		t.Errorf("node-1 at %d runs a configuration other than a fresh agent's:\n--- node-1\n%s\n--- fresh\n%s", rev, got, want)
	}
	if _, err := teststack.Fetch(teststack.NewClient(nil), y.URL); err == nil {
		t.Errorf("the deleted load balancer y still answers")
	}
	teststack.WaitFor(t, "x's traffic to reach the member added after the restart", 10*time.Second, func() bool {
		got := distribution(t, teststack.NewClient(nil), x.URL, 10)
		return got["a"]+got["b"] == 10 && got["b"] > 0
	})
	o, f := n1.Streams()
	d, full := n1.SnapshotsReceived()
	t.Logf("node-1: %d streams opened, %d snapshots on them (%d deltas, %d complete), %d acknowledgements on streams or polls", o, f, d, full, n1.PollAcks())
}

// TestStreamFallbackToPolls: an agent that cannot open the raw stream nor
// the HTTP/2 one — a proxy in between that speaks HTTP/1.1 only and strips
// the upgrade, or one that refuses the stream's route (405, or 404 "No such
// route" as an API without it answers) — long-polls as before (node
// protocol 2: acknowledgements in polls) and serves every write. One that
// cannot open the raw stream only (a proxy that strips the upgrade but
// speaks HTTP/2) streams over HTTP/2; one behind an HTTP/1.1 proxy that
// passes upgrades on (as Go's reverse proxy does) streams raw.
func TestStreamFallbackToPolls(t *testing.T) {
	t.Parallel()
	testenv.RequireHAProxy(t)
	s := newStack(t, pgtest.NewDatabase(t))
	target, err := url.Parse(s.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	strip := stripUpgrades(target)
	h1strip := httptest.NewServer(strip)
	t.Cleanup(h1strip.Close)
	h1 := httptest.NewServer(httputil.NewSingleHostReverseProxy(target))
	t.Cleanup(h1.Close)
	var p http.Protocols
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	h2strip := httptest.NewUnstartedServer(strip)
	h2strip.Config.Protocols = &p
	h2strip.Start()
	t.Cleanup(h2strip.Close)
	proxy := httputil.NewSingleHostReverseProxy(target)
	refusing := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/stream") {
			w.Header().Set("Content-Type", "application/problem+json")
			if strings.Contains(r.URL.Path, "node-3") { // as an API without the route answers
				w.WriteHeader(http.StatusNotFound)
				_, _ = w.Write([]byte(`{"type":"https://fulcrum.dev/problems/not-found","title":"Not found","status":404,"detail":"No such route."}`))
				return
			}
			w.WriteHeader(http.StatusMethodNotAllowed)
			_, _ = w.Write([]byte(`{"type":"about:blank","title":"Method not allowed","status":405}`))
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	refusing.Config.Protocols = &p
	refusing.Start()
	t.Cleanup(refusing.Close)

	// How each agent gets its snapshots.
	const polls, h2, raw = "polls", "h2", "raw"
	type node struct {
		ag  *agent.Agent
		via string
	}
	agents := map[string]node{
		"node-1": {runNamedAgent(t, s.Stack, "node-1", h1strip.URL), polls},
		"node-2": {runNamedAgent(t, s.Stack, "node-2", refusing.URL), polls},
		"node-3": {runNamedAgent(t, s.Stack, "node-3", refusing.URL), polls},
		"node-4": {runNamedAgent(t, s.Stack, "node-4", h2strip.URL), h2},
		"node-5": {runNamedAgent(t, s.Stack, "node-5", h1.URL), raw},
	}
	a, b := teststack.StartBackend(t, "a"), teststack.StartBackend(t, "b")
	x := s.newLB(8331, nil, a)
	m := s.Create("/v1/members", map[string]any{"pool_id": x.Pool, "address": "127.0.0.1", "port": b.Port})["id"].(string)
	s.WaitActive("/v1/members/" + m)
	for name, n := range agents {
		s.waitApplied(name, n.ag)
		opened, _ := n.ag.Streams()
		raws := n.ag.RawStreams()
		var via string
		switch {
		case opened == 0:
			via = polls
		case raws == opened:
			via = raw
		case raws == 0:
			via = h2
		}
		if via != n.via || n.ag.PollAcks() == 0 {
			t.Errorf("%s: %d streams opened (%d raw), %d acknowledgements carried: want %s", name, opened, raws, n.ag.PollAcks(), n.via)
		}
	}
	teststack.WaitFor(t, "x's traffic to reach both members", 10*time.Second, func() bool {
		got := distribution(t, teststack.NewClient(nil), x.URL, 10)
		return got["a"]+got["b"] == 10 && got["b"] > 0
	})
}

// stripUpgrades is a reverse proxy to target that forwards requests
// without their upgrade (the API answers the raw stream's open 426), as a
// proxy that does not pass upgrades on.
func stripUpgrades(target *url.URL) *httputil.ReverseProxy {
	p := httputil.NewSingleHostReverseProxy(target)
	director := p.Director
	p.Director = func(r *http.Request) {
		director(r)
		r.Header.Del("Upgrade")
		r.Header.Del("Connection")
	}
	return p
}

// runNamedAgent runs agent name of s against endpoint until the test ends.
func runNamedAgent(t *testing.T, s *teststack.Stack, name, endpoint string) *agent.Agent {
	t.Helper()
	ag, err := agent.New(agent.Config{Endpoint: endpoint, Token: s.NodeToken, NodeName: name, StateDir: t.TempDir(), PollWait: pollWait,
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
			t.Errorf("agent %s did not stop", name)
		}
	})
	return ag
}

// TestStreamCurl: curl speaks HTTP/1.1 to the API as before, and HTTP/2
// cleartext (prior knowledge) on the same port. (Streams themselves are
// tested with Go's clients: curl sends an upload from standard input only
// as it ends.)
func TestStreamCurl(t *testing.T) {
	t.Parallel()
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("no curl")
	}
	s := newStack(t, pgtest.NewDatabase(t))
	s.mustAs(s.NodeToken, http.StatusOK, "PUT", "/v1/nodes/node-9", map[string]any{})
	run := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(curl, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("curl %v: %v: %s", args, err, out)
		}
		return string(out)
	}
	h1 := run("-sS", "--http1.1", "-o", "/dev/null", "-w", "%{http_version} %{http_code}", "-H", "Authorization: Bearer "+s.NodeToken,
		s.Endpoint+"/v1/nodes/node-9/snapshot?wait=0s")
	if h1 != "1.1 200" {
		t.Errorf("curl --http1.1 poll: %q, want 1.1 200", h1)
	}
	h2 := run("-sS", "--http2-prior-knowledge", "-o", "/dev/null", "-w", "%{http_version} %{http_code}", s.Endpoint+"/healthz")
	if h2 != "2 200" {
		t.Errorf("curl --http2-prior-knowledge /healthz: %q, want 2 200", h2)
	}
}
