package agent

import (
	"context"
	"encoding/json"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fulcrumlb/fulcrum/dataplane/haproxy"
	"github.com/fulcrumlb/fulcrum/openapi"
)

// A load balancer, its pool and members without a listener serve no
// traffic: they change nothing in HAProxy (no check, no reload, no runtime
// call), the revision is still applied, and the members read no_monitor.
// Its listener then brings all of it in with exactly one reload.
func TestApplyLoadBalancerWithoutListenerNeedsNoReload(t *testing.T) {
	a, f, c := unitAgent(t)
	ctx := context.Background()
	other := lbPool("lb_b", "127.0.0.3", member("mbr_b1", "10.0.0.5", 1))
	if err := a.Apply(ctx, snapshot(1, other)); err != nil {
		t.Fatal(err)
	}
	f.runtime.take()
	r0, _, c0 := counts(f, c)
	cfg0, _ := os.ReadFile(a.path("haproxy.cfg"))

	full := lbPool("lb_a", "127.0.0.2", member("mbr_1", "10.0.0.1", 1), member("mbr_2", "10.0.0.2", 1))
	bare := clone(full)
	bare.Listeners = nil
	steps := []openapi.SnapshotLoadBalancer{
		{LoadBalancer: full.LoadBalancer},                                               // the load balancer
		{LoadBalancer: full.LoadBalancer, Pools: full.Pools},                            // its pool
		{LoadBalancer: full.LoadBalancer, Pools: full.Pools, Members: full.Members[:1]}, // a member
		bare, // another member
	}
	for i, sl := range steps {
		rev := int64(2 + i)
		if err := a.Apply(ctx, snapshot(rev, other, sl)); err != nil {
			t.Fatal(err)
		}
		if r, _, ch := counts(f, c); r != r0 || ch != c0 {
			t.Fatalf("step %d: %d reloads, %d checks; want none", i, r-r0, ch-c0)
		}
		if calls := f.runtime.take(); len(calls) != 0 {
			t.Fatalf("step %d: runtime calls %q", i, calls)
		}
		if a.AppliedRevision() != rev || len(a.lbErrors) != 0 {
			t.Fatalf("step %d: revision %d, errors %v", i, a.AppliedRevision(), a.lbErrors)
		}
		if got, _ := os.ReadFile(a.path("haproxy.cfg")); string(got) != string(cfg0) {
			t.Fatalf("step %d: haproxy.cfg changed:\n%s", i, got)
		}
	}
	if !slices.Equal(served(a), []string{"lb_b"}) {
		t.Fatalf("served %v, want lb_b alone", served(a))
	}
	parked := []parkedMember{{"mbr_1", openapi.NodeReportMembersStatusNoMonitor}, {"mbr_2", openapi.NodeReportMembersStatusNoMonitor}}
	if got := a.parked; !slices.Equal(got, parked) {
		t.Fatalf("parked members %v", got)
	}

	// The listener: one checked reload with all of it.
	if err := a.Apply(ctx, snapshot(10, other, full)); err != nil {
		t.Fatal(err)
	}
	if r, _, ch := counts(f, c); r-r0 != 1 || ch == c0 {
		t.Fatalf("listener: %d reloads, %d checks; want one checked reload", r-r0, ch-c0)
	}
	if !slices.Equal(served(a), []string{"lb_a", "lb_b"}) || len(a.parked) != 0 {
		t.Fatalf("served %v, parked %v", served(a), a.parked)
	}
	if m := liveMember(t, a, "mbr_2"); m.Address != "10.0.0.2" {
		t.Fatalf("served %+v", m)
	}
	want, _ := haproxy.Render(*a.live)
	if got, _ := os.ReadFile(a.path("haproxy.cfg")); string(got) != string(want) || !strings.Contains(string(got), "server mbr_2 ") {
		t.Fatalf("haproxy.cfg is not what runs:\n%s", got)
	}

	// Its last listener deleted: out again, with one reload.
	if err := a.Apply(ctx, snapshot(11, other, bare)); err != nil {
		t.Fatal(err)
	}
	if r, _, _ := counts(f, c); r-r0 != 2 {
		t.Fatalf("listener deleted: %d reloads in all, want 2", r-r0)
	}
	if !slices.Equal(served(a), []string{"lb_b"}) || !slices.Equal(a.parked, parked) {
		t.Fatalf("served %v, parked %v", served(a), a.parked)
	}
}

// manyLBs is a snapshot of n load balancers of one listener and one pool of
// members members each.
func manyLBs(rev int64, n, members int) *openapi.Snapshot {
	snap := snapshot(rev)
	for i := range n {
		id := "lb_" + itoa(i)
		var ms []openapi.Member
		for j := range members {
			ms = append(ms, member("mbr_"+itoa(i)+"m"+itoa(j), "10.1."+itoa(i%250)+"."+itoa(j+1), 1))
		}
		snap.LoadBalancers = append(snap.LoadBalancers, lbPool(id, "127.1."+itoa(i/250)+"."+itoa(i%250+1), ms...))
	}
	return snap
}

// BenchmarkApplyMemberChange measures Apply of a one-member weight change
// with 1,000 load balancers of 10 members on the node (HAProxy faked).
func BenchmarkApplyMemberChange(b *testing.B) {
	t := &testing.T{}
	a, f, _ := unitAgent(t)
	ctx := context.Background()
	snap := manyLBs(1, 1000, 10)
	for i := range snap.LoadBalancers {
		snap.LoadBalancers[i].Revision = 1 // as format 2 snapshots carry them
	}
	if err := a.Apply(ctx, snap); err != nil {
		b.Fatal(err)
	}
	tr := &timedRuntime{runtimeAPI: a.changes}
	a.changes = tr
	rev := int64(1)
	var toRuntime time.Duration
	for b.Loop() {
		rev++
		next := *snap
		next.Revision = rev
		next.LoadBalancers = slices.Clone(snap.LoadBalancers)
		sl := clone(next.LoadBalancers[500])
		sl.Members[0].Weight = int(rev % 2)
		sl.Revision = rev
		next.LoadBalancers[500] = sl
		// Fresh values, as decoding a snapshot gives.
		raw, _ := json.Marshal(&next)
		var fresh openapi.Snapshot
		if err := json.Unmarshal(raw, &fresh); err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		if err := a.Apply(ctx, &fresh); err != nil {
			b.Fatal(err)
		}
		toRuntime += tr.last.Sub(start)
	}
	b.ReportMetric(float64(toRuntime.Microseconds())/1000/float64(b.N), "ms-to-runtime/op")
	if f.reloads != 1 {
		b.Fatalf("%d reloads", f.reloads)
	}
}

// timedRuntime notes when the last weight change was made.
type timedRuntime struct {
	runtimeAPI
	last time.Time
}

func (r *timedRuntime) SetWeight(ctx context.Context, backend, server string, weight int) error {
	r.last = time.Now()
	return r.runtimeAPI.SetWeight(ctx, backend, server, weight)
}

// gateReloader holds reloads until released.
type gateReloader struct {
	reloader
	entered chan struct{}
	release chan struct{}
}

func (g *gateReloader) Reload(ctx context.Context) error {
	g.entered <- struct{}{}
	<-g.release
	return g.reloader.Reload(ctx)
}

// Snapshots that arrive while an apply runs (here: stuck in its reload)
// become one apply of the newest: one more reload, not one per snapshot.
func TestApplyCoalescesQueuedSnapshots(t *testing.T) {
	a, f, _ := unitAgent(t)
	ctx := context.Background()
	g := &gateReloader{reloader: f, entered: make(chan struct{}, 8), release: make(chan struct{})}
	a.reloader = g
	lb := func(ports ...int) openapi.SnapshotLoadBalancer { return lbWith("lb_a", "127.0.0.2", ports...) }

	errs := make(chan error, 4)
	go func() { errs <- a.Apply(ctx, snapshot(2, lb(80))) }()
	<-g.entered // the first apply is reloading
	for rev := int64(3); rev <= 5; rev++ {
		ports := []int{80}
		for p := 81; p < 81+int(rev)-2; p++ {
			ports = append(ports, p)
		}
		go func() { errs <- a.Apply(ctx, snapshot(rev, lb(ports...))) }()
		for a.newest.Load().Revision != rev { // queued behind the running apply
			time.Sleep(time.Millisecond)
		}
	}
	close(g.release)
	for range 4 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if len(g.entered) != 1 {
		t.Fatalf("%d reloads after the first, want 1 (revisions 3–5 at once)", len(g.entered))
	}
	if a.AppliedRevision() != 5 || len(a.live.LoadBalancers[0].Listeners) != 4 {
		t.Fatalf("applied revision %d with %d listeners; want 5 with 4", a.AppliedRevision(), len(a.live.LoadBalancers[0].Listeners))
	}
}
