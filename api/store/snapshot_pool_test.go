package store

import (
	"context"
	"testing"
	"time"
)

// A snapshot connection has prepared and planned every statement of a
// build and a poll view when it opens: a build on it prepares nothing more
// and runs every statement on its generic plan, made before.
func TestSnapshotConnectionsWarm(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := openTest(t)
	tenant := newTenant(t, st, "t", Quotas{})
	group := newGroup(t, st, "g")
	newLB(t, st, tenant, group)
	f := newLB(t, st, tenant, group) // written after revision 1
	const stmts = "SELECT count(*), count(*) FILTER (WHERE custom_plans > 0) FROM pg_prepared_statements"
	err := st.ReadSnapshot(ctx, func(tx *Tx) error {
		var before, custom int
		if err := tx.pg.QueryRow(ctx, stmts).Scan(&before, &custom); err != nil {
			return err
		}
		if before < 10 {
			t.Errorf("a new snapshot connection holds %d prepared statements, want every statement of a build and a poll view (≥ 10)", before)
		}
		part, err := ReadGroupPart(ctx, tx, group, 1, 10)
		if err != nil {
			return err
		}
		if len(part.Changed) != 1 || part.Changed[0] != f.lb {
			t.Errorf("changed since 1: %v, want [%s]", part.Changed, f.lb)
		}
		sc := GroupScope(group)
		rows, err := ReadLoadBalancerRows(ctx, tx, LoadBalancersScope(part.Changed), &sc)
		if err != nil {
			return err
		}
		if len(rows.Members) != 1 || rows.Members[0].ID != f.member {
			t.Errorf("members read: %d, want %s", len(rows.Members), f.member)
		}
		if _, _, err := ReadPollView(ctx, tx, group, 0); err != nil {
			return err
		}
		for _, all := range []bool{false, true} {
			if _, err := PeerListByGroup(ctx, tx, group, all); err != nil {
				return err
			}
		}
		var after int
		if err := tx.pg.QueryRow(ctx, stmts).Scan(&after, &custom); err != nil {
			return err
		}
		if after != before {
			t.Errorf("a build on a warm snapshot connection prepared %d statements, want none", after-before)
		}
		if custom > 0 {
			t.Errorf("%d statements ran on a plan made for their values, want generic plans only", custom)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// A snapshot read whose idle connection was lost meanwhile (not pinged
// before use) runs again on another connection.
func TestSnapshotReadRetriesLostConnection(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := openTest(t)
	pid := func() int {
		var p int
		if err := st.ReadSnapshot(ctx, func(tx *Tx) error { return tx.pg.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&p) }); err != nil {
			t.Fatal(err)
		}
		return p
	}
	lost := pid()
	// Its server process ends while the connection idles in the pool (the
	// next read takes it: the most recently used first).
	if _, err := st.pool.Exec(ctx, "SELECT pg_terminate_backend($1)", lost); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 100 && scalar[int](t, st, "SELECT count(*) FROM pg_stat_activity WHERE pid = $1", lost) > 0; i++ {
		time.Sleep(20 * time.Millisecond)
	}
	if got := pid(); got == lost {
		t.Fatalf("read on the lost connection's process %d again", got)
	}
}

// A snapshot read begins its transaction with its first batch, in the same
// round trip (the BEGIN prepared by the connection's warm-up): the batch and
// what follows read one repeatable-read, read-only snapshot. One whose first
// statement is not a batch begins it on its own; a read whose connection
// was lost meanwhile runs again on another either way.
func TestSnapshotReadBeginsWithItsFirstBatch(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := openTest(t)
	tenant := newTenant(t, st, "t", Quotas{})
	group := newGroup(t, st, "g")
	newLB(t, st, tenant, group)
	var pid int
	err := st.ReadSnapshot(ctx, func(tx *Tx) error {
		l := tx.pg.(*lazyTx)
		part, err := ReadGroupPart(ctx, tx, group, 0, 10)
		if err != nil {
			return err
		}
		if l.pending || !l.begun {
			t.Errorf("after the first batch: BEGIN pending %v, sent %v; want sent with it", l.pending, l.begun)
		}
		newLB(t, st, tenant, group) // committed after the snapshot was taken: not seen
		again, err := ReadGroupPart(ctx, tx, group, 0, 10)
		if err != nil {
			return err
		}
		if len(part.Live) != 1 || len(again.Live) != 1 {
			t.Errorf("live load balancers %v then %v, want the one of the transaction's snapshot both times", part.Live, again.Live)
		}
		var iso, ro string
		var prepared int
		if err := tx.pg.QueryRow(ctx, "SELECT current_setting('transaction_isolation'), current_setting('transaction_read_only'), pg_backend_pid()").Scan(&iso, &ro, &pid); err != nil {
			return err
		}
		if iso != "repeatable read" || ro != "on" {
			t.Errorf("transaction %s, read only %s; want repeatable read, on", iso, ro)
		}
		if err := tx.pg.QueryRow(ctx, "SELECT count(*) FROM pg_prepared_statements WHERE statement = $1", snapshotBegin).Scan(&prepared); err != nil {
			return err
		}
		if prepared != 1 {
			t.Errorf("the BEGIN is prepared %d times on the connection, want once (by its warm-up)", prepared)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	err = st.ReadSnapshot(ctx, func(tx *Tx) error {
		var iso, ro string
		if err := tx.pg.QueryRow(ctx, "SELECT current_setting('transaction_isolation'), current_setting('transaction_read_only')").Scan(&iso, &ro); err != nil {
			return err
		}
		if iso != "repeatable read" || ro != "on" {
			t.Errorf("begun by a query: transaction %s, read only %s; want repeatable read, on", iso, ro)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	// The connection's server process ends while it idles: the batch that
	// would begin on it fails, and the read runs on another connection.
	if _, err := st.pool.Exec(ctx, "SELECT pg_terminate_backend($1)", pid); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 100 && scalar[int](t, st, "SELECT count(*) FROM pg_stat_activity WHERE pid = $1", pid) > 0; i++ {
		time.Sleep(20 * time.Millisecond)
	}
	for range 2 {
		err = st.ReadSnapshot(ctx, func(tx *Tx) error {
			part, err := ReadGroupPart(ctx, tx, group, 0, 10)
			if err == nil && len(part.Live) != 2 {
				t.Errorf("live load balancers %v, want 2", part.Live)
			}
			return err
		})
		if err != nil {
			t.Fatalf("read after the connection was lost: %v", err)
		}
	}
}
