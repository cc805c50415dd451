package store

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

// groupStatuses reads the statuses of every object of group g, by id.
func groupStatuses(t *testing.T, st *Store, g string) map[string]string {
	t.Helper()
	out := map[string]string{}
	q := `SELECT id, provisioning_status || '/' || operating_status || '/' || status_message FROM load_balancers WHERE node_group_id = $1`
	for _, table := range childTables {
		q += ` UNION ALL SELECT c.id, c.provisioning_status || '/' || c.operating_status || '/' || c.status_message FROM ` + table +
			` c JOIN load_balancers lb ON lb.id = c.load_balancer_id WHERE lb.node_group_id = $1`
	}
	rows, err := st.pool.Query(context.Background(), q, g)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var id, s string
		if err := rows.Scan(&id, &s); err != nil {
			t.Fatal(err)
		}
		out[id] = s
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestDeriveIncrementalIsFull: after every step of random writes, acks,
// node state changes, rejections and member health, an incremental
// derivation (DeriveGroup) leaves every status of the group exactly as a
// derivation of every object (DeriveGroupAll) run right after it does,
// and the load balancers it counts as not served (degradedLoadBalancers)
// are those LaggingNodes lists.
func TestDeriveIncrementalIsFull(t *testing.T) {
	for seed := uint64(1); seed <= 3; seed++ {
		t.Run(fmt.Sprint("seed ", seed), func(t *testing.T) { deriveRandomly(t, seed, 80) })
	}
}

func deriveRandomly(t *testing.T, seed uint64, steps int) {
	ctx := context.Background()
	rnd := rand.New(rand.NewPCG(seed, 0))
	st := openTest(t)
	tenant := newTenant(t, st, "a", DefaultQuotas)
	g := newGroup(t, st, "g")
	var nodes []string
	for _, n := range []string{"n1", "n2", "n3"} {
		nodes = append(nodes, newNode(t, st, g, n, 0))
	}
	var lbs []fixture
	addLB := func() { lbs = append(lbs, newLB(t, st, tenant, g)) }
	for range 3 {
		addLB()
	}
	// Revisions are either old enough for a node behind them to lag, or
	// fresh for an hour: none crosses NodeBehindGrace between the two
	// derivations compared.
	fresh := func() {
		exec(t, st, "UPDATE revisions SET created_at = now() + interval '1 hour' WHERE created_at > now() - interval '2 seconds'")
	}
	fresh()
	liveIDs := func(table string) []string {
		t.Helper()
		rows, _ := st.pool.Query(ctx, "SELECT c.id FROM "+table+" c JOIN load_balancers lb ON lb.id = c.load_balancer_id WHERE lb.node_group_id = $1 AND c.deleted_revision IS NULL AND lb.deleted_revision IS NULL ORDER BY c.id", g)
		var ids []string
		for rows.Next() {
			var id string
			_ = rows.Scan(&id)
			ids = append(ids, id)
		}
		rows.Close()
		return ids
	}
	pick := func(ids []string) string {
		if len(ids) == 0 {
			return ""
		}
		return ids[rnd.IntN(len(ids))]
	}
	write := func(q string, args ...any) {
		t.Helper()
		err := st.Write(ctx, false, func(tx *Tx) error {
			rev, err := tx.Revision(ctx)
			if err != nil {
				return err
			}
			_, err = tx.pg.Exec(ctx, q, append([]any{rev}, args...)...)
			return err
		})
		if err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		fresh()
	}
	const pending = "provisioning_status = CASE WHEN provisioning_status = 'pending_create' THEN 'pending_create' ELSE 'pending_update' END"
	port := 9000
	var log []string
	for i := 0; i < steps; i++ {
		var members map[string]string
		var what string
		switch op := rnd.IntN(16); op {
		case 0: // a member's change (enabled or not)
			m := pick(liveIDs("members"))
			what = "touch member " + m
			write("UPDATE members SET revision = $1, "+pending+", spec = jsonb_set(spec, '{enabled}', to_jsonb($3::boolean)) WHERE id = $2", m, rnd.IntN(3) > 0)
		case 1: // a new member
			p := pick(liveIDs("pools"))
			port++
			what = "add member to " + p
			write(`INSERT INTO members (id, tenant_id, load_balancer_id, pool_id, address, port, spec, revision)
SELECT $2, tenant_id, load_balancer_id, id, '127.0.0.1', $3, '{"enabled": true}', $1 FROM pools WHERE id = $4`, NewID(KindMember.Prefix), port, p)
		case 2: // a member deleted
			m := pick(liveIDs("members"))
			what = "delete member " + m
			err := st.Write(ctx, false, func(tx *Tx) error { return MarkDeleted(ctx, tx, KindMember, tenant, m, false) })
			if err != nil {
				t.Fatal(err)
			}
			fresh()
		case 3: // a load balancer's change
			lb := pick(liveIDs("listeners"))
			what = "touch the load balancer of listener " + lb
			write("UPDATE load_balancers SET revision = $1, "+pending+", enabled = $3 WHERE id = (SELECT load_balancer_id FROM listeners WHERE id = $2)", lb, rnd.IntN(4) > 0)
		case 4:
			what = "add a load balancer"
			addLB()
			fresh()
		case 5, 6: // a node applies the newest revision, or one below it
			n := nodes[rnd.IntN(len(nodes))]
			back := rnd.IntN(2)
			what = fmt.Sprintf("node %s applies newest-%d", n, back)
			exec(t, st, "UPDATE nodes SET applied_revision = GREATEST(applied_revision, (SELECT last_value FROM revision_seq) - $2), last_seen_at = now() WHERE id = $1", n, back)
		case 7: // a node goes down or comes back
			n := nodes[rnd.IntN(len(nodes))]
			if rnd.IntN(2) == 0 {
				what = "node down " + n
				exec(t, st, "UPDATE nodes SET last_seen_at = now() - interval '1 hour' WHERE id = $1", n)
			} else {
				what = "node up " + n
				exec(t, st, "UPDATE nodes SET last_seen_at = now() WHERE id = $1", n)
			}
		case 8: // cordoned or not
			n := nodes[rnd.IntN(len(nodes))]
			state := []string{"", "", "cordoned"}[rnd.IntN(3)]
			what = "node " + n + " admin state " + state
			exec(t, st, "UPDATE nodes SET admin_state = $2 WHERE id = $1", n, state)
		case 9: // a node rejects a load balancer, one of its objects, or nothing
			n := nodes[rnd.IntN(len(nodes))]
			var errs []LBError
			if l := pick(liveIDs("listeners")); l != "" && rnd.IntN(3) > 0 {
				var lb string
				_ = st.pool.QueryRow(ctx, "SELECT load_balancer_id FROM listeners WHERE id = $1", l).Scan(&lb)
				e := LBError{LoadBalancerID: lb, Message: "bad"}
				if rnd.IntN(2) == 0 {
					e.ObjectID, e.Field, e.Message = l, "port", "cannot bind"
				}
				errs = append(errs, e)
			}
			what = fmt.Sprintf("node %s rejects %v", n, errs)
			if err := st.WriteReport(ctx, func(tx *Tx) error {
				_, err := NodeLBErrorsReplace(ctx, tx, n, g, errs)
				return err
			}); err != nil {
				t.Fatal(err)
			}
		case 10: // member health
			members = map[string]string{}
			for range 1 + rnd.IntN(2) {
				if m := pick(liveIDs("members")); m != "" {
					members[m] = []string{"online", "offline", "maint", "no_monitor", "draining"}[rnd.IntN(5)]
				}
			}
			what = fmt.Sprintf("member health %v", members)
		case 11: // time passes: every revision is old enough to lag on
			what = "revisions age"
			exec(t, st, "UPDATE revisions SET created_at = now() - interval '1 minute'")
		default: // the group settles: every node up, in service, at the newest revision
			what = "every node serves the newest revision"
			exec(t, st, "UPDATE nodes SET applied_revision = (SELECT last_value FROM revision_seq), last_seen_at = now(), admin_state = '' WHERE node_group_id = $1", g)
		}
		log = append(log, what)
		if err := st.DeriveGroup(ctx, g, members, 0); err != nil {
			t.Fatalf("step %d (%s): incremental derivation: %v", i, what, err)
		}
		incremental := groupStatuses(t, st, g)
		if err := st.DeriveGroupAll(ctx, g, nil, 0); err != nil {
			t.Fatalf("step %d (%s): full derivation: %v", i, what, err)
		}
		if full := groupStatuses(t, st, g); !maps.Equal(incremental, full) {
			var diff []string
			for id, s := range full {
				if incremental[id] != s {
					diff = append(diff, fmt.Sprintf("%s: incremental %q, full %q", id, incremental[id], s))
				}
			}
			t.Fatalf("step %d (%s): statuses differ:\n%s\nsteps:\n%s", i, what, strings.Join(diff, "\n"), strings.Join(log, "\n"))
		}
		// The load balancers counted as not served are LaggingNodes'.
		err := st.Read(ctx, func(tx *Tx) error {
			got, all, _, err := degradedLoadBalancers(ctx, tx, g)
			if err != nil {
				return err
			}
			if all {
				rows, _ := tx.pg.Query(ctx, "SELECT id FROM load_balancers WHERE node_group_id = $1 AND deleted_revision IS NULL", g)
				got = nil
				for rows.Next() {
					var id string
					_ = rows.Scan(&id)
					got = append(got, id)
				}
				rows.Close()
				// Every live LB, as LaggingNodes lists it when a live
				// node is not serving; with no live node it lists none.
			}
			lagging, err := LaggingNodes(ctx, tx, g, "")
			if err != nil {
				return err
			}
			var want []string
			for _, n := range lagging {
				want = append(want, n.LoadBalancerID)
			}
			slices.Sort(got)
			slices.Sort(want)
			got, want = slices.Compact(got), slices.Compact(want)
			if !slices.Equal(got, want) {
				return fmt.Errorf("degraded load balancers %v, LaggingNodes %v", got, want)
			}
			return nil
		})
		if err != nil {
			t.Fatalf("step %d (%s): %v\nsteps:\n%s", i, what, err, strings.Join(log, "\n"))
		}
	}
}

// TestWriteNotBlockedByDerivation: a tenant's write to objects a derivation
// is about to change completes while the derivation is under way (it holds
// no row lock until its reads are done), and the derivation then leaves the
// write's objects as they must be (not applied yet: pending).
func TestWriteNotBlockedByDerivation(t *testing.T) {
	ctx := context.Background()
	st := openTest(t)
	tenant := newTenant(t, st, "a", DefaultQuotas)
	g := newGroup(t, st, "g")
	f := newLB(t, st, tenant, g)
	newNode(t, st, g, "n1", 0)
	exec(t, st, "UPDATE nodes SET applied_revision = (SELECT last_value FROM revision_seq)")

	paused, resume := make(chan struct{}), make(chan struct{})
	deriveReadsDone = func(group string) {
		if group == g {
			close(paused)
			<-resume
		}
	}
	t.Cleanup(func() { deriveReadsDone = nil })
	derived := make(chan error, 1)
	go func() { derived <- st.DeriveGroup(ctx, g, map[string]string{f.member: "online"}, time.Second) }()
	select {
	case <-paused:
	case err := <-derived:
		t.Fatalf("derivation ended before its reads were done: %v", err)
	}
	// The write a tenant's PATCH of the member makes, bounded well below
	// the derivation's pause (which lasts until the write is done).
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	err := st.WriteIn(wctx, false, ScopeOf(KindMember, tenant, f.member), func(tx *Tx) error {
		if _, err := Get[Member](wctx, tx, KindMember, tenant, f.member, true); err != nil {
			return err
		}
		rev, err := tx.Revision(wctx)
		if err != nil {
			return err
		}
		_, err = Update[Member](wctx, tx, KindMember, tenant, f.member, []Column{{Name: "revision", Value: rev},
			{Name: "provisioning_status", Value: "pending_update"}, {Name: "spec", Value: MemberSpec{Weight: 2, Enabled: true}}})
		return err
	})
	close(resume)
	if err != nil {
		t.Fatalf("write while a derivation ran: %v", err)
	}
	if err := <-derived; err != nil {
		t.Fatalf("derivation: %v", err)
	}
	s := groupStatuses(t, st, g)
	if s[f.member] != "pending_update/online/" {
		t.Errorf("member reads %q after the derivation, want pending_update/online/ (written after what the node applied)", s[f.member])
	}
	if s[f.lb] != "active/online/" || s[f.listener] != "active/online/" || s[f.pool] != "active/online/" {
		t.Errorf("statuses %v, want the load balancer, listener and pool active/online", s)
	}
}
