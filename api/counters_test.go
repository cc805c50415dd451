package api_test

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"
)

// flushCounters writes the counters of the reports answered so far.
func (b *bundle) flushCounters() {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := b.srv.FlushCounters(ctx); err != nil {
		b.t.Fatalf("write counters: %v", err)
	}
}

// A full report's counters (one per load balancer, 1,000 of them) are not
// waited for: the report is answered, and the replica's background flush
// writes them soon after, readable through the stats endpoint; the newest
// reading of a load balancer wins, and readings sent again unchanged are not
// written again.
func TestCountersWrittenAfterTheAnswer(t *testing.T) {
	const lbs = 1000
	b := setup(t)
	b.register("n1")
	b.must(http.StatusOK, b.Admin, http.MethodPatch, "/v1/tenants/"+b.TenantA, map[string]any{"quotas": map[string]any{"load_balancers": lbs}})
	ids := make([]string, lbs)
	var wg sync.WaitGroup
	next := make(chan int)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				res, err := b.send(b.TokenA, http.MethodPost, "/v1/load-balancers", map[string]any{"name": fmt.Sprintf("lb-%04d", i)})
				if err != nil || res.Status != http.StatusCreated {
					t.Errorf("create load balancer %d: %v %d %s", i, err, res.Status, res.Raw)
					continue
				}
				ids[i], _ = res.Body["id"].(string)
			}
		}()
	}
	for i := range lbs {
		next <- i
	}
	close(next)
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	rev := b.revision()
	stats := make([]any, lbs)
	for i, id := range ids {
		stats[i] = map[string]any{"load_balancer_id": id, "requests_total": i + 1, "bytes_in": 10 * (i + 1)}
	}
	written0 := b.srv.CountersWritten()
	t0 := time.Now()
	res, err := b.send(b.Node, http.MethodPost, "/v1/nodes/n1/reports", map[string]any{"revision": rev, "status": "ack", "stats": stats})
	if err != nil || res.Status != http.StatusNoContent {
		t.Fatalf("full report: %v %d %s", err, res.Status, res.Raw)
	}
	t.Logf("full report of %d counters answered in %v, %d counter rows written by then", lbs, time.Since(t0), b.srv.CountersWritten()-written0)

	// The background flush (about every second) writes every row.
	deadline := time.Now().Add(30 * time.Second)
	for b.srv.CountersWritten()-written0 < lbs {
		if time.Now().After(deadline) {
			t.Fatalf("30 s after the report: %d counter rows written, want %d", b.srv.CountersWritten()-written0, lbs)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, i := range []int{0, lbs / 2, lbs - 1} {
		st := b.must(http.StatusOK, b.TokenA, http.MethodGet, "/v1/load-balancers/"+ids[i]+"/stats", nil)
		if n, _ := st["nodes_reporting"].(float64); n != 1 {
			t.Errorf("load balancer %d: nodes_reporting %v, want 1", i, st["nodes_reporting"])
		}
		if n, _ := st["requests_total"].(float64); int(n) != i+1 {
			t.Errorf("load balancer %d: requests_total %v, want %d", i, st["requests_total"], i+1)
		}
	}

	// Two readings of one load balancer before a flush: the newest wins.
	// The same counters sent again are not written again.
	written1 := b.srv.CountersWritten()
	for _, n := range []int{5000, 7000} {
		res, err := b.send(b.Node, http.MethodPost, "/v1/nodes/n1/reports", map[string]any{"revision": rev, "status": "ack",
			"stats": []any{map[string]any{"load_balancer_id": ids[0], "requests_total": n}, stats[1]}})
		if err != nil || res.Status != http.StatusNoContent {
			t.Fatalf("report: %v %d %s", err, res.Status, res.Raw)
		}
	}
	b.flushCounters()
	// (2 when the background flush ran between the two reports.)
	if w := b.srv.CountersWritten() - written1; w < 1 || w > 2 {
		t.Errorf("%d counter rows written, want 1 or 2 (one load balancer changed, one unchanged)", w)
	}
	st := b.must(http.StatusOK, b.TokenA, http.MethodGet, "/v1/load-balancers/"+ids[0]+"/stats", nil)
	if n, _ := st["requests_total"].(float64); n != 7000 {
		t.Errorf("requests_total %v, want 7000 (the newest reading)", st["requests_total"])
	}
}
