package store

import (
	"context"
	"maps"
	"testing"
)

// deriveWorld is one database with a group, two nodes and load balancers,
// whose objects are named by role so that two databases compare.
type deriveWorld struct {
	st    *Store
	group string
	nodes map[string]string // name → id
	ids   map[string]string // role → id
	lbs   []fixture
}

func newDeriveWorld(t *testing.T) *deriveWorld {
	st := openTest(t)
	w := &deriveWorld{st: st, group: newGroup(t, st, "g"), nodes: map[string]string{}, ids: map[string]string{}}
	w.addLB(t, newTenant(t, st, "a", DefaultQuotas))
	for _, n := range []string{"n1", "n2"} {
		w.nodes[n] = newNode(t, st, w.group, n, 0)
	}
	return w
}

func (w *deriveWorld) addLB(t *testing.T, tenant string) fixture {
	f := newLB(t, w.st, tenant, w.group)
	i := string(rune('0' + len(w.lbs)))
	for role, id := range map[string]string{"lb": f.lb, "listener": f.listener, "pool": f.pool, "member": f.member} {
		w.ids[role+i] = id
	}
	w.lbs = append(w.lbs, f)
	// Its revision is old enough for a node behind it to count as lagging.
	exec(t, w.st, "UPDATE revisions SET created_at = now() - interval '1 minute'")
	return f
}

// ack has node name apply the newest revision.
func (w *deriveWorld) ack(t *testing.T, name string) {
	exec(t, w.st, "UPDATE nodes SET applied_revision = (SELECT last_value FROM revision_seq), last_seen_at = now() WHERE id = $1", w.nodes[name])
}

// statuses reads every object's statuses by role.
func (w *deriveWorld) statuses(t *testing.T) map[string]string {
	out := map[string]string{}
	for role, id := range w.ids {
		table := map[byte]string{'l': "load_balancers", 'p': "pools", 'm': "members"}[role[0]]
		if role[:2] == "li" {
			table = "listeners"
		}
		var ps, os, msg string
		if err := w.st.pool.QueryRow(context.Background(), "SELECT provisioning_status, operating_status, status_message FROM "+table+" WHERE id = $1", id).Scan(&ps, &os, &msg); err != nil {
			t.Fatal(err)
		}
		out[role] = ps + "/" + os + "/" + msg
	}
	return out
}

// TestDeriveGroupMatchesApplyReport: a report written as the report path
// now does (its node's rows only) followed by DeriveGroup leaves the same
// statuses as the former per-report ApplyReport, step by step.
func TestDeriveGroupMatchesApplyReport(t *testing.T) {
	ctx := context.Background()
	old, now := newDeriveWorld(t), newDeriveWorld(t)
	type report struct {
		node    string
		errs    []LBError // role ids resolved per world; nil: not sent
		members map[string]string
	}
	resolve := func(w *deriveWorld, r report) (Report, map[string]string) {
		rep := Report{ReplaceLBErrors: r.errs != nil, MemberStatus: map[string]string{}}
		for _, e := range r.errs {
			e.LoadBalancerID, e.ObjectID = w.ids[e.LoadBalancerID], w.ids[e.ObjectID]
			rep.LBErrors = append(rep.LBErrors, e)
		}
		for role, s := range r.members {
			rep.MemberStatus[w.ids[role]] = s
		}
		return rep, rep.MemberStatus
	}
	applyOld := func(r report) {
		t.Helper()
		rep, _ := resolve(old, r)
		err := old.st.Write(ctx, false, func(tx *Tx) error {
			n, err := Get[Node](ctx, tx, KindNode, "", old.nodes[r.node], true)
			if err != nil {
				return err
			}
			return ApplyReport(ctx, tx, n, rep)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	applyNew := func(r report) {
		t.Helper()
		rep, members := resolve(now, r)
		err := now.st.WriteReport(ctx, func(tx *Tx) error {
			if !rep.ReplaceLBErrors {
				return nil
			}
			_, err := NodeLBErrorsReplace(ctx, tx, now.nodes[r.node], now.group, rep.LBErrors)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := now.st.DeriveGroup(ctx, now.group, members, 0); err != nil {
			t.Fatal(err)
		}
	}
	step := func(what string, before func(w *deriveWorld), r report, want map[string]string) {
		t.Helper()
		before(old)
		before(now)
		applyOld(r)
		applyNew(r)
		got, exp := now.statuses(t), old.statuses(t)
		if !maps.Equal(got, exp) {
			t.Fatalf("%s: derived %v, ApplyReport %v", what, got, exp)
		}
		for role, s := range want {
			if got[role] != s {
				t.Errorf("%s: %s reads %s, want %s", what, role, got[role], s)
			}
		}
	}
	nothing := func(*deriveWorld) {}
	online := map[string]string{"member0": "online"}

	step("one of two nodes applied", func(w *deriveWorld) { w.ack(t, "n1") }, report{node: "n1", members: online},
		map[string]string{"lb0": "pending_create/offline/"})
	step("both nodes applied", func(w *deriveWorld) { w.ack(t, "n2") }, report{node: "n2", members: online},
		map[string]string{"lb0": "active/online/", "listener0": "active/online/", "pool0": "active/online/", "member0": "active/online/"})
	step("a node rejects the listener (nack)", nothing,
		report{node: "n1", errs: []LBError{{LoadBalancerID: "lb0", ObjectID: "listener0", Field: "port", Message: "cannot bind"}}},
		map[string]string{"listener0": "error/online/port: cannot bind", "lb0": "active/degraded/"})
	step("a node rejects the load balancer", nothing,
		report{node: "n1", errs: []LBError{{LoadBalancerID: "lb0", Message: "bad"}}},
		map[string]string{"lb0": "error/error/bad"})
	step("the errors clear", nothing, report{node: "n1", errs: []LBError{}}, nil)
	step("a member goes down", nothing, report{node: "n2", members: map[string]string{"member0": "offline"}},
		map[string]string{"pool0": "active/offline/", "lb0": "active/offline/"})
	step("it comes back", nothing, report{node: "n1", members: online}, map[string]string{"lb0": "active/online/"})
	// A member changed that only n1 applied: n2 lags on its load balancer
	// (the change is older than NodeBehindGrace), which reads degraded.
	step("a node lags", func(w *deriveWorld) {
		w.touchMember(t)
		w.ack(t, "n1")
	}, report{node: "n1", members: online},
		map[string]string{"member0": "pending_update/online/", "lb0": "active/degraded/"})
	step("the lagging node catches up", func(w *deriveWorld) { w.ack(t, "n2") }, report{node: "n2"},
		map[string]string{"member0": "active/online/", "lb0": "active/online/"})
	// A second load balancer that only n1 applied is not active.
	step("a new load balancer one node applied", func(w *deriveWorld) {
		w.addLB(t, w.lbs[0].tenant)
		w.ack(t, "n1")
	}, report{node: "n1", members: map[string]string{"member0": "online", "member1": "online"}},
		map[string]string{"lb1": "pending_create/offline/", "lb0": "active/online/"})
	step("both applied it", func(w *deriveWorld) { w.ack(t, "n2") }, report{node: "n2"},
		map[string]string{"lb1": "active/online/", "member1": "active/online/"})
}

// touchMember changes the first load balancer's member (a new revision, an
// old enough one for a node behind it to count as lagging).
func (w *deriveWorld) touchMember(t *testing.T) {
	err := w.st.Write(context.Background(), false, func(tx *Tx) error {
		rev, err := tx.Revision(context.Background())
		if err != nil {
			return err
		}
		_, err = tx.pg.Exec(context.Background(), "UPDATE members SET revision = $1, provisioning_status = 'pending_update' WHERE id = $2", rev, w.lbs[0].member)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	exec(t, w.st, "UPDATE revisions SET created_at = now() - interval '1 minute'")
}

// A report's transaction takes no revision.
func TestWriteReportTakesNoRevision(t *testing.T) {
	st := openTest(t)
	ctx := context.Background()
	err := st.WriteReport(ctx, func(tx *Tx) error {
		_, err := tx.Revision(ctx)
		return err
	})
	if err == nil {
		t.Fatal("Tx.Revision in WriteReport succeeded, want an error")
	}
	if rev, err := st.CurrentRevision(ctx); err != nil || rev != 0 {
		t.Fatalf("current revision %d (%v), want 0", rev, err)
	}
}

// PurgeDeleted purges what every serving node dropped, and only that.
func TestPurgeDeleted(t *testing.T) {
	st := openTest(t)
	ctx := context.Background()
	g := newGroup(t, st, "g")
	f := newLB(t, st, newTenant(t, st, "a", DefaultQuotas), g)
	newNode(t, st, g, "n1", 0)
	exec(t, st, "UPDATE members SET deleted_revision = revision, provisioning_status = 'pending_delete' WHERE id = $1", f.member)
	if err := st.PurgeDeleted(ctx); err != nil {
		t.Fatal(err)
	}
	if n := scalar[int](t, st, "SELECT count(*) FROM members WHERE id = $1", f.member); n != 1 {
		t.Fatalf("member purged before the node applied its delete")
	}
	exec(t, st, "UPDATE nodes SET applied_revision = (SELECT last_value FROM revision_seq)")
	if err := st.PurgeDeleted(ctx); err != nil {
		t.Fatal(err)
	}
	if n := scalar[int](t, st, "SELECT count(*) FROM members WHERE id = $1", f.member); n != 0 {
		t.Fatalf("member not purged after every node applied its delete")
	}
}

// The sweep's view of a group (NodeGroupStates): its digest stays put while
// nothing changes and moves when a node goes down with time alone; a node
// below the newest revision marks the group lagging.
func TestNodeGroupStates(t *testing.T) {
	w := newDeriveWorld(t)
	ctx := context.Background()
	read := func() NodeGroupState {
		t.Helper()
		states, err := w.st.NodeGroupStates(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return states[w.group]
	}
	w.ack(t, "n1")
	w.ack(t, "n2")
	before, again := read(), read()
	if before.Digest == "" || before != again {
		t.Fatalf("an unchanged group read %+v then %+v", before, again)
	}
	if before.Lagging {
		t.Fatalf("every node applied the newest revision, yet lagging: %+v", before)
	}
	exec(t, w.st, "UPDATE nodes SET applied_revision = applied_revision - 1 WHERE id = $1", w.nodes["n2"])
	if got := read(); !got.Lagging {
		t.Fatalf("node n2 below the newest revision, not lagging: %+v", got)
	}
	w.ack(t, "n2")
	// n2 last heard from longer ago than the group's down timeout.
	exec(t, w.st, "UPDATE nodes SET last_seen_at = now() - interval '1 hour' WHERE id = $1", w.nodes["n2"])
	if after := read(); after.Digest == before.Digest {
		t.Fatalf("digest did not move when node n2 went down: %+v", after)
	}
}
