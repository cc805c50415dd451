package agent

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/fulcrumlb/fulcrum/dataplane/haproxy"
	"github.com/fulcrumlb/fulcrum/openapi"
)

// While Run runs, a member change made through the runtime API has
// haproxy.cfg written after it (configWriteDelay), not during the apply:
// the changes made meanwhile are one write of what runs, AppliedRevision
// and Run's leave write what is due at once, and a failed write is a disk
// error retried, the write kept due.
func TestConfigWrittenAfterRuntimeChange(t *testing.T) {
	a, f, _ := unitAgent(t)
	ctx := context.Background()
	lb := func(w1, w2 int) openapi.SnapshotLoadBalancer {
		return lbPool("lb_a", "127.0.0.2", member("mbr_1", "10.0.0.1", w1), member("mbr_2", "10.0.0.2", w2))
	}
	if err := a.Apply(ctx, snapshot(1, lb(1, 1))); err != nil {
		t.Fatal(err)
	}
	f.runtime.take()
	a.mu.Lock()
	a.persistAsync = true // as Run sets it
	a.mu.Unlock()
	cfgPath := a.path("haproxy.cfg")
	before, _ := os.ReadFile(cfgPath)
	rendered := func() []byte {
		t.Helper()
		a.mu.Lock()
		defer a.mu.Unlock()
		b, err := haproxy.Render(*a.live)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}

	// Two changes through the runtime API: applied, the file not written yet.
	for i, w := range []int{5, 7} {
		if err := a.Apply(ctx, snapshot(int64(2+i), lb(w, 1))); err != nil {
			t.Fatal(err)
		}
	}
	if calls := f.runtime.take(); len(calls) != 2 {
		t.Fatalf("runtime calls %q, want two weight changes", calls)
	}
	if got, _ := os.ReadFile(cfgPath); string(got) != string(before) || !a.cfgDirty {
		t.Fatalf("haproxy.cfg written during the apply (due: %v)", a.cfgDirty)
	}
	// configLoop writes what runs.
	lctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); a.configLoop(lctx) }()
	a.mu.Lock()
	_ = a.configChanged(*a.live) // its wake-up (the applies above found no loop)
	a.mu.Unlock()
	want := rendered()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		got, _ := os.ReadFile(cfgPath)
		if string(got) == string(want) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("haproxy.cfg not written within 10 s:\n%s", got)
		}
	}
	stop()
	<-done
	if liveMember(t, a, "mbr_1").Weight != 7 {
		t.Fatalf("serves %+v", liveMember(t, a, "mbr_1"))
	}

	// AppliedRevision writes what is due first.
	if err := a.Apply(ctx, snapshot(4, lb(9, 1))); err != nil {
		t.Fatal(err)
	}
	if rev := a.AppliedRevision(); rev != 4 {
		t.Fatalf("applied revision %d", rev)
	}
	if got, _ := os.ReadFile(cfgPath); string(got) != string(rendered()) || a.cfgDirty {
		t.Fatalf("haproxy.cfg is not what runs after AppliedRevision:\n%s", got)
	}

	// A write that fails: a disk error, the apply retried, the write due.
	if err := a.Apply(ctx, snapshot(5, lb(11, 1))); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(cfgPath); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(cfgPath, "x"), 0o700); err != nil {
		t.Fatal(err)
	}
	a.flushConfig()
	a.mu.Lock()
	_, disk := a.nodeErrors[openapi.Disk]
	dirty, retry := a.cfgDirty, a.retry
	a.mu.Unlock()
	if !disk || !dirty || !retry {
		t.Fatalf("failed write: disk error %v, due %v, retry %v", disk, dirty, retry)
	}
	if err := os.RemoveAll(cfgPath); err != nil {
		t.Fatal(err)
	}
	a.flushConfig()
	if got, _ := os.ReadFile(cfgPath); string(got) != string(rendered()) || a.cfgDirty {
		t.Fatalf("haproxy.cfg after the failure fixed:\n%s", got)
	}
	if !slices.Equal(served(a), []string{"lb_a"}) {
		t.Fatalf("served %v", served(a))
	}
}
