package agent

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/fulcrumlb/fulcrum/dataplane/haproxy"
	"github.com/fulcrumlb/fulcrum/openapi"
)

// With a real HAProxy: a whole read in pieces (readWhole) gives what the
// report makes of one whole `show stat` — every member's health in the same
// order, every listener's, pool's and member's counters — in exchanges of
// at most wholeReadRows rows; a load balancer without listeners (no proxy
// in HAProxy) is left out as the whole read leaves it out.
func TestWholeReadInPiecesMatchesStats(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	a := realAgent(t, ctx)
	backend := httpBackend(t, "m")
	const lbs = 25 // of 4 members: 6 rows each, 10 load balancers a piece
	ports := freePorts(t, lbs)
	var sls []openapi.SnapshotLoadBalancer
	for i := range lbs {
		var ms []openapi.Member
		for j := range 4 {
			m := member("mbr_"+itoa(i)+"_"+itoa(j), "127.0.0.1", 1)
			m.Port = backend
			ms = append(ms, m)
		}
		sl := lbPool("lb_"+itoa(i), "127.0.0.1", ms...)
		sl.Listeners[0].Port = ports[i]
		if i == 7 {
			sl.Listeners = nil // parked: its pool is no backend of HAProxy
		}
		sls = append(sls, sl)
	}
	if err := a.Apply(ctx, snapshot(2, sls...)); err != nil {
		t.Fatal(err)
	}
	connect(t, ports[3], 3)
	connect(t, ports[20], 2)
	a.mu.Lock()
	live := a.live
	a.mu.Unlock()

	_, before, _ := a.runtime.Exchanges.Counts()
	proxies, servers, err := a.readWhole(ctx, live, pause(time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	_, after, _ := a.runtime.Exchanges.Counts()
	wantP, wantS, err := a.runtime.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// 150 rows in pieces of at most 60: 3 exchanges, and `show info`
	// before and after (the worker must be the same).
	if n := after - before; n != 3+2 {
		t.Errorf("the whole read made %d runtime exchanges, want 5", n)
	}
	objs := statObjects(live)
	if got, want := memberRows(servers), memberRows(wantS); len(got) != (lbs-1)*4 || !reflect.DeepEqual(got, want) {
		t.Errorf("members' health: %d read in pieces, %d whole; differ: %v", len(got), len(want), !reflect.DeepEqual(got, want))
	}
	got, want := readings(proxies, servers, objs), readings(wantP, wantS, objs)
	if len(got) != (lbs-1)*(2+4) || !reflect.DeepEqual(got, want) {
		t.Errorf("counters: %d objects read in pieces, %d whole:\n%v\n%v", len(got), len(want), got, want)
	}
	if r := got[sls[3].Listeners[0].Id]; r.Connections != 3 {
		t.Errorf("lb_3's listener read in pieces: %+v, want 3 connections", r)
	}
}

// A whole read whose worker changed meanwhile (a reload) is refused: its
// pieces would mix two workers' counters.
func TestWholeReadRefusesAnotherWorker(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	a := realAgent(t, ctx)
	ports := freePorts(t, 2)
	var sls []openapi.SnapshotLoadBalancer
	for i := range 2 {
		sl := lbPool("lb_"+itoa(i), "127.0.0.1", member("mbr_"+itoa(i), "127.0.0.1", 1))
		sl.Listeners[0].Port = ports[i]
		sls = append(sls, sl)
	}
	if err := a.Apply(ctx, snapshot(2, sls...)); err != nil {
		t.Fatal(err)
	}
	a.mu.Lock()
	live := &haproxy.Config{Global: a.live.Global}
	for range wholeReadRows { // more than one piece
		live.LoadBalancers = append(live.LoadBalancers, a.live.LoadBalancers...)
	}
	a.mu.Unlock()
	reloaded := false
	reload := func(ctx context.Context) error { // between the first two pieces
		if !reloaded {
			reloaded = true
			return a.proc.Reload(ctx)
		}
		return nil
	}
	if _, _, err := a.readWhole(ctx, live, reload); !errors.Is(err, errWorkerChanged) {
		t.Fatalf("a whole read across a reload: %v, want errWorkerChanged", err)
	}
	if _, _, err := a.readWhole(ctx, live, nil); err != nil {
		t.Fatalf("the next whole read: %v", err)
	}
}
