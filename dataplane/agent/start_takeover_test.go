package agent

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/fulcrumlb/fulcrum/dataplane/haproxy"
	"github.com/fulcrumlb/fulcrum/internal/testenv"
	"github.com/fulcrumlb/fulcrum/openapi"
)

// With a real HAProxy: an agent that dies after a change reached HAProxy (a
// new listener, a reload) but before snapshot.json took it leaves HAProxy
// serving more than the state on disk. The next start takes it over as it
// runs — the new listener keeps answering, even before the API is reached —
// and its first apply reloads it onto the snapshot, though nothing changed
// from what it serves. When snapshot.json was written after haproxy.cfg, a
// difference is only how an older agent rendered it (an upgrade): the start
// reloads onto the state on disk, as always.
func TestRealRestartKeepsWhatHAProxyRuns(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	a := realAgent(t, ctx)
	a.mu.Lock()
	a.persistAsync = true // as under Run; no persistLoop: snapshot.json is written by flushState only
	a.mu.Unlock()
	backend := httpBackend(t, "x")
	ports := freePorts(t, 2)
	lb := func(i int) openapi.SnapshotLoadBalancer {
		m := member(fmt.Sprintf("mbr_%d", i), "127.0.0.1", 1)
		m.Port = backend
		sl := lbPool(fmt.Sprintf("lb_%d", i), "127.0.0.1", m)
		sl.Listeners[0].Port = ports[i]
		return sl
	}
	v1, v2 := snapshot(1, lb(0)), snapshot(2, lb(0), lb(1))
	if err := a.Apply(ctx, v1); err != nil {
		t.Fatal(err)
	}
	a.flushState()
	if err := a.Apply(ctx, v2); err != nil {
		t.Fatal(err)
	}
	connect(t, ports[1], 1)
	a.proc.Release() // the crash: HAProxy left running, snapshot.json at revision 1
	want, err := haproxy.Render(*a.live)
	if err != nil {
		t.Fatal(err)
	}

	restart := func() *Agent {
		t.Helper()
		b, err := New(Config{Endpoint: "http://127.0.0.1:1", Token: "t", NodeName: "node-1", StateDir: a.cfg.StateDir,
			HAProxy: testenv.RequireHAProxy(t), HardStopAfter: 2 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		if err := b.startHAProxy(ctx); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { b.proc.Stop(context.Background()) })
		return b
	}
	b := restart()
	connect(t, ports[0], 1)
	connect(t, ports[1], 1) // the listener snapshot.json does not hold yet
	if b.snap.Revision != 1 || !b.liveUnsure {
		t.Fatalf("restarted on revision %d, liveUnsure %v; want 1 and HAProxy left as it runs", b.snap.Revision, b.liveUnsure)
	}
	if onFile, _ := os.ReadFile(b.path("haproxy.cfg")); !bytes.Equal(onFile, want) {
		t.Fatal("haproxy.cfg, what HAProxy runs, was replaced at the start")
	}
	ws, err := b.proc.Workers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Apply(ctx, v2); err != nil {
		t.Fatal(err)
	}
	after, err := b.proc.Workers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if b.liveUnsure || len(after) == 0 || len(ws) == 0 || after[0].PID == ws[0].PID {
		t.Fatalf("the first apply did not reload (liveUnsure %v, workers %v then %v)", b.liveUnsure, ws, after)
	}
	got, err := haproxy.Render(*b.live)
	if err != nil {
		t.Fatal(err)
	}
	if onFile, _ := os.ReadFile(b.path("haproxy.cfg")); !bytes.Equal(got, want) || !bytes.Equal(onFile, want) {
		t.Fatalf("after the first apply the node serves\n%s\nwant\n%s", got, want)
	}
	connect(t, ports[0], 1)
	connect(t, ports[1], 1)

	// snapshot.json written after haproxy.cfg, which another render left:
	// the start reloads onto the state on disk.
	b.flushState()
	b.proc.Release()
	older := append(bytes.Clone(want), "# rendered by an older agent\n"...)
	if err := os.WriteFile(b.path("haproxy.cfg"), older, 0o600); err != nil {
		t.Fatal(err)
	}
	past := time.Now().Add(-time.Minute)
	if err := os.Chtimes(b.path("haproxy.cfg"), past, past); err != nil {
		t.Fatal(err)
	}
	c := restart()
	if c.snap.Revision != 2 || c.liveUnsure {
		t.Fatalf("restarted on revision %d, liveUnsure %v; want 2, reloaded onto it", c.snap.Revision, c.liveUnsure)
	}
	if onFile, _ := os.ReadFile(c.path("haproxy.cfg")); !bytes.Equal(onFile, want) {
		t.Fatal("haproxy.cfg not rendered anew from snapshot.json at the start")
	}
	connect(t, ports[0], 1)
	connect(t, ports[1], 1)
}
