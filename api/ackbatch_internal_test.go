package api

import (
	"testing"
	"time"
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
	if jobs := w.takeAcks(1); len(jobs) != 1 {
		t.Fatalf("took %d jobs with room for 1", len(jobs))
	}
	select {
	case <-w.ackReady:
	default:
		t.Fatal("acknowledgements left over did not wake the lane again")
	}
	if jobs := w.takeAcks(10); len(jobs) != 1 {
		t.Fatalf("took %d jobs for the one left", len(jobs))
	}
	if got["a"] != 7 || got["b"] != 3 || len(got) != 2 {
		t.Fatalf("jobs made for %v, want a=7 b=3", got)
	}
	if jobs := w.takeAcks(10); len(jobs) != 0 {
		t.Fatalf("took %d jobs after all were taken", len(jobs))
	}
}
