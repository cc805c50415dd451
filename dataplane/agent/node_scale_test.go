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
	"slices"
	"testing"
	"time"

	"github.com/fulcrumlb/fulcrum/dataplane/haproxy"
	snapconv "github.com/fulcrumlb/fulcrum/dataplane/snapshot"
	"github.com/fulcrumlb/fulcrum/openapi"
)

// freePorts returns n distinct loopback ports free at the call: all are held
// open until every one is chosen (a port closed before the next is picked
// may be picked again, and two listeners on one port leave one load balancer
// out). Call it after the test's own listeners (backends) are open.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	ports := make([]int, n)
	for i := range ports {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		ports[i] = ln.Addr().(*net.TCPAddr).Port
	}
	return ports
}

// With a real HAProxy: member changes arriving as new revisions of one load
// balancer among several (the others unchanged, taken from the conversion
// cache) apply through the runtime API without a reload, traffic follows
// each at once, haproxy.cfg is what a fresh conversion and render of the
// whole snapshot gives, and snapshot.json holds the snapshot. Heartbeats of
// the idle node carry no counters or health; one after traffic does (at the
// next idle read).
func TestRealMemberChangesByRevisionAndQuietHeartbeats(t *testing.T) {
	api, lastReport := reportSink(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	a := realAgentOf(t, ctx, api.URL)
	backend := func(name string) int {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, name) }))
		t.Cleanup(s.Close)
		return s.Listener.Addr().(*net.TCPAddr).Port
	}
	withPort := func(m openapi.Member, port int) openapi.Member { m.Port = port; return m }
	probe := lbPool("lb_probe", "127.0.0.1", withPort(member("mbr_a", "127.0.0.1", 1), backend("a")), withPort(member("mbr_b", "127.0.0.1", 1), backend("b")))
	ports := freePorts(t, 6) // after the backends: none is theirs
	port := ports[0]
	probe.Listeners[0].Port = port
	probe.Revision = 1
	snap := snapshot(1, probe)
	snap.FormatVersion = snapconv.FormatDelta
	snap.Certificates = []openapi.SnapshotCertificate{}
	for i := range 5 {
		sl := lbPool("lb_other"+itoa(i), "127.0.0.1", member("mbr_o"+itoa(i), "127.0.0.1", 1))
		sl.Listeners[0].Port = ports[1+i]
		sl.Revision = 1
		snap.LoadBalancers = append(snap.LoadBalancers, sl)
	}
	if err := a.Apply(ctx, snap); err != nil {
		t.Fatal(err)
	}
	worker, err := a.workerPid(ctx)
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	seen := func(n int) map[string]int {
		out := map[string]int{}
		for range n {
			res, err := client.Get(fmt.Sprintf("http://127.0.0.1:%d/", port))
			if err != nil {
				out["error"]++
				continue
			}
			b, _ := io.ReadAll(res.Body)
			res.Body.Close()
			out[string(b)]++
		}
		return out
	}
	if got := seen(6); got["a"] == 0 || got["b"] == 0 {
		t.Fatalf("round robin over a and b: %v", got)
	}
	if err := a.reportWith(ctx, false); err != nil {
		t.Fatal(err)
	}
	if r := lastReport(); r.Stats != nil || r.Members == nil || len(*r.Members) != 7 {
		t.Fatalf("the first report should carry every member and no counters (the next does): %+v", r)
	}
	if err := a.reportWith(ctx, true); err != nil {
		t.Fatal(err)
	}
	if r := lastReport(); r.Stats == nil || len(*r.Stats) != 6 || r.Members != nil {
		t.Fatalf("the next heartbeat should carry every load balancer's counters: %+v", r)
	}

	for rev := int64(2); rev <= 7; rev++ {
		enabled := rev%2 == 1
		next := *snap
		next.Revision = rev
		next.LoadBalancers = slices.Clone(snap.LoadBalancers)
		sl := clone(next.LoadBalancers[0])
		sl.Members[0].Enabled = enabled
		sl.Members[1].Weight = 1 + int(rev%2) // a weight change as well
		sl.Revision = rev
		next.LoadBalancers[0] = sl
		snap = &next
		if err := a.Apply(ctx, snap); err != nil {
			t.Fatal(err)
		}
		got := seen(6)
		if enabled && (got["a"] == 0 || got["b"] == 0) || !enabled && (got["a"] != 0 || got["b"] != 6) {
			t.Fatalf("revision %d (mbr_a enabled: %v): traffic %v", rev, enabled, got)
		}
		// The report after the apply reads the changed pool only: the
		// health of its members that changed, no counters.
		if err := a.reportWith(ctx, false); err != nil {
			t.Fatal(err)
		}
		wantStatus := openapi.NodeReportMembersStatusMaint
		if enabled {
			wantStatus = openapi.NodeReportMembersStatusNoMonitor
		}
		if r := lastReport(); r.Stats != nil || r.Members == nil || len(*r.Members) != 1 || (*r.Members)[0].Id != "mbr_a" || (*r.Members)[0].Status != wantStatus {
			t.Fatalf("revision %d: the report after the apply: stats %v, members %+v; want mbr_a %s only", rev, r.Stats, r.Members, wantStatus)
		}
		if w, _ := a.workerPid(ctx); w != worker {
			t.Fatalf("revision %d reloaded HAProxy (worker %s, was %s)", rev, w, worker)
		}
		fresh, err := snapconv.ToConfig(snap, a.live.Global, a.certFile)
		if err != nil {
			t.Fatal(err)
		}
		want, err := haproxy.Render(fresh)
		if err != nil {
			t.Fatal(err)
		}
		if got, _ := os.ReadFile(a.path("haproxy.cfg")); string(got) != string(want) {
			t.Fatalf("revision %d: haproxy.cfg is not a fresh render of the snapshot", rev)
		}
		st, err := a.loadState()
		if err != nil {
			t.Fatal(err)
		}
		gotSnap, _ := json.Marshal(st.Snapshot)
		var round openapi.Snapshot // as it decodes (null slices)
		raw, _ := json.Marshal(snap)
		_ = json.Unmarshal(raw, &round)
		wantSnap, _ := json.Marshal(&round)
		if string(gotSnap) != string(wantSnap) {
			t.Fatalf("revision %d: snapshot.json holds another snapshot:\n%s\nwant\n%s", rev, gotSnap, wantSnap)
		}
	}

	// Heartbeats: the traffic above makes the first carry counters; once
	// idle, none does; traffic makes the next carry them again.
	if err := a.reportWith(ctx, true); err != nil {
		t.Fatal(err)
	}
	if r := lastReport(); r.Stats == nil {
		t.Fatalf("the first heartbeat after traffic carries no counters: %+v", r)
	}
	waitQuiet := func() {
		t.Helper()
		// The frontends' session rates fall back to 0 within a second
		// (a loaded machine may take longer).
		quiet := false
		for i := 0; i < 80 && !quiet; i++ {
			time.Sleep(250 * time.Millisecond)
			if err := a.reportWith(ctx, true); err != nil {
				t.Fatal(err)
			}
			r := lastReport()
			quiet = r.Stats == nil && r.Members == nil && r.Revision == snap.Revision
		}
		if !quiet {
			t.Fatalf("heartbeats 20 s after the traffic still read the counters: %+v", lastReport())
		}
	}
	setIdleRead := func(d time.Duration) {
		a.quiet.mu.Lock()
		a.quiet.every = d
		a.quiet.mu.Unlock()
	}
	setIdleRead(time.Hour)
	waitQuiet()
	seen(3)
	// Once a read found the node idle, heartbeats read nothing until the
	// next idle read is due: the traffic waits for it.
	if err := a.reportWith(ctx, true); err != nil {
		t.Fatal(err)
	}
	if r := lastReport(); r.Stats != nil {
		t.Fatalf("a heartbeat before the idle read is due read the counters: %+v", r.Stats)
	}
	setIdleRead(time.Millisecond)
	time.Sleep(5 * time.Millisecond)
	if err := a.reportWith(ctx, true); err != nil {
		t.Fatal(err)
	}
	r := lastReport()
	if r.Stats == nil || len(*r.Stats) != 1 || (*r.Stats)[0].LoadBalancerId != "lb_probe" {
		t.Fatalf("a heartbeat after traffic through lb_probe should carry its counters only (its rows read alone): %+v", r.Stats)
	}
	if got := deref((*r.Stats)[0].ConnectionsTotal); got < 3 {
		t.Fatalf("lb_probe's counters after traffic: %d connections", got)
	}
	waitQuiet()
}

// TestFreePortsDistinct: the ports freePorts gives are distinct and none is
// one a listener of the test holds (two load balancers given one port, or a
// port a backend holds, leave one out: the node-scale test's flake).
func TestFreePortsDistinct(t *testing.T) {
	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	seen := map[int]bool{held.Addr().(*net.TCPAddr).Port: true}
	for range 5 {
		for _, p := range freePorts(t, 20) {
			if seen[p] {
				t.Fatalf("port %d given twice", p)
			}
			seen[p] = true
		}
		clear(seen)
		seen[held.Addr().(*net.TCPAddr).Port] = true
	}
}
