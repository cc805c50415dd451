package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oapi-codegen/nullable"

	"github.com/fulcrumlb/fulcrum/internal/testenv"
	"github.com/fulcrumlb/fulcrum/openapi"
)

// realAgent is an agent with a real HAProxy (no API) and an HTTP backend
// answering name for its members.
func realAgent(t *testing.T, ctx context.Context) *Agent {
	t.Helper()
	return realAgentOf(t, ctx, "http://127.0.0.1:1")
}

// realAgentOf is realAgent reporting to the API at endpoint.
func realAgentOf(t *testing.T, ctx context.Context, endpoint string) *Agent {
	t.Helper()
	bin := testenv.RequireHAProxy(t)
	a, err := New(Config{Endpoint: endpoint, Token: "t", NodeName: "node-1", StateDir: t.TempDir(), HAProxy: bin, HardStopAfter: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.startHAProxy(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.proc.Stop(context.Background()) })
	return a
}

func httpBackend(t *testing.T, name string) int {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, name) }))
	t.Cleanup(s.Close)
	return s.Listener.Addr().(*net.TCPAddr).Port
}

// connect opens n connections to port, one request each, each closed
// before the next.
func connect(t *testing.T, port, n int) {
	t.Helper()
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	for range n {
		res, err := client.Get(fmt.Sprintf("http://127.0.0.1:%d/", port))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
	}
}

// With a real HAProxy: before a reload the agent reads the counters of the
// load balancers whose frontends moved only, and the counters stay exact
// across reloads, including one the agent did not make (a hand reload, as
// `make bench-scale`'s bare measure does) before the next apply: what the
// worker replaced had counted is kept once, what the new one counts is
// added, and a load balancer without traffic since keeps its count.
func TestRealCountersExactAcrossOutOfBandReload(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	a := realAgent(t, ctx)
	backend := httpBackend(t, "x")
	ports := freePorts(t, 3)
	lb := func(name string, port int) openapi.SnapshotLoadBalancer {
		m := member("mbr_"+name, "127.0.0.1", 1)
		m.Port = backend
		sl := lbPool("lb_"+name, "127.0.0.1", m)
		sl.Listeners[0].Port = port
		return sl
	}
	lbA, lbB, lbC := lb("a", ports[0]), lb("b", ports[1]), lb("c", ports[2])
	if err := a.Apply(ctx, snapshot(1, lbA, lbB)); err != nil {
		t.Fatal(err)
	}
	// counts reads every counter, as a full report does.
	counts := func() map[string]int64 {
		t.Helper()
		proxies, servers, err := a.runtime.Stats(ctx)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]int64{}
		for _, st := range a.lbStats(ctx, proxies, servers, a.live) {
			out[st.LoadBalancerId] = statVal(st.Fields().ConnectionsTotal)
			for _, p := range deref(st.Pools) {
				out[p.Id] = statVal(p.Fields().ConnectionsTotal)
				for _, m := range deref(p.Members) {
					out[m.Id] = statVal(m.Fields().ConnectionsTotal)
				}
			}
		}
		return out
	}
	// sample is what a reload does first; it waits for the connections
	// made to end (a frontend with sessions is always read).
	sample := func(want int) {
		t.Helper()
		got := 0
		for i := 0; i < 100; i++ {
			if got = a.sampleStats(ctx, a.live); got == want {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Fatalf("the sample before a reload read %d load balancers, want %d (-1: all)", got, want)
	}

	connect(t, ports[0], 3)
	connect(t, ports[1], 2)
	if got := counts(); got["lb_a"] != 3 || got["lb_b"] != 2 {
		t.Fatalf("first read: %v", got)
	}
	sample(0) // nothing moved since

	connect(t, ports[1], 2) // same worker, one load balancer moved
	sample(1)
	sample(0)

	// A reload the agent did not make: the new worker counts from zero.
	if err := a.proc.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	sample(0) // nothing went through the new worker: nothing to read
	connect(t, ports[0], 4)
	sample(1) // lb_a only
	sample(0)

	// The agent's own reload (a new load balancer), then traffic through
	// the newest worker.
	if err := a.Apply(ctx, snapshot(2, lbA, lbB, lbC)); err != nil {
		t.Fatal(err)
	}
	connect(t, ports[0], 1)
	connect(t, ports[2], 1)
	want := map[string]int64{"lb_a": 8, "pool_a": 8, "mbr_a": 8, "lb_b": 4, "pool_b": 4, "mbr_b": 4, "lb_c": 1, "pool_c": 1, "mbr_c": 1}
	got := counts()
	for id, n := range want {
		if got[id] != n {
			t.Errorf("%s: %d connections, want %d (all: %v)", id, got[id], n, got)
		}
	}
}

// With a real HAProxy: a reload carries the health of members whose pool
// has health checks (a member found down is down in the new worker at
// once), and the server-state file lists no server of a pool without
// checks (its state is the configuration's).
func TestRealReloadCarriesCheckedHealthOnly(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	a := realAgent(t, ctx)
	backend := httpBackend(t, "x")
	ports := freePorts(t, 4) // the last: nothing listens there
	up := member("mbr_up", "127.0.0.1", 1)
	up.Port = backend
	down := member("mbr_down", "127.0.0.1", 1)
	down.Port = ports[3]
	checked := lbPool("lb_checked", "127.0.0.1", up, down)
	checked.Listeners[0].Port = ports[0]
	interval, fall, rise := 300, 3, 1
	checked.Pools[0].HealthMonitor = nullable.NewNullableWithValue(openapi.HealthMonitor{Type: "tcp", IntervalMs: &interval, Fall: &fall, Rise: &rise})
	plainM := member("mbr_plain", "127.0.0.1", 1)
	plainM.Port = backend
	plain := lbPool("lb_plain", "127.0.0.1", plainM)
	plain.Listeners[0].Port = ports[1]
	if err := a.Apply(ctx, snapshot(1, checked, plain)); err != nil {
		t.Fatal(err)
	}
	status := func(server string) string {
		_, servers, err := a.runtime.StatsOf(ctx, "pool_checked")
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range servers {
			if s.Server == server {
				return s.Status
			}
		}
		return ""
	}
	deadline := time.Now().Add(30 * time.Second)
	for !strings.HasPrefix(status("mbr_down"), "DOWN") {
		if time.Now().After(deadline) {
			t.Fatalf("mbr_down not found down: %q", status("mbr_down"))
		}
		time.Sleep(100 * time.Millisecond)
	}
	// A reload that also makes the checks rare: a new worker starts a
	// server up, and would find it down again only at its first check.
	other := lbWith("lb_other", "127.0.0.1", ports[2])
	checked = clone(checked)
	interval = 60000
	checked.Pools[0].HealthMonitor = nullable.NewNullableWithValue(openapi.HealthMonitor{Type: "tcp", IntervalMs: &interval, Fall: &fall, Rise: &rise})
	if err := a.Apply(ctx, snapshot(2, checked, plain, other)); err != nil {
		t.Fatal(err)
	}
	if st := status("mbr_down"); !strings.HasPrefix(st, "DOWN") {
		t.Errorf("mbr_down right after the reload: %q, want DOWN (carried by the server-state file)", st)
	}
	if st := status("mbr_up"); !strings.HasPrefix(st, "UP") {
		t.Errorf("mbr_up after the reload: %q", st)
	}
	b, err := os.ReadFile(a.path("run/server-state"))
	if err != nil {
		t.Fatal(err)
	}
	file := string(b)
	if !strings.Contains(file, " pool_checked ") || !strings.Contains(file, "mbr_down") || strings.Contains(file, "pool_plain") || strings.Contains(file, "mbr_plain") {
		t.Errorf("server-state file should list pool_checked's servers only:\n%s", file)
	}
	connect(t, ports[1], 1) // the pool without checks serves
}

func TestServerStateJoinAndKeep(t *testing.T) {
	head := "1\n# be_id be_name srv_id srv_name srv_addr\n"
	a := head + "3 pool_a 1 mbr_1 127.0.0.1\n3 pool_a 2 mbr_2 127.0.0.1\n"
	b := head + "4 pool_b 1 mbr_3 127.0.0.1\n"
	want := head + "3 pool_a 1 mbr_1 127.0.0.1\n3 pool_a 2 mbr_2 127.0.0.1\n4 pool_b 1 mbr_3 127.0.0.1\n"
	if got := joinServerState([]string{a, b}); got != want {
		t.Errorf("joined:\n%s\nwant:\n%s", got, want)
	}
	if got := joinServerState(nil); got != "1\n" {
		t.Errorf("joined nothing: %q", got)
	}
	all := head + "3 pool_a 1 mbr_1 127.0.0.1\n4 pool_b 1 mbr_3 127.0.0.1\n5 pool_c 1 mbr_4 127.0.0.1\n"
	if got, want := keepServerState(all, []string{"pool_b"}), head+"4 pool_b 1 mbr_3 127.0.0.1\n"; got != want {
		t.Errorf("kept:\n%s\nwant:\n%s", got, want)
	}
}

// With a real HAProxy: the first heartbeat after a reload the agent did not
// make reads and sends the counters of the load balancers with traffic in
// the new worker only, and they add up (none doubled, none lost).
func TestRealHeartbeatAfterOutOfBandReload(t *testing.T) {
	api, last := reportSink(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	a := realAgent(t, ctx)
	b, err := New(Config{Endpoint: api.URL, Token: "t", NodeName: "node-1", StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	a.client = b.client // the stub API
	backend := httpBackend(t, "x")
	ports := freePorts(t, 3)
	var lbs []openapi.SnapshotLoadBalancer
	for i, name := range []string{"a", "b", "c"} {
		m := member("mbr_"+name, "127.0.0.1", 1)
		m.Port = backend
		sl := lbPool("lb_"+name, "127.0.0.1", m)
		sl.Listeners[0].Port = ports[i]
		lbs = append(lbs, sl)
	}
	if err := a.Apply(ctx, snapshot(1, lbs...)); err != nil {
		t.Fatal(err)
	}
	connect(t, ports[0], 2)
	connect(t, ports[1], 3)
	// The report after the apply (every member), then a heartbeat with
	// every load balancer's counters.
	if err := a.reportWith(ctx, false); err != nil {
		t.Fatal(err)
	}
	if err := a.reportWith(ctx, true); err != nil {
		t.Fatal(err)
	}
	if r := last(); r.Stats == nil || len(*r.Stats) != 3 {
		t.Fatalf("the heartbeat should carry every load balancer's counters: %+v", r.Stats)
	}
	fullAt := func() time.Time {
		a.quiet.mu.Lock()
		defer a.quiet.mu.Unlock()
		return a.quiet.fullAt
	}
	full := fullAt()
	if err := a.proc.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	connect(t, ports[0], 4)
	// Sessions end a little after the client has its answer: a frontend
	// with sessions is read, so wait for a heartbeat that reads one only.
	var got []openapi.LoadBalancerStats
	for i := 0; i < 100; i++ {
		if err := a.reportWith(ctx, true); err != nil {
			t.Fatal(err)
		}
		if r := last(); r.Stats != nil && len(*r.Stats) > 0 {
			got = *r.Stats
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if len(got) != 1 || got[0].LoadBalancerId != "lb_a" || statVal(got[0].Fields().ConnectionsTotal) != 6 {
		t.Fatalf("the heartbeat after the hand reload should carry lb_a only, with 2 + 4 connections: %+v", got)
	}
	if !fullAt().Equal(full) {
		t.Errorf("the heartbeats after the hand reload read every counter")
	}
	// Everything read again: lb_b kept its 3.
	proxies, servers, err := a.runtime.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range a.lbStats(ctx, proxies, servers, a.live) {
		want := map[string]int64{"lb_a": 6, "lb_b": 3, "lb_c": 0}[st.LoadBalancerId]
		if n := statVal(st.Fields().ConnectionsTotal); n != want {
			t.Errorf("%s: %d connections, want %d", st.LoadBalancerId, n, want)
		}
	}
}

// reportSink is an API that takes the node's reports (and answers 404 to
// anything else), closed when the test ends, and a function returning the
// last report it took (failing the test before the first).
func reportSink(t *testing.T) (*httptest.Server, func() openapi.NodeReport) {
	var mu sync.Mutex
	var reports []openapi.NodeReport
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/reports") {
			var b openapi.NodeReport
			_ = json.NewDecoder(r.Body).Decode(&b)
			mu.Lock()
			reports = append(reports, b)
			mu.Unlock()
			w.WriteHeader(http.StatusNoContent)
			return
		}
		http.NotFound(w, r)
	}))
	t.Cleanup(api.Close)
	return api, func() openapi.NodeReport {
		mu.Lock()
		defer mu.Unlock()
		if len(reports) == 0 {
			t.Fatal("no report")
		}
		return reports[len(reports)-1]
	}
}
