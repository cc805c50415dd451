package api

import (
	"context"
	"log/slog"
	"testing"
	"time"
)

// The merge keeps the newest reading of each (node, load balancer), whatever
// order they are added in, and drops the least recently updated ones over
// its bound, counting them.
func TestCounterMergeNewestWinsAndBounded(t *testing.T) {
	ctx := context.Background()
	m := newCounterMerge(nil, slog.Default(), 1<<20)
	t0 := time.Now()
	m.add(ctx, "n1", map[string][]byte{"lb1": []byte(`{"requests_total":2}`)}, t0.Add(time.Second))
	m.add(ctx, "n1", map[string][]byte{"lb1": []byte(`{"requests_total":1}`)}, t0) // older: ignored
	m.add(ctx, "n2", map[string][]byte{"lb1": []byte(`{"requests_total":5}`)}, t0)
	if got := string(m.pending[counterKey{"n1", "lb1"}].Value.(*counterReading).val); got != `{"requests_total":2}` {
		t.Errorf("n1/lb1 %s, want the newest reading", got)
	}
	if len(m.pending) != 2 || m.order.Len() != 2 {
		t.Fatalf("%d readings waiting, want 2", len(m.pending))
	}

	one := (&counterReading{key: counterKey{"n1", "lb1"}, val: []byte(`{"requests_total":1}`)}).size()
	m = newCounterMerge(nil, slog.Default(), 3*one)
	m.add(ctx, "n1", map[string][]byte{"lb1": []byte(`{"requests_total":1}`)}, t0)
	m.add(ctx, "n1", map[string][]byte{"lb2": []byte(`{"requests_total":1}`)}, t0)
	m.add(ctx, "n1", map[string][]byte{"lb3": []byte(`{"requests_total":1}`)}, t0)
	m.add(ctx, "n1", map[string][]byte{"lb1": []byte(`{"requests_total":2}`)}, t0.Add(time.Second)) // lb1 now the newest
	m.add(ctx, "n1", map[string][]byte{"lb4": []byte(`{"requests_total":1}`)}, t0)
	if m.dropped.Load() != 1 {
		t.Errorf("%d readings dropped, want 1", m.dropped.Load())
	}
	if _, ok := m.pending[counterKey{"n1", "lb2"}]; ok {
		t.Error("lb2, the least recently updated, was kept")
	}
	for _, lb := range []string{"lb1", "lb3", "lb4"} {
		if _, ok := m.pending[counterKey{"n1", lb}]; !ok {
			t.Errorf("%s dropped", lb)
		}
	}
	if m.bytes > 3*one {
		t.Errorf("%d bytes waiting, bound %d", m.bytes, 3*one)
	}
}

// A reading written before and sent again unchanged is not sent to the
// database (the merge has no store here: a statement would fail).
func TestCounterMergeSkipsUnchanged(t *testing.T) {
	ctx := context.Background()
	m := newCounterMerge(nil, slog.Default(), 1<<20)
	r := &counterReading{key: counterKey{"n1", "lb1"}, val: []byte(`{"requests_total":1}`)}
	k, v := m.hashes(r)
	m.last[k] = v
	m.add(ctx, "n1", map[string][]byte{"lb1": []byte(`{"requests_total":1}`)}, time.Now())
	if err := m.flush(ctx); err != nil {
		t.Fatal(err)
	}
	if len(m.pending) != 0 {
		t.Errorf("%d readings still waiting", len(m.pending))
	}
}
