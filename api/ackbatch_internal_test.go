package api

import (
	"slices"
	"testing"
	"time"

	"github.com/fulcrumlb/fulcrum/api/store"
)

// Acknowledgements of a node that arrive before the lane takes them
// coalesce to the highest revision; each node's is taken once, and what
// does not fit a batch wakes the lane again.
func TestAcksCoalescePerNode(t *testing.T) {
	w := newReportWriter(nil, nil)
	got := map[string]int64{}
	w.ackJob = func(k ackKey, applied int64, _ time.Time) *reportJob {
		got[k.name] = applied
		return &reportJob{}
	}
	now := time.Now()
	a, b := ackKey{name: "a"}, ackKey{name: "b", scope: nodeScope{groupID: "g"}}
	w.addAck(a, 5, now)
	w.addAck(a, 7, now)
	w.addAck(a, 6, now) // late, lower: ignored
	w.addAck(b, 3, now)
	if jobs, _ := w.takeAcks(1); len(jobs) != 1 {
		t.Fatalf("took %d jobs with room for 1", len(jobs))
	}
	select {
	case <-w.ackReady:
	default:
		t.Fatal("acknowledgements left over did not wake the lane again")
	}
	if jobs, _ := w.takeAcks(10); len(jobs) != 1 {
		t.Fatalf("took %d jobs for the one left", len(jobs))
	}
	if got["a"] != 7 || got["b"] != 3 || len(got) != 2 {
		t.Fatalf("jobs made for %v, want a=7 b=3", got)
	}
	if jobs, _ := w.takeAcks(10); len(jobs) != 0 {
		t.Fatalf("took %d jobs after all were taken", len(jobs))
	}
}

// Acknowledgements of nodes the writer knows plain are taken to be written
// without reading their rows (fast); one that changes nothing but
// last_seen_at is acknowledged as a heartbeat; the others (not known, known
// with load balancer errors, known too long ago, out of the caller's scope)
// become jobs that read the row.
func TestTakeAcksFastForPlainNodes(t *testing.T) {
	w := newReportWriter(nil, nil)
	var jobs []string
	w.ackJob = func(k ackKey, applied int64, _ time.Time) *reportJob {
		jobs = append(jobs, k.name)
		return &reportJob{}
	}
	now := time.Now()
	known := func(name string, applied int64, noLB bool, until time.Time) {
		w.nodes[name] = &seenNode{node: store.Node{ID: "id-" + name, Name: name, NodeGroupID: "g", AppliedRevision: applied},
			until: until, noLBErrors: noLB, downTimeout: 10 * time.Second}
	}
	later := now.Add(time.Minute)
	known("plain", 3, true, later)
	known("current", 9, true, later)
	known("lberrs", 3, false, later)
	known("old", 3, true, now.Add(-time.Second))
	known("other", 3, true, later)
	for _, n := range []string{"plain", "current", "lberrs", "old", "unknown"} {
		w.addAck(ackKey{name: n, scope: nodeScope{groupID: "g"}}, 5, now)
	}
	w.addAck(ackKey{name: "other", scope: nodeScope{groupID: "h"}}, 5, now) // a token of another group
	got, fast := w.takeAcks(10)
	if len(fast) != 1 || fast[0].key.name != "plain" || fast[0].nodeID != "id-plain" || fast[0].groupID != "g" || fast[0].applied != 5 {
		t.Fatalf("fast %+v, want plain's acknowledgement of 5", fast)
	}
	slices.Sort(jobs)
	if want := []string{"lberrs", "old", "other", "unknown"}; !slices.Equal(jobs, want) || len(got) != len(want) {
		t.Fatalf("jobs for %v, want %v", jobs, want)
	}
	if _, ok := w.seen["id-current"]; !ok || w.acked.Load() != 1 {
		t.Fatalf("current's acknowledgement (nothing new) not taken as a heartbeat: seen %v", w.seen)
	}
	if len(w.acks) != 0 {
		t.Fatalf("%d acknowledgements left", len(w.acks))
	}
}
