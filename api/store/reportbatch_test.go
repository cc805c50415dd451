package store

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"
)

// A batch of reports is one transaction: one that fails writes nothing and
// leaves its connection usable; a refused report (Decide's error) leaves the
// others written; a node reported twice in a batch gets both reports in
// order.
func TestWriteReportBatch(t *testing.T) {
	ctx := context.Background()
	st := openTest(t)
	group := newGroup(t, st, "g")
	tenant := newTenant(t, st, "a", DefaultQuotas)
	lb := newLB(t, st, tenant, group)
	other := newLB(t, st, tenant, newGroup(t, st, "h"))
	n1, n2 := newNode(t, st, group, "n1", 0), newNode(t, st, group, "n2", 0)
	st2, err := st.OwnPool(1) // one connection: a failed batch must leave it usable
	if err != nil {
		t.Fatal(err)
	}
	defer st2.Close()

	write := func(n *Node, rev int64, msg string, _ map[string][]byte) *ReportWrite {
		return &ReportWrite{SeenAt: time.Now(), StatusMessage: msg, AppliedRevision: max(n.AppliedRevision, rev), VIPs: n.VIPs, Errors: n.Errors}
	}
	refused := errors.New("refused")
	items := []ReportItem{
		{Key: "n1", Decide: func(n *Node, _ string, _ bool) (*ReportWrite, error) {
			return write(n, 5, "first", map[string][]byte{lb.lb: []byte(`{"requests_total":1}`), other.lb: []byte(`{"requests_total":9}`)}), nil
		}},
		{Key: "nobody", Decide: func(n *Node, _ string, _ bool) (*ReportWrite, error) {
			if n != nil {
				t.Error("a node for a name no node has")
			}
			return nil, refused
		}},
		{Key: n1, Decide: func(n *Node, _ string, _ bool) (*ReportWrite, error) { // by id: the same node
			if n.StatusMessage != "first" || n.AppliedRevision != 5 {
				t.Errorf("second report of n1 in the batch sees %q at %d, want the first's", n.StatusMessage, n.AppliedRevision)
			}
			return write(n, 7, "second", nil), nil
		}},
		{Key: "n2", Decide: func(n *Node, _ string, _ bool) (*ReportWrite, error) {
			return write(n, 3, "n2", map[string][]byte{lb.lb: []byte(`{"requests_total":2}`)}), nil
		}},
	}
	res, err := st2.WriteReportBatch(ctx, items)
	if err != nil {
		t.Fatal(err)
	}
	if !errors.Is(res[1].Err, refused) || res[0].Err != nil || res[2].Err != nil || res[3].Err != nil {
		t.Fatalf("results %+v", res)
	}
	read := func(id string) (msg string, rev int64) {
		if err := st.pool.QueryRow(ctx, "SELECT status_message, applied_revision FROM nodes WHERE id = $1", id).Scan(&msg, &rev); err != nil {
			t.Fatal(err)
		}
		return msg, rev
	}
	if msg, rev := read(n1); msg != "second" || rev != 7 {
		t.Errorf("n1: %q at %d, want second at 7", msg, rev)
	}
	if msg, rev := read(n2); msg != "n2" || rev != 3 {
		t.Errorf("n2: %q at %d, want n2 at 3", msg, rev)
	}
	var stats int
	if err := st.pool.QueryRow(ctx, "SELECT count(*) FROM load_balancer_stats").Scan(&stats); err != nil {
		t.Fatal(err)
	}
	if stats != 0 {
		t.Errorf("%d counters rows, want none (counters are written by StoreCounters)", stats)
	}

	// A batch that fails (Postgres refuses the message) writes nothing.
	_, err = st2.WriteReportBatch(ctx, []ReportItem{
		{Key: "n2", Decide: func(n *Node, _ string, _ bool) (*ReportWrite, error) { return write(n, 9, "fine", nil), nil }},
		{Key: "n1", Decide: func(n *Node, _ string, _ bool) (*ReportWrite, error) { return write(n, 9, "bad\x00", nil), nil }},
	})
	if err == nil {
		t.Fatal("a batch with a message Postgres refuses succeeded")
	}
	if msg, rev := read(n2); msg != "n2" || rev != 3 {
		t.Errorf("n2 after a failed batch: %q at %d, want n2 at 3 (nothing written)", msg, rev)
	}
	if _, err := st2.WriteReportBatch(ctx, items[3:]); err != nil {
		t.Fatalf("the next batch on the same connection: %v", err)
	}
}

// StoreCounters writes counters in one statement: those of load balancers of
// another group, of nodes or load balancers that do not exist, are ignored;
// those unchanged are not written again.
func TestStoreCounters(t *testing.T) {
	ctx := context.Background()
	st := openTest(t)
	group := newGroup(t, st, "g")
	tenant := newTenant(t, st, "a", DefaultQuotas)
	lb := newLB(t, st, tenant, group)
	other := newLB(t, st, tenant, newGroup(t, st, "h"))
	n1, n2 := newNode(t, st, group, "n1", 0), newNode(t, st, group, "n2", 0)
	rows := []CounterRow{
		{Node: n2, LoadBalancer: lb.lb, Counters: []byte(`{"requests_total":2}`)},
		{Node: n1, LoadBalancer: lb.lb, Counters: []byte(`{"requests_total":1}`)},
		{Node: n1, LoadBalancer: other.lb, Counters: []byte(`{"requests_total":9}`)},
		{Node: "no-such-node", LoadBalancer: lb.lb, Counters: []byte(`{"requests_total":3}`)},
		{Node: n1, LoadBalancer: "no-such-lb", Counters: []byte(`{"requests_total":4}`)},
	}
	n, err := st.StoreCounters(ctx, rows)
	if err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Errorf("%d rows written, want 2", n)
	}
	if n, err = st.StoreCounters(ctx, rows); err != nil || n != 0 {
		t.Errorf("the same counters again: %d rows written (%v), want none", n, err)
	}
	rows[0].Counters = []byte(`{"requests_total":5}`)
	if n, err = st.StoreCounters(ctx, rows); err != nil || n != 1 {
		t.Errorf("one changed: %d rows written (%v), want 1", n, err)
	}
	var c string
	if err := st.pool.QueryRow(ctx, "SELECT counters::text FROM load_balancer_stats WHERE node_id = $1", n2).Scan(&c); err != nil {
		t.Fatal(err)
	}
	if c != `{"requests_total": 5}` {
		t.Errorf("n2's counters %s, want the last written", c)
	}
}

// WriteAcks raises each plain node's applied revision to the newest it
// acknowledged and never lowers it; it leaves (and returns) the nodes an
// acknowledgement would change more of (node errors, a failing apply, load
// balancer errors), those of another group and those that do not exist.
func TestWriteAcks(t *testing.T) {
	ctx := context.Background()
	st := openTest(t)
	group, other := newGroup(t, st, "g"), newGroup(t, st, "h")
	tenant := newTenant(t, st, "a", DefaultQuotas)
	lb := newLB(t, st, tenant, group)
	plain, ahead := newNode(t, st, group, "plain", 2), newNode(t, st, group, "ahead", 9)
	withErrs, failing := newNode(t, st, group, "errs", 2), newNode(t, st, group, "failing", 2)
	withLBErrs, moved := newNode(t, st, group, "lberrs", 2), newNode(t, st, other, "moved", 2)
	exec(t, st, `UPDATE nodes SET status_message = 'old news', last_seen_at = now() - interval '1 hour' WHERE id = $1`, plain)
	exec(t, st, `UPDATE nodes SET errors = '[{"kind":"vip","message":"x","since":"2026-01-01T00:00:00Z"}]' WHERE id = $1`, withErrs)
	exec(t, st, `UPDATE nodes SET apply_failing_since = now(), apply_failing_revision = 3, status_message = 'bad' WHERE id = $1`, failing)
	exec(t, st, `INSERT INTO node_lb_errors (node_id, load_balancer_id, object_id, field, message) VALUES ($1, $2, $2, 'f', 'm')`, withLBErrs, lb.lb)
	now := time.Now()
	missed, err := st.WriteAcks(ctx, []AckWrite{
		{NodeID: plain, GroupID: group, Applied: 5, At: now},
		{NodeID: plain, GroupID: group, Applied: 4, At: now.Add(-time.Second)}, // older, same batch: the newest wins
		{NodeID: ahead, GroupID: group, Applied: 4, At: now},                   // behind what is recorded: stays 9
		{NodeID: withErrs, GroupID: group, Applied: 5, At: now},
		{NodeID: failing, GroupID: group, Applied: 5, At: now},
		{NodeID: withLBErrs, GroupID: group, Applied: 5, At: now},
		{NodeID: moved, GroupID: group, Applied: 5, At: now},
		{NodeID: "no-such-node", GroupID: group, Applied: 5, At: now},
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(missed)
	want := []string{withErrs, failing, withLBErrs, moved, "no-such-node"}
	slices.Sort(want)
	if !slices.Equal(missed, want) {
		t.Errorf("missed %v, want %v", missed, want)
	}
	read := func(id string) (msg string, rev int64, seen time.Time) {
		t.Helper()
		if err := st.pool.QueryRow(ctx, "SELECT status_message, applied_revision, last_seen_at FROM nodes WHERE id = $1", id).Scan(&msg, &rev, &seen); err != nil {
			t.Fatal(err)
		}
		return msg, rev, seen
	}
	if msg, rev, seen := read(plain); msg != "" || rev != 5 || seen.Before(now.Add(-time.Millisecond)) {
		t.Errorf("plain: %q at %d seen %s, want no message at 5 seen now", msg, rev, seen)
	}
	if _, rev, _ := read(ahead); rev != 9 {
		t.Errorf("ahead: applied %d, want 9 (never lowered)", rev)
	}
	for _, id := range []string{withErrs, failing, withLBErrs, moved} {
		if _, rev, _ := read(id); rev != 2 {
			t.Errorf("%s: applied %d, want 2 (not written)", id, rev)
		}
	}
	// Later acknowledgements of an older revision never move it back.
	if missed, err := st.WriteAcks(ctx, []AckWrite{{NodeID: plain, GroupID: group, Applied: 3, At: now}}); err != nil || len(missed) != 0 {
		t.Fatalf("older acknowledgement: missed %v, %v", missed, err)
	}
	if _, rev, _ := read(plain); rev != 5 {
		t.Errorf("plain after an older acknowledgement: applied %d, want 5", rev)
	}
}
