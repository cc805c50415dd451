package acceptance

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/fulcrumlb/fulcrum/dataplane/agent"
	"github.com/fulcrumlb/fulcrum/internal/pgtest"
	"github.com/fulcrumlb/fulcrum/internal/testenv"
	"github.com/fulcrumlb/fulcrum/internal/teststack"
)

// freeLoopbackPort is a TCP port of 127.0.0.1 free a moment ago.
func freeLoopbackPort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// runPeerAgent runs agent name against endpoint with HAProxy peers on peer
// until the test ends.
func runPeerAgent(t *testing.T, s *teststack.Stack, name, endpoint, peer string) *agent.Agent {
	t.Helper()
	ag, err := agent.New(agent.Config{Endpoint: endpoint, Token: s.NodeToken, NodeName: name, StateDir: t.TempDir(), PollWait: pollWait,
		ReportInterval: 300 * time.Millisecond, HardStopAfter: 5 * time.Second, Logger: teststack.Logger(), StopHAProxyOnExit: true, PeerAddress: peer})
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

// TestPeersFollowGroupMembership: node-1 (on a stream) and node-2 (on
// long-polls, behind a proxy that speaks HTTP/1.1 only) serve a group with
// HAProxy peers. A third node registers, and later is deleted, with no
// tenant write in between: both nodes' HAProxies take it into their peers
// section, then drop it (the group's revision counts its membership), and a
// member change after that still needs no reload.
func TestPeersFollowGroupMembership(t *testing.T) {
	t.Parallel()
	testenv.RequireHAProxy(t)
	peers := map[string]string{}
	for _, n := range []string{"node-1", "node-2", "node-3"} {
		peers[n] = fmt.Sprintf("127.0.0.1:%d", freeLoopbackPort(t))
	}
	s := startStack(t, teststack.Options{DatabaseURL: pgtest.NewDatabase(t), AgentConfig: func(c *agent.Config) { c.PeerAddress = peers[c.NodeName] }})
	target, err := url.Parse(s.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	h1 := httptest.NewServer(stripUpgrades(target)) // stream_test.go: HTTP/1.1 only, no upgrades: node-2 polls
	t.Cleanup(h1.Close)
	nodes := map[string]*agent.Agent{"node-1": s.StartAgent("node-1"), "node-2": runPeerAgent(t, s.Stack, "node-2", h1.URL, peers["node-2"])}
	a := teststack.StartBackend(t, "a")
	x := s.newLB(8341, nil, a)
	s.WaitActive("/v1/members/" + x.Members["a"])
	for name, ag := range nodes {
		s.waitApplied(name, ag)
	}
	peerLine := func(n string) string { return "peer " + n + " " + peers[n] }
	waitPeers := func(what string, want, unwanted []string) {
		t.Helper()
		start := time.Now()
		for name, ag := range nodes {
			teststack.WaitFor(t, name+"'s HAProxy peers after "+what, 20*time.Second, func() bool {
				cfg := renderedConfig(t, ag)
				for _, n := range want {
					if !strings.Contains(cfg, peerLine(n)) {
						return false
					}
				}
				for _, n := range unwanted {
					if strings.Contains(cfg, "peer "+n+" ") {
						return false
					}
				}
				return true
			})
		}
		t.Logf("%s reached node-1 (stream) and node-2 (polls) in %s", what, time.Since(start).Round(time.Millisecond))
	}
	waitPeers("the start", []string{"node-1", "node-2"}, []string{"node-3"})
	if opened, _ := nodes["node-1"].Streams(); opened == 0 {
		t.Errorf("node-1 opened no stream")
	}
	if opened, _ := nodes["node-2"].Streams(); opened != 0 {
		t.Errorf("node-2 opened a stream through an HTTP/1.1 proxy")
	}

	// A replacement node joins: nobody writes anything else.
	s.StartAgent("node-3")
	waitPeers("node-3's registration", []string{"node-1", "node-2", "node-3"}, nil)
	// HAProxy runs it: node-1's worker lists node-3 among its peers.
	teststack.WaitFor(t, "node-1's HAProxy to run node-3 as a peer", 20*time.Second, func() bool {
		out, err := nodes["node-1"].Runtime().Command(context.Background(), "show peers")
		return err == nil && strings.Contains(out, "node-3")
	})

	// A member change with the same peers: the runtime API, no reload.
	workers := func(ag *agent.Agent) string {
		var cur []string
		// The master's socket is briefly away while it reloads.
		teststack.WaitFor(t, "HAProxy's master to list its workers", 10*time.Second, func() bool {
			ws, err := ag.Process().Workers(context.Background())
			cur = nil
			for _, w := range ws {
				if !w.Old {
					cur = append(cur, fmt.Sprint(w.PID))
				}
			}
			return err == nil
		})
		return strings.Join(cur, ",")
	}
	before := map[string]string{"node-1": workers(nodes["node-1"]), "node-2": workers(nodes["node-2"])}
	s.MustCall(http.StatusOK, "PATCH", "/v1/members/"+x.Members["a"], map[string]any{"weight": 7})
	s.WaitActive("/v1/members/" + x.Members["a"])
	for name, ag := range nodes {
		s.waitApplied(name, ag)
		if got := workers(ag); got != before[name] {
			t.Errorf("%s reloaded HAProxy for a member's weight (workers %s, then %s)", name, before[name], got)
		}
	}

	// It is deregistered: both nodes drop it.
	s.StopAgent("node-3")
	for name, ag := range nodes {
		if !strings.Contains(renderedConfig(t, ag), peerLine("node-3")) {
			t.Fatalf("%s dropped node-3 before its deletion", name)
		}
	}
	if code, body := s.CallAs(s.AdminToken, http.MethodDelete, "/v1/nodes/node-3", nil); code != http.StatusNoContent {
		t.Fatalf("delete node-3: %d %v", code, body)
	}
	waitPeers("node-3's deletion", []string{"node-1", "node-2"}, []string{"node-3"})
	if got := distribution(t, teststack.NewClient(nil), x.URL, 4); got["a"] != 4 {
		t.Fatalf("x after the peers changed: %v", got)
	}
}
