package agent

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/fulcrumlb/fulcrum/dataplane/haproxy"
)

// With snapshot.json written after the apply (as while Run runs), an agent
// that dies after a member change went live through the runtime API but
// before the state was written restarts on the previous state and, applying
// the snapshot again (what its first poll after that revision brings),
// serves exactly what the first agent served: the same configuration and,
// once written, the same snapshot.json byte for byte. Writes coalesce: two
// applies before the writer runs are one write of the newest state.
func TestCrashBetweenRuntimeApplyAndStateWrite(t *testing.T) {
	ctx := context.Background()
	a, f := testAgent(t, "")
	a.persistAsync = true // as Run sets it; no persistLoop runs: nothing is written until flushState
	lb := lbPool("lb_a", "127.0.0.2", member("mbr_1", "10.0.0.1", 1), member("mbr_2", "10.0.0.2", 1))
	other := lbPool("lb_b", "127.0.0.3", member("mbr_3", "10.0.0.3", 1))
	v1 := snapshot(1, lb, other)
	if err := a.Apply(ctx, v1); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(a.path("snapshot.json")); !os.IsNotExist(err) {
		t.Fatalf("snapshot.json written by the apply itself: %v", err)
	}
	a.flushState()
	onDisk, err := os.ReadFile(a.path("snapshot.json"))
	if err != nil {
		t.Fatal(err)
	}

	// Revision 2 disables a member, revision 3 re-weights another: runtime
	// changes, no reload; the writer has not run (the crash comes first).
	sl := clone(lb)
	sl.Members[0].Enabled = false
	v2 := snapshot(2, sl, other)
	if err := a.Apply(ctx, v2); err != nil {
		t.Fatal(err)
	}
	sl = clone(sl)
	sl.Members[1].Weight = 7
	v3 := snapshot(3, sl, other)
	if err := a.Apply(ctx, v3); err != nil {
		t.Fatal(err)
	}
	if f.reloads != 1 {
		t.Fatalf("%d reloads, want 1 (the first apply's)", f.reloads)
	}
	if got, _ := os.ReadFile(a.path("snapshot.json")); string(got) != string(onDisk) {
		t.Fatal("snapshot.json changed before the writer ran")
	}
	want, err := haproxy.Render(*a.live)
	if err != nil {
		t.Fatal(err)
	}

	// The restart: revision 1 from disk, then revision 3 again.
	b, err := New(Config{Endpoint: "http://127.0.0.1:1", Token: "t", NodeName: "node-1", StateDir: a.cfg.StateDir})
	if err != nil {
		t.Fatal(err)
	}
	fb := &fakeHAProxy{path: b.path("haproxy.cfg"), fails: map[string]func() error{}, runtime: &fakeRuntime{}}
	b.reloader, b.checker, b.changes, b.binder = fb, a.checker, fb.runtime, a.binder
	cfg := b.restore()
	if b.snap.Revision != 1 {
		t.Fatalf("restored revision %d, want 1 (the state written)", b.snap.Revision)
	}
	b.live = &cfg
	if err := b.Apply(ctx, v3); err != nil {
		t.Fatal(err)
	}
	got, err := haproxy.Render(*b.live)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(want) {
		t.Fatalf("after the restart the node serves\n%s\nwant\n%s", got, want)
	}
	if m := liveMember(t, b, "mbr_1"); m.Enabled {
		t.Fatal("mbr_1 enabled after the restart")
	}
	if written, _ := os.ReadFile(b.path("haproxy.cfg")); string(written) != string(want) {
		t.Fatal("haproxy.cfg on disk is not what runs after the restart")
	}

	// One write of the newest state, byte for byte what the restarted
	// agent wrote (in the same directory, at its apply).
	restarted, err := os.ReadFile(b.path("snapshot.json"))
	if err != nil {
		t.Fatal(err)
	}
	a.flushState()
	first, _ := os.ReadFile(a.path("snapshot.json"))
	if st, err := a.loadState(); err != nil || st.Snapshot.Revision != 3 {
		t.Fatalf("snapshot.json after the write: %v, %v; want revision 3", st, err)
	}
	if string(first) != string(restarted) {
		t.Fatal("the first agent's snapshot.json differs from the restarted agent's")
	}
	if err := os.Remove(a.path("snapshot.json")); err != nil {
		t.Fatal(err)
	}
	a.flushState() // nothing changed since: nothing written
	if _, err := os.Stat(a.path("snapshot.json")); !os.IsNotExist(err) {
		t.Fatalf("snapshot.json written again without a change: %v", err)
	}
}

// While Run runs, snapshot.json is written stateWriteEvery after the state
// changed, not at the apply: the changes within that time are one write of
// the newest state, and none is lost.
func TestStateWritesSpaced(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a, _ := testAgent(t, "")
	a.persistAsync = true
	done := make(chan struct{})
	go func() { defer close(done); a.persistLoop(ctx) }()
	defer func() { cancel(); <-done }()
	lb := lbPool("lb_a", "127.0.0.2", member("mbr_1", "10.0.0.1", 1), member("mbr_2", "10.0.0.2", 1))
	onDisk := func() int64 {
		a.stateMu.Lock() // not half written
		defer a.stateMu.Unlock()
		st, err := a.loadState()
		if err != nil {
			return 0
		}
		return st.Snapshot.Revision
	}
	waitFor := func(rev int64, within time.Duration) {
		t.Helper()
		for start := time.Now(); time.Since(start) < within; time.Sleep(5 * time.Millisecond) {
			if onDisk() == rev {
				return
			}
		}
		t.Fatalf("snapshot.json at revision %d, want %d within %s", onDisk(), rev, within)
	}
	applied := time.Now()
	for rev := int64(1); rev <= 3; rev++ {
		sl := clone(lb)
		sl.Members[0].Weight = int(rev)
		if err := a.Apply(ctx, snapshot(rev, sl)); err != nil {
			t.Fatal(err)
		}
	}
	if rev := onDisk(); rev != 0 {
		t.Fatalf("snapshot.json at revision %d right after the applies, want none yet", rev)
	}
	waitFor(3, 10*time.Second) // the newest, once
	if since := time.Since(applied); since < stateWriteEvery {
		t.Fatalf("written %s after the first apply, want %s", since, stateWriteEvery)
	}
	sl := clone(lb)
	sl.Members[0].Weight = 9
	if err := a.Apply(ctx, snapshot(4, sl)); err != nil {
		t.Fatal(err)
	}
	waitFor(4, 10*time.Second)
}
