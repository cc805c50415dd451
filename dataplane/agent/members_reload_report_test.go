package agent

import (
	"context"
	"testing"
	"time"

	snapconv "github.com/fulcrumlb/fulcrum/dataplane/snapshot"
	"github.com/fulcrumlb/fulcrum/openapi"
)

// With a real HAProxy: the report right after an apply that reloaded (a new
// listener) reads the pools of the load balancer that changed, not the
// whole new worker (one runtime exchange, not the frontends' rows and the
// whole `show stat`: 3.3 MB at 1,000 load balancers, while the new worker
// takes its first requests); the next heartbeat reads the whole worker,
// resting or not; the one after it rests again.
func TestReloadReportScoped(t *testing.T) {
	api, last := reportSink(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	a := realAgentOf(t, ctx, api.URL)
	ports := freePorts(t, 3)
	lb := func(i int) openapi.SnapshotLoadBalancer {
		sl := lbPool("lb_"+itoa(i), "127.0.0.1", member("mbr_"+itoa(i), "127.0.0.1", 1))
		sl.Listeners[0].Port = ports[i]
		sl.Revision = int64(1 + i)
		return sl
	}
	snap := snapshot(2, lb(0), lb(1))
	snap.FormatVersion = snapconv.FormatDelta
	if err := a.Apply(ctx, snap); err != nil {
		t.Fatal(err)
	}
	a.quiet.mu.Lock()
	a.quiet.every = time.Hour // an idle node rests between its idle reads
	a.quiet.mu.Unlock()
	exchanges := func(f func() error) int64 {
		t.Helper()
		_, before, _ := a.runtime.Exchanges.Counts()
		if err := f(); err != nil {
			t.Fatal(err)
		}
		_, after, _ := a.runtime.Exchanges.Counts()
		return after - before
	}
	report := func() error { return a.reportWith(ctx, false) }
	heartbeat := func() error { return a.reportWith(ctx, true) }
	exchanges(report)         // the first: every member
	for i := 0; i < 40; i++ { // until a heartbeat rests (the node is idle)
		if exchanges(heartbeat) == 0 {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	if n := exchanges(heartbeat); n != 0 {
		t.Fatalf("an idle node's heartbeat made %d runtime exchanges, want none", n)
	}
	worker, _ := a.workerPid(ctx)

	next := snapshot(3, lb(0), lb(1), lb(2)) // a new listener: a reload
	next.FormatVersion = snapconv.FormatDelta
	if err := a.Apply(ctx, next); err != nil {
		t.Fatal(err)
	}
	if w, _ := a.workerPid(ctx); w == worker {
		t.Fatal("the new listener did not reload HAProxy")
	}
	if n := exchanges(report); n != 1 {
		t.Fatalf("the report after the reload made %d runtime exchanges, want 1 (the new load balancer's pool)", n)
	}
	if r := last(); r.Stats != nil || r.Members == nil || len(*r.Members) != 1 || (*r.Members)[0].Id != "mbr_2" {
		t.Fatalf("the report after the reload: stats %v, members %+v; want mbr_2 alone", r.Stats, r.Members)
	}
	if n := exchanges(heartbeat); n < 2 {
		t.Fatalf("the heartbeat after the reload made %d runtime exchanges, want the whole worker read (frontends, then all)", n)
	}
	if n := exchanges(heartbeat); n > 1 {
		t.Fatalf("the heartbeat after that made %d runtime exchanges; the whole read is once", n)
	}
}
