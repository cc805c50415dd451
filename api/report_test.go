package api_test

import (
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Reports no longer block writes (issue 10): many nodes' reports in flight at
// once never hold a write back, every report is answered, reports take no
// revision, and the statuses still follow the reports (derived in the
// background).
func TestReportsDoNotBlockWrites(t *testing.T) {
	const (
		nodes  = 200 // reports in flight at once: one per node
		writes = 15  // PATCHes while they are
		rounds = 50  // at most, per node
	)
	b := setup(t)
	lb := b.create(b.TokenA, "/v1/load-balancers", map[string]any{"name": "web"})
	pool := b.create(b.TokenA, "/v1/pools", map[string]any{"load_balancer_id": lb, "protocol": "http"})
	member := b.create(b.TokenA, "/v1/members", map[string]any{"pool_id": pool, "address": "127.0.0.1", "port": 9001})
	b.create(b.TokenA, "/v1/listeners", map[string]any{"load_balancer_id": lb, "protocol": "http", "port": 80, "default_pool_id": pool})
	names := make([]string, nodes)
	for i := range names {
		names[i] = fmt.Sprintf("fleet-%03d", i)
		b.register(names[i])
	}
	// What a real agent sends: its applied revision, member health, the
	// counters of the load balancers that changed.
	body := func(rev int64, round int) map[string]any {
		return map[string]any{"revision": rev, "status": "ack", "load_balancer_errors": []any{}, "node_errors": []any{},
			"members": []any{map[string]any{"id": member, "status": "online", "check": "L7OK"}},
			"stats":   []any{map[string]any{"load_balancer_id": lb, "requests_total": round, "bytes_in": 100 * round}}}
	}
	// A report an overloaded replica sheds (503 with Retry-After: on a
	// loaded machine, one not answered within the request timeout) is sent
	// again, as an agent sends what it had to say with its next report.
	var shed atomic.Int64
	report := func(name string, rev int64, round int) error {
		for deadline := time.Now().Add(time.Minute); ; time.Sleep(100 * time.Millisecond) {
			res, err := b.send(b.Node, http.MethodPost, "/v1/nodes/"+name+"/reports", body(rev, round))
			if err != nil {
				return err
			}
			if res.Status == http.StatusServiceUnavailable && res.Header.Get("Retry-After") != "" && time.Now().Before(deadline) {
				shed.Add(1)
				continue
			}
			if res.Status != http.StatusNoContent {
				return fmt.Errorf("report of %s: HTTP %d: %s", name, res.Status, res.Raw)
			}
			return nil
		}
	}

	// Reports take no revision.
	before := b.revision()
	var wg sync.WaitGroup
	errs := make(chan error, nodes*rounds)
	for _, name := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := report(name, before, 0); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	if after := b.revision(); after != before {
		t.Errorf("revision %d after %d reports, was %d: reports must take no revision", after, nodes, before)
	}

	// Every node reports over and over (one report of each in flight at a
	// time) while a client writes.
	var (
		stop     atomic.Bool
		answered atomic.Int64
		latest   atomic.Int64
	)
	latest.Store(before)
	start := make(chan struct{})
	for _, name := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			for round := 1; round <= rounds && !stop.Load(); round++ {
				if err := report(name, latest.Load(), round); err != nil {
					errs <- err
					return
				}
				answered.Add(1)
			}
		}()
	}
	close(start)
	var slowest time.Duration
	retried := 0
	for i := range writes {
		t0 := time.Now()
		res, err := b.send(b.TokenA, http.MethodPatch, "/v1/members/"+member, map[string]any{"weight": 2 + i})
		// A write answered 503 with Retry-After (a statement past its lock
		// or statement timeout: under -race on a loaded machine a status
		// derivation holding the member's row can take that long) is sent
		// again, as clients do; it must then complete.
		for try := 0; err == nil && res.Status == http.StatusServiceUnavailable && res.Header.Get("Retry-After") != "" && try < 5; try++ {
			retried++
			t.Logf("write %d answered %d after %s: %s; sending it again", i, res.Status, time.Since(t0), res.Raw)
			time.Sleep(200 * time.Millisecond)
			res, err = b.send(b.TokenA, http.MethodPatch, "/v1/members/"+member, map[string]any{"weight": 2 + i})
		}
		if err != nil {
			t.Errorf("write %d: %v", i, err)
			continue
		}
		if res.Status != http.StatusOK {
			t.Errorf("write %d while reports are in flight: HTTP %d, want 200: %s", i, res.Status, res.Raw)
			continue
		}
		slowest = max(slowest, time.Since(t0))
		latest.Store(b.revision())
	}
	stop.Store(true)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	t.Logf("%d writes while %d nodes reported (%d reports answered, %d shed and sent again), slowest write %s, %d writes sent again", writes, nodes, answered.Load(), shed.Load(), slowest, retried)
	if answered.Load() < nodes {
		t.Errorf("%d reports answered during the writes, want at least one per node (%d)", answered.Load(), nodes)
	}

	// Once every node acks the last write, the member reads active, and its
	// health is rolled up: the statuses follow the reports.
	rev := b.revision()
	for _, name := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := report(name, rev, rounds+1); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	deadline := time.Now().Add(30 * time.Second)
	for {
		m := b.must(http.StatusOK, b.TokenA, http.MethodGet, "/v1/members/"+member, nil)
		l := b.must(http.StatusOK, b.TokenA, http.MethodGet, "/v1/load-balancers/"+lb, nil)
		if m["provisioning_status"] == "active" && l["operating_status"] == "online" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("30 s after every node acked revision %d: member %v, load balancer operating status %v; want active, online",
				rev, m["provisioning_status"], l["operating_status"])
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Every node's last counters are stored (merged, written about every
	// second: written now).
	b.flushCounters()
	st := b.must(http.StatusOK, b.TokenA, http.MethodGet, "/v1/load-balancers/"+lb+"/stats", nil)
	if n, _ := st["nodes_reporting"].(float64); int(n) != nodes {
		t.Errorf("nodes_reporting %v, want %d", st["nodes_reporting"], nodes)
	}
	if n, _ := st["requests_total"].(float64); int(n) != nodes*(rounds+1) {
		t.Errorf("requests_total %v, want %d (every node's last counters)", st["requests_total"], nodes*(rounds+1))
	}
}

// Reports are written in batches (group commit): many nodes reporting at
// once are all answered, every report is in the database (each node's
// applied revision, VIPs, node errors and counters), and they took fewer
// transactions than there were reports.
func TestReportsAreBatched(t *testing.T) {
	const nodes = 150
	b := setup(t)
	lb := b.create(b.TokenA, "/v1/load-balancers", map[string]any{"name": "web"})
	names := make([]string, nodes)
	for i := range names {
		names[i] = fmt.Sprintf("batch-%03d", i)
		b.register(names[i])
	}
	rev := b.revision()
	batches0, reports0 := b.srv.ReportBatches()
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i, name := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			body := map[string]any{"revision": rev, "status": "ack", "vips": []string{fmt.Sprintf("127.77.1.%d", i%250)},
				"node_errors": []any{map[string]any{"kind": "disk", "message": fmt.Sprintf("disk %d", i)}},
				"stats":       []any{map[string]any{"load_balancer_id": lb, "requests_total": i + 1}}}
			res, err := b.send(b.Node, http.MethodPost, "/v1/nodes/"+name+"/reports", body)
			if err != nil {
				t.Error(err)
				return
			}
			if res.Status != http.StatusNoContent {
				t.Errorf("report of %s: HTTP %d: %s", name, res.Status, res.Raw)
			}
		}()
	}
	close(start)
	wg.Wait()
	batches1, reports1 := b.srv.ReportBatches()
	batches, reports := batches1-batches0, reports1-reports0
	t.Logf("%d reports written by %d transactions", reports, batches)
	if reports != nodes {
		t.Errorf("%d reports written, want %d", reports, nodes)
	}
	if batches >= reports {
		t.Errorf("%d transactions for %d reports: not batched", batches, reports)
	}
	for i, name := range names {
		n := b.must(http.StatusOK, b.Admin, http.MethodGet, "/v1/nodes/"+name, nil)
		if got, _ := n["applied_revision"].(float64); int64(got) != rev {
			t.Errorf("%s: applied_revision %v, want %d", name, n["applied_revision"], rev)
		}
		if vips, _ := n["vips"].([]any); len(vips) != 1 || vips[0] != fmt.Sprintf("127.77.1.%d", i%250) {
			t.Errorf("%s: vips %v", name, n["vips"])
		}
		if errs, _ := n["errors"].([]any); len(errs) != 1 || errs[0].(map[string]any)["message"] != fmt.Sprintf("disk %d", i) {
			t.Errorf("%s: errors %v", name, n["errors"])
		}
	}
	b.flushCounters()
	st := b.must(http.StatusOK, b.TokenA, http.MethodGet, "/v1/load-balancers/"+lb+"/stats", nil)
	if n, _ := st["nodes_reporting"].(float64); int(n) != nodes {
		t.Errorf("nodes_reporting %v, want %d", st["nodes_reporting"], nodes)
	}
	if n, _ := st["requests_total"].(float64); int(n) != nodes*(nodes+1)/2 {
		t.Errorf("requests_total %v, want %d (every node's counters)", st["requests_total"], nodes*(nodes+1)/2)
	}
}

// Bad report bodies are answered as before the fast check of reports: 400
// for a body that is not JSON, 415 for another media type, 422 naming the
// field otherwise (the fast check leaves them to the generic one).
func TestReportBadBodies(t *testing.T) {
	b := setup(t)
	b.register("n1")
	for _, c := range []struct {
		body   any
		ctype  string
		status int
		field  string
	}{
		{`{"revision":1,`, "", http.StatusBadRequest, "body"},
		{`{"revision":1,"status":"ack"}`, "text/plain", http.StatusUnsupportedMediaType, "body"},
		{map[string]any{"status": "ack"}, "", http.StatusUnprocessableEntity, "revision"},
		{map[string]any{"revision": -1, "status": "ack"}, "", http.StatusUnprocessableEntity, "revision"},
		{map[string]any{"revision": 1, "status": "done"}, "", http.StatusUnprocessableEntity, "status"},
		{map[string]any{"revision": 1, "status": "ack", "bogus": 1}, "", http.StatusUnprocessableEntity, "bogus"},
		{map[string]any{"revision": 1, "status": "nack", "message": "a\x01b"}, "", http.StatusUnprocessableEntity, "message"},
		{map[string]any{"revision": 1, "status": "ack", "members": []any{map[string]any{"id": "m", "status": "up"}}}, "", http.StatusUnprocessableEntity, "members[0].status"},
		{map[string]any{"revision": 1, "status": "ack", "vips": []string{"not-an-ip"}}, "", http.StatusUnprocessableEntity, "vips[0]"},
	} {
		var headers []string
		if c.ctype != "" {
			headers = []string{"Content-Type", c.ctype}
		}
		res := b.do(b.Node, http.MethodPost, "/v1/nodes/n1/reports", c.body, headers...)
		if res.Status != c.status || !hasField(res, c.field) {
			t.Errorf("report %v: HTTP %d fields %v, want %d naming %s: %s", c.body, res.Status, res.Fields(), c.status, c.field, res.Raw)
		}
	}
}

// A heartbeat that changes nothing but last_seen_at is acknowledged without
// a batch, and its last_seen_at is written soon after; one that changes
// something (a newer revision, a message) goes through a batch.
func TestHeartbeatsWithoutBatch(t *testing.T) {
	b := setup(t)
	b.register("n1")
	rev := b.revision()
	hb := map[string]any{"revision": rev, "status": "ack"}
	b.must(http.StatusNoContent, b.Node, http.MethodPost, "/v1/nodes/n1/reports", hb) // written: the node is known
	seen := func() time.Time {
		n := b.must(http.StatusOK, b.Admin, http.MethodGet, "/v1/nodes/n1", nil)
		at, err := time.Parse(time.RFC3339Nano, n["last_seen_at"].(string))
		if err != nil {
			t.Fatal(err)
		}
		return at
	}
	before := seen()
	batches0, _ := b.srv.ReportBatches()
	acked0 := b.srv.HeartbeatsAcked()
	time.Sleep(20 * time.Millisecond)
	for range 5 {
		res, err := b.send(b.Node, http.MethodPost, "/v1/nodes/n1/reports", hb)
		if err != nil || res.Status != http.StatusNoContent {
			t.Fatalf("heartbeat: %v %d %s", err, res.Status, res.Raw)
		}
	}
	batches1, _ := b.srv.ReportBatches()
	acked := b.srv.HeartbeatsAcked() - acked0
	t.Logf("%d of 5 heartbeats acknowledged without a batch, %d batches", acked, batches1-batches0)
	if acked == 0 {
		t.Error("no heartbeat acknowledged without a batch")
	}
	deadline := time.Now().Add(10 * time.Second)
	for !seen().After(before) {
		if time.Now().After(deadline) {
			t.Fatalf("last_seen_at still %v 10 s after heartbeats acknowledged without a batch", before)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// A message is a change: written by a batch, read back at once.
	acked0 = b.srv.HeartbeatsAcked()
	b.must(http.StatusNoContent, b.Node, http.MethodPost, "/v1/nodes/n1/reports", map[string]any{"revision": rev, "status": "ack", "message": "hello"})
	if b.srv.HeartbeatsAcked() != acked0 {
		t.Error("a report with a new message was acknowledged without a batch")
	}
	if n := b.must(http.StatusOK, b.Admin, http.MethodGet, "/v1/nodes/n1", nil); n["status_message"] != "hello" {
		t.Errorf("status_message %v, want hello", n["status_message"])
	}
}

// Heartbeats of a node that changes nothing are acknowledged without a
// batch for as long as their last_seen_at are written and the node's row
// stays plain, not only for half a down timeout after its last batch; once
// the row is not plain (an admin cordoned the node), its heartbeats go
// through a batch again.
func TestHeartbeatsWithoutBatchLast(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.register("n1")
	rev := b.revision()
	hb := map[string]any{"revision": rev, "status": "ack"}
	b.must(http.StatusNoContent, b.Node, http.MethodPost, "/v1/nodes/n1/reports", hb) // written: the node is known
	heartbeat := func() {
		t.Helper()
		if res, err := b.send(b.Node, http.MethodPost, "/v1/nodes/n1/reports", hb); err != nil || res.Status != http.StatusNoContent {
			t.Fatalf("heartbeat: %v %d %s", err, res.Status, res.Raw)
		}
	}
	// Past half the default down timeout (10 s) after the last batch.
	batches0, _ := b.srv.ReportBatches()
	for start := time.Now(); time.Since(start) < 7*time.Second; time.Sleep(250 * time.Millisecond) {
		heartbeat()
	}
	if batches, _ := b.srv.ReportBatches(); batches != batches0 {
		t.Errorf("%d batches for 7 s of heartbeats that changed nothing, want none", batches-batches0)
	}
	b.must(http.StatusOK, b.Admin, http.MethodPost, "/v1/nodes/n1/cordon", nil)
	batches0, _ = b.srv.ReportBatches()
	deadline := time.Now().Add(10 * time.Second)
	for {
		heartbeat()
		if batches, _ := b.srv.ReportBatches(); batches != batches0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("heartbeats of a cordoned node still acknowledged without a batch 10 s later")
		}
		time.Sleep(100 * time.Millisecond)
	}
}
