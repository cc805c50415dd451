package store

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"
)

// waitForAdvisoryWaiter waits (bounded) until some backend waits for an
// advisory lock: a write queued behind another.
func waitForAdvisoryWaiter(t *testing.T, st *Store) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if scalar[int](t, st, "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND wait_event = 'advisory'") > 0 {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("no write waits for a lock")
}

// insertMember adds a member of f's pool at the transaction's revision.
func insertMember(ctx context.Context, tx *Tx, f fixture, port int) (int64, error) {
	rev, err := tx.Revision(ctx)
	if err != nil {
		return 0, err
	}
	_, err = tx.pg.Exec(ctx, `INSERT INTO members (id, tenant_id, load_balancer_id, pool_id, address, port, spec, revision)
VALUES ($1, $2, $3, $4, '127.0.0.1', $5, '{"enabled": true}', $6)`, NewID(KindMember.Prefix), f.tenant, f.lb, f.pool, port, rev)
	return rev, err
}

// A write held open in group A blocks neither a write to group B nor a read;
// a second write to A waits for it and commits a later revision; a write of
// ScopeAll waits for both.
func TestWriteInGroupsRunInParallel(t *testing.T) {
	st := openTest(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	tenant := newTenant(t, st, "a", DefaultQuotas)
	a := newLB(t, st, tenant, newGroup(t, st, "ga"))
	b := newLB(t, st, tenant, newGroup(t, st, "gb"))

	holding, release := make(chan int64), make(chan struct{})
	firstA := make(chan error, 1)
	go func() {
		firstA <- st.WriteIn(ctx, false, ScopeOf(KindPool, tenant, a.pool), func(tx *Tx) error {
			rev, err := insertMember(ctx, tx, a, 9001)
			if err != nil {
				return err
			}
			holding <- rev
			<-release
			return nil
		})
	}()
	var revA1 int64
	select {
	case revA1 = <-holding:
	case err := <-firstA:
		t.Fatalf("first write to A: %v", err)
	}

	// Group B commits while A's write is open.
	var revB int64
	if err := st.WriteIn(ctx, false, ScopeOf(KindLoadBalancer, tenant, b.lb), func(tx *Tx) error {
		var err error
		revB, err = insertMember(ctx, tx, b, 9002)
		return err
	}); err != nil {
		t.Fatalf("write to B while A is open: %v", err)
	}
	if revB <= revA1 {
		t.Fatalf("B took revision %d, not after A's %d", revB, revA1)
	}
	if got := scalar[int](t, st, "SELECT count(*) FROM members WHERE pool_id = $1 AND port = 9002", b.pool); got != 1 {
		t.Fatal("B's write is not visible while A's is open")
	}

	// A second write to A waits for the first.
	secondA := make(chan int64, 1)
	secondErr := make(chan error, 1)
	go func() {
		secondErr <- st.WriteIn(ctx, false, ScopeGroups(a.group), func(tx *Tx) error {
			rev, err := insertMember(ctx, tx, a, 9003)
			secondA <- rev
			return err
		})
	}()
	waitForAdvisoryWaiter(t, st)
	select {
	case rev := <-secondA:
		t.Fatalf("a second write to A took revision %d while the first was open", rev)
	case err := <-secondErr:
		t.Fatalf("a second write to A ended while the first was open: %v", err)
	default:
	}
	close(release)
	if err := <-firstA; err != nil {
		t.Fatalf("first write to A: %v", err)
	}
	if err := <-secondErr; err != nil {
		t.Fatalf("second write to A: %v", err)
	}
	if rev := <-secondA; rev <= revB {
		t.Fatalf("second write to A took revision %d, not after %d", rev, revB)
	}

	// ScopeAll waits for a group's write, and a group's write for it.
	release = make(chan struct{})
	held := make(chan struct{})
	groupErr := make(chan error, 1)
	go func() {
		groupErr <- st.WriteIn(ctx, false, ScopeGroups(b.group), func(tx *Tx) error {
			close(held)
			<-release
			return nil
		})
	}()
	<-held
	allDone := make(chan error, 1)
	go func() { allDone <- st.Write(ctx, false, func(tx *Tx) error { return nil }) }()
	waitForAdvisoryWaiter(t, st)
	select {
	case err := <-allDone:
		t.Fatalf("a ScopeAll write ended while a group's write was open: %v", err)
	default:
	}
	close(release)
	if err := <-groupErr; err != nil {
		t.Fatal(err)
	}
	if err := <-allDone; err != nil {
		t.Fatal(err)
	}
}

// A write scoped to one group cannot change another group's rows.
func TestWriteInRefusesOtherGroups(t *testing.T) {
	st := openTest(t)
	ctx := context.Background()
	tenant := newTenant(t, st, "a", DefaultQuotas)
	a := newLB(t, st, tenant, newGroup(t, st, "ga"))
	b := newLB(t, st, tenant, newGroup(t, st, "gb"))
	err := st.WriteIn(ctx, false, ScopeGroups(a.group), func(tx *Tx) error {
		_, err := insertMember(ctx, tx, b, 9100)
		return err
	})
	if !errors.Is(err, ErrConflict) {
		t.Fatalf("write to group B under A's lock: %v, want ErrConflict", err)
	}
	// Both groups' locks: both may change.
	err = st.WriteIn(ctx, false, ScopeGroups(b.group, a.group), func(tx *Tx) error {
		if _, err := insertMember(ctx, tx, a, 9101); err != nil {
			return err
		}
		_, err := insertMember(ctx, tx, b, 9101)
		return err
	})
	if err != nil {
		t.Fatalf("write to A and B under both locks: %v", err)
	}
}

// Writers in two groups run concurrently; a reader polling each group never
// sees the group at revision N and later a newly committed object of that
// group below N: within a group, revisions commit in order.
func TestWriteInGroupRevisionsCommitInOrder(t *testing.T) {
	st := openTest(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	tenant := newTenant(t, st, "a", DefaultQuotas)
	fs := []fixture{newLB(t, st, tenant, newGroup(t, st, "ga")), newLB(t, st, tenant, newGroup(t, st, "gb"))}
	const writers, writes = 3, 40 // per group
	var wg sync.WaitGroup
	errs := make(chan error, 2*writers)
	stop := make(chan struct{})
	for gi, f := range fs {
		for w := 0; w < writers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < writes; i++ {
					port := 10000 + gi*5000 + w*writes + i
					err := st.WriteIn(ctx, false, ScopeOf(KindPool, tenant, f.pool), func(tx *Tx) error {
						if _, err := insertMember(ctx, tx, f, port); err != nil {
							return err
						}
						// Commit late and at random, so an unordered
						// scheme would commit revisions out of order.
						time.Sleep(rand.N(3 * time.Millisecond))
						return nil
					})
					if err != nil {
						errs <- fmt.Errorf("write to %s: %w", f.group, err)
						return
					}
				}
			}()
		}
	}
	var rwg sync.WaitGroup
	violations := make(chan string, 100)
	polls := make([]int, len(fs))
	for gi, f := range fs {
		rwg.Add(1)
		go func() {
			defer rwg.Done()
			seen := map[string]bool{}
			var prev int64
			for done := false; !done; {
				select {
				case <-stop:
					done = true // one last poll after every write committed
				default:
				}
				var groupRev int64
				type row struct {
					id  string
					rev int64
				}
				var rows []row
				err := st.ReadSnapshot(ctx, func(tx *Tx) error {
					var err error
					if groupRev, err = GroupRevision(ctx, tx, f.group); err != nil {
						return err
					}
					r, err := tx.pg.Query(ctx, "SELECT m.id, m.revision FROM members m JOIN load_balancers lb ON lb.id = m.load_balancer_id WHERE lb.node_group_id = $1", f.group)
					if err != nil {
						return err
					}
					defer r.Close()
					for r.Next() {
						var x row
						if err := r.Scan(&x.id, &x.rev); err != nil {
							return err
						}
						rows = append(rows, x)
					}
					return r.Err()
				})
				if err != nil {
					violations <- err.Error()
					return
				}
				polls[gi]++
				for _, x := range rows {
					if seen[x.id] {
						continue
					}
					seen[x.id] = true
					if x.rev <= prev {
						violations <- fmt.Sprintf("group %s: member %s at revision %d appeared after the group was seen at revision %d", f.group, x.id, x.rev, prev)
					}
				}
				if groupRev < prev {
					violations <- fmt.Sprintf("group %s went back from revision %d to %d", f.group, prev, groupRev)
				}
				prev = groupRev
			}
		}()
	}
	wg.Wait()
	close(stop)
	rwg.Wait()
	close(errs)
	close(violations)
	for err := range errs {
		t.Error(err)
	}
	for v := range violations {
		t.Error(v)
	}
	for gi, f := range fs {
		if n := scalar[int](t, st, "SELECT count(*) FROM members WHERE pool_id = $1", f.pool); n != 1+writers*writes {
			t.Errorf("group %d has %d members, want %d", gi, n, 1+writers*writes)
		}
	}
	t.Logf("polls per group: %v", polls)
}

// Concurrent creates by one tenant in two groups never exceed its quota.
func TestWriteInQuotaExactAcrossGroups(t *testing.T) {
	st := openTest(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	q := DefaultQuotas
	q.Members = 7
	tenant := newTenant(t, st, "a", q)
	var fs []fixture // a member each
	for _, g := range []string{"ga", "gb", "gc", "gd"} {
		fs = append(fs, newLB(t, st, tenant, newGroup(t, st, g)))
	}
	q.Members += len(fs)
	exec(t, st, "UPDATE tenants SET quotas = $2 WHERE id = $1", tenant, q)
	const creates = 32
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok, over := 0, 0
	for i := 0; i < creates; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f := fs[i%len(fs)]
			err := st.WriteIn(ctx, false, ScopeOf(KindPool, tenant, f.pool), func(tx *Tx) error {
				if err := CheckQuota(ctx, tx, KindMember, tenant); err != nil {
					return err
				}
				time.Sleep(rand.N(5 * time.Millisecond)) // widen the race an unlocked count would lose
				_, err := insertMember(ctx, tx, f, 20000+i)
				return err
			})
			var qe *QuotaError
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				ok++
			case errors.As(err, &qe):
				over++
			default:
				t.Errorf("create %d: %v", i, err)
			}
		}()
	}
	wg.Wait()
	if n := scalar[int](t, st, "SELECT count(*) FROM members WHERE tenant_id = $1", tenant); n != q.Members {
		t.Fatalf("tenant has %d members, quota %d", n, q.Members)
	}
	if ok != q.Members-len(fs) || over != creates-ok {
		t.Fatalf("%d creates succeeded and %d hit the quota, want %d and %d", ok, over, q.Members-len(fs), creates-(q.Members-len(fs)))
	}
}
