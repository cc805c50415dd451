package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/fulcrumlb/fulcrum/dataplane/haproxy"
	"github.com/fulcrumlb/fulcrum/internal/testenv"
	"github.com/fulcrumlb/fulcrum/openapi"
)

// With a real HAProxy and the state written in the background as under Run
// (snapshot.json by persistLoop, stats.json by the stats writer): after a
// burst of applies, each a reload with traffic between them, both files
// reach the newest state and agree with what the agent holds; an apply
// finishes while a write of stats.json is stalled (the disk is not on its
// path); and an agent that dies right after an apply, before either file
// took it, restarts on the same state directory, serves what the files
// hold, converges on the snapshot the dead agent had applied (the same
// haproxy.cfg, every listener answering), and never counts a connection
// twice.
func TestRealBurstOfAppliesThenCrash(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	a := realAgent(t, ctx)
	backend := httpBackend(t, "x")
	const n = 6
	ports := freePorts(t, n+1)
	lb := func(i int) openapi.SnapshotLoadBalancer {
		m := member(fmt.Sprintf("mbr_%d", i), "127.0.0.1", 1)
		m.Port = backend
		sl := lbPool(fmt.Sprintf("lb_%d", i), "127.0.0.1", m)
		sl.Listeners[0].Port = ports[i]
		return sl
	}
	// The background writers, as Run starts them.
	wctx, stopWriters := context.WithCancel(ctx)
	var wg sync.WaitGroup
	a.mu.Lock()
	a.persistAsync = true
	a.mu.Unlock()
	wg.Add(2)
	go func() { defer wg.Done(); a.persistLoop(wctx) }()
	go func() { defer wg.Done(); a.stats.writeLoop(wctx) }()
	crash := func() { stopWriters(); wg.Wait() } // no flushState, no flushNow
	defer crash()

	made := map[string]int64{} // connections made per load balancer
	var lbs []openapi.SnapshotLoadBalancer
	for i := 0; i < n; i++ {
		lbs = append(lbs, lb(i))
		if i == n/2 {
			a.stats.writeMu.Lock() // the disk stalls for this apply
		}
		applied := make(chan error, 1)
		go func() { applied <- a.Apply(ctx, snapshot(int64(i+1), lbs...)) }()
		select {
		case err := <-applied:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(time.Minute):
			t.Fatal("an apply waited for the stalled write of stats.json")
		}
		if i == n/2 {
			a.stats.writeMu.Unlock()
		}
		for j := 0; j <= i; j++ {
			connect(t, ports[j], 1)
			made[fmt.Sprintf("lb_%d", j)]++
		}
	}

	// Both files reach the newest state.
	statsAgree := func() bool {
		b, err := os.ReadFile(a.path("stats.json"))
		if err != nil {
			return false
		}
		var f statsFile
		if json.Unmarshal(b, &f) != nil {
			return false
		}
		a.stats.mu.Lock()
		defer a.stats.mu.Unlock()
		if f.Worker != a.stats.Worker || len(f.Entries) != len(a.stats.Entries) || a.stats.pending {
			return false
		}
		for id, e := range a.stats.Entries {
			if fe, ok := f.Entries[id]; !ok || fe.Base != e.Base || fe.Last != e.Last {
				return false
			}
		}
		return true
	}
	onDisk := func(ag *Agent) int64 {
		ag.stateMu.Lock()
		defer ag.stateMu.Unlock()
		st, err := ag.loadState()
		if err != nil {
			return 0
		}
		return st.Snapshot.Revision
	}
	for start := time.Now(); onDisk(a) != n || !statsAgree(); time.Sleep(10 * time.Millisecond) {
		if time.Since(start) > 30*time.Second {
			t.Fatalf("after the burst: snapshot.json at revision %d (want %d), stats.json agrees with the agent: %v", onDisk(a), n, statsAgree())
		}
	}

	// One more load balancer, then the agent dies at once: neither file
	// holds that apply.
	lbs = append(lbs, lb(n))
	last := snapshot(n+1, lbs...)
	if err := a.Apply(ctx, last); err != nil {
		t.Fatal(err)
	}
	crash()
	want, err := haproxy.Render(*a.live)
	if err != nil {
		t.Fatal(err)
	}
	if rev := onDisk(a); rev != n {
		t.Fatalf("snapshot.json at revision %d after the crash, want %d (written only later)", rev, n)
	}
	before := loadStats(a.path("stats.json"))

	// The restart, on the HAProxy the dead agent left running.
	b, err := New(Config{Endpoint: "http://127.0.0.1:1", Token: "t", NodeName: "node-1", StateDir: a.cfg.StateDir,
		HAProxy: testenv.RequireHAProxy(t), HardStopAfter: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.startHAProxy(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.proc.Stop(context.Background()) })
	if b.snap == nil || b.snap.Revision != n {
		t.Fatalf("restarted on %v, want revision %d (snapshot.json)", b.snap, n)
	}
	if err := b.Apply(ctx, last); err != nil {
		t.Fatal(err)
	}
	got, err := haproxy.Render(*b.live)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("after the restart the node serves\n%s\nwant\n%s", got, want)
	}
	if onFile, _ := os.ReadFile(b.path("haproxy.cfg")); !bytes.Equal(onFile, want) {
		t.Fatal("haproxy.cfg on disk is not what runs after the restart")
	}
	for j := 0; j <= n; j++ {
		connect(t, ports[j], 1) // every listener answers
		made[fmt.Sprintf("lb_%d", j)]++
	}
	// Counters: never more than the connections made, never less than
	// stats.json held at the crash.
	proxies, servers, err := b.runtime.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range b.lbStats(ctx, proxies, servers, b.live) {
		id := st.LoadBalancerId
		total := statVal(st.Fields().ConnectionsTotal)
		var held int64
		for _, e := range before.Entries {
			if e.LoadBalancerID == id && e.Kind == kindListener {
				tot := e.total()
				held += tot.Connections
			}
		}
		if total > made[id] || total < held {
			t.Errorf("%s: %d connections counted after the restart; made %d, stats.json held %d", id, total, made[id], held)
		}
	}
	b.flushState()
	b.stats.flushNow()
	if rev := onDisk(b); rev != n+1 {
		t.Fatalf("the restarted agent's snapshot.json at revision %d, want %d", rev, n+1)
	}
}
