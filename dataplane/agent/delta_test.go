package agent

import (
	"context"
	"reflect"
	"testing"

	"github.com/fulcrumlb/fulcrum/openapi"
)

func deltaSnap(base, rev int64, deleted []string, lbs ...openapi.SnapshotLoadBalancer) *openapi.Snapshot {
	t := true
	s := &openapi.Snapshot{FormatVersion: 2, Delta: &t, BaseRevision: &base, Revision: rev, DeletedLoadBalancers: &deleted, LoadBalancers: lbs}
	return s
}

// receiveApply is the poll loop's handling of a 200.
func receiveApply(t *testing.T, a *Agent, snap *openapi.Snapshot) bool {
	t.Helper()
	full := a.receive(context.Background(), snap)
	if full == nil {
		return false
	}
	if err := a.Apply(context.Background(), full); err != nil {
		t.Fatal(err)
	}
	return true
}

// The agent asks for deltas after the complete snapshot it holds (after a
// restart, the one on disk), merges them and applies the complete result;
// a delta after a revision it does not hold makes it ask for a complete
// snapshot from scratch; a snapshot of a format it does not know is not
// applied: it keeps serving, with a snapshot_format node error.
func TestAgentDeltas(t *testing.T) {
	a, _ := testAgent(t, "")
	params := func(after int64) *openapi.GetNodeSnapshotParams { return a.pollParams(after, "30s") }
	if p := params(0); *p.FulcrumAgentFormat != "2" || p.Delta != nil {
		t.Fatalf("first poll: format %v, delta %v; want 2, none", *p.FulcrumAgentFormat, p.Delta)
	}
	full := &openapi.Snapshot{FormatVersion: 2, Revision: 5, LoadBalancers: []openapi.SnapshotLoadBalancer{
		lbWith("lb_a", "127.0.0.2", 80), lbWith("lb_b", "127.0.0.3", 80), lbWith("lb_c", "127.0.0.4", 80)}}
	if !receiveApply(t, a, full) {
		t.Fatal("a complete snapshot was not applied")
	}
	if p := params(a.pollAfter()); *p.After != 5 || p.Delta == nil || !*p.Delta {
		t.Fatalf("poll after a complete snapshot: after %d, delta %v; want 5, true", *p.After, p.Delta)
	}
	// lb_b changes, lb_a goes, lb_d comes.
	if !receiveApply(t, a, deltaSnap(5, 7, []string{"lb_a"}, lbWith("lb_b", "127.0.0.3", 80, 81), lbWith("lb_d", "127.0.0.5", 80))) {
		t.Fatal("a delta was not applied")
	}
	if got := served(a); !reflect.DeepEqual(got, []string{"lb_b", "lb_c", "lb_d"}) || a.AppliedRevision() != 7 {
		t.Fatalf("after the delta: serving %v at %d; want [lb_b lb_c lb_d] at 7", got, a.AppliedRevision())
	}
	for _, lb := range a.live.LoadBalancers {
		if lb.ID == "lb_b" && len(lb.Listeners) != 2 {
			t.Errorf("lb_b has %d listeners, want the delta's 2", len(lb.Listeners))
		}
	}
	if len(a.snap.LoadBalancers) != 3 || a.snap.Delta != nil {
		t.Errorf("the snapshot held is not the complete merged one: %+v", a.snap)
	}

	// A complete snapshot from an API from before formats (none announced)
	// is applied, and no delta is asked of that API.
	merged := a.snap
	receiveApply(t, a, &openapi.Snapshot{Revision: 7, LoadBalancers: merged.LoadBalancers}) // revision 7 again: no change
	if p := params(7); p.Delta != nil {
		t.Fatalf("a delta asked of an API that sent format 0")
	}
	receiveApply(t, a, merged)
	if p := params(7); p.Delta == nil {
		t.Fatalf("no delta asked after a format 2 snapshot")
	}

	// A delta after a revision not held: nothing applied, the next poll
	// asks for everything.
	if receiveApply(t, a, deltaSnap(6, 8, nil, lbWith("lb_e", "127.0.0.6", 80))) {
		t.Fatal("a delta after revision 6 was merged into revision 7")
	}
	if p := params(a.pollAfter()); *p.After != 0 || p.Delta != nil {
		t.Fatalf("after a delta that does not apply: after %d, delta %v; want 0, none", *p.After, p.Delta)
	}
	full8 := &openapi.Snapshot{FormatVersion: 2, Revision: 8, LoadBalancers: []openapi.SnapshotLoadBalancer{lbWith("lb_c", "127.0.0.4", 80)}}
	if !receiveApply(t, a, full8) || !reflect.DeepEqual(served(a), []string{"lb_c"}) {
		t.Fatalf("the complete snapshot 8: serving %v", served(a))
	}
	if p := params(a.pollAfter()); *p.After != 8 || p.Delta == nil {
		t.Fatalf("back to deltas: after %d, delta %v", *p.After, p.Delta)
	}

	// A newer format: not applied, reported, still serving 8.
	newer := &openapi.Snapshot{FormatVersion: 99, Revision: 9}
	if receiveApply(t, a, newer) {
		t.Fatal("a snapshot of format 99 was applied")
	}
	a.mu.Lock()
	msg, reported := a.nodeErrors[openapi.SnapshotFormat]
	a.mu.Unlock()
	if !reported || a.AppliedRevision() != 8 || !reflect.DeepEqual(served(a), []string{"lb_c"}) {
		t.Fatalf("format 99: node error %v %q, serving %v at %d; want reported, lb_c at 8", reported, msg, served(a), a.AppliedRevision())
	}
	t.Logf("node error: %s", msg)
	if after := a.pollAfter(); after != 9 {
		t.Errorf("after a format not understood the agent asks after %d, want 9 (not fetched again)", after)
	}

	// A restart holds the snapshot on disk and asks for a delta after it.
	b, err := New(Config{Endpoint: "http://127.0.0.1:1", Token: "t", NodeName: "node-1", StateDir: a.cfg.StateDir})
	if err != nil {
		t.Fatal(err)
	}
	b.restore()
	if p := b.pollParams(b.pollAfter(), "30s"); *p.After != 8 || p.Delta == nil || !*p.Delta {
		t.Fatalf("after a restart: after %d, delta %v; want 8, true", *p.After, p.Delta)
	}
	if full := b.receive(context.Background(), deltaSnap(8, 10, []string{"lb_c"}, lbWith("lb_f", "127.0.0.7", 80))); full == nil ||
		len(full.LoadBalancers) != 1 || full.LoadBalancers[0].LoadBalancer.Id != "lb_f" {
		t.Fatalf("a delta after the restored snapshot: %+v", full)
	}
}
