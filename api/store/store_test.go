package store

import (
	"context"
	"errors"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/fulcrumlb/fulcrum/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// openTest opens a store on a new, migrated database.
func openTest(t *testing.T) *Store {
	t.Helper()
	ctx := context.Background()
	st, err := Open(ctx, pgtest.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	if _, err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	return st
}

// fixture is one tenant's load balancer with a pool (with a member) that
// its listener uses as default pool, on group g.
type fixture struct {
	tenant, group, lb, pool, listener, member string
}

// exec runs fixture SQL in a write transaction (tests may; code may not).
func exec(t *testing.T, st *Store, q string, args ...any) {
	t.Helper()
	err := st.Write(context.Background(), false, func(tx *Tx) error {
		_, err := tx.pg.Exec(context.Background(), q, args...)
		return err
	})
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

func scalar[T any](t *testing.T, st *Store, q string, args ...any) T {
	t.Helper()
	var v T
	if err := st.pool.QueryRow(context.Background(), q, args...).Scan(&v); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return v
}

func newTenant(t *testing.T, st *Store, name string, q Quotas) string {
	t.Helper()
	id := NewID(KindTenant.Prefix)
	exec(t, st, "INSERT INTO tenants (id, name, quotas, revision) VALUES ($1, $2, $3, 1)", id, name, q)
	return id
}

func newGroup(t *testing.T, st *Store, name string) string {
	t.Helper()
	id := NewID(KindNodeGroup.Prefix)
	exec(t, st, "INSERT INTO node_groups (id, name, vip_range, revision) VALUES ($1, $2, '127.90.0.0/24', 1)", id, name)
	return id
}

// vipSeq numbers the fixtures' VIPs (tests in parallel take numbers too).
var vipSeq atomic.Int64

func newLB(t *testing.T, st *Store, tenant, group string) fixture {
	t.Helper()
	vip := "127.90.0." + strconv.FormatInt(vipSeq.Add(1), 10)
	f := fixture{tenant: tenant, group: group, lb: NewID(KindLoadBalancer.Prefix), pool: NewID(KindPool.Prefix),
		listener: NewID(KindListener.Prefix), member: NewID(KindMember.Prefix)}
	err := st.Write(context.Background(), false, func(tx *Tx) error {
		rev, err := tx.Revision(context.Background())
		if err != nil {
			return err
		}
		for _, q := range []struct {
			sql  string
			args []any
		}{
			{"INSERT INTO load_balancers (id, tenant_id, node_group_id, vip_address, revision) VALUES ($1, $2, $3, $4, $5)",
				[]any{f.lb, tenant, group, vip, rev}},
			{"INSERT INTO pools (id, tenant_id, load_balancer_id, protocol, spec, revision) VALUES ($1, $2, $3, 'http', '{}', $4)",
				[]any{f.pool, tenant, f.lb, rev}},
			{"INSERT INTO listeners (id, tenant_id, load_balancer_id, protocol, port, default_pool_id, spec, revision) VALUES ($1, $2, $3, 'http', 80, $4, '{}', $5)",
				[]any{f.listener, tenant, f.lb, f.pool, rev}},
			{"INSERT INTO members (id, tenant_id, load_balancer_id, pool_id, address, port, spec, revision) VALUES ($1, $2, $3, $4, '127.0.0.1', 8080, '{\"enabled\": true}', $5)",
				[]any{f.member, tenant, f.lb, f.pool, rev}},
		} {
			if _, err := tx.pg.Exec(context.Background(), q.sql, q.args...); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// newNode adds a node of group that reported just now, having applied rev.
func newNode(t *testing.T, st *Store, group, name string, applied int64) string {
	t.Helper()
	id := NewID(KindNode.Prefix)
	exec(t, st, "INSERT INTO nodes (id, name, node_group_id, revision, applied_revision, last_seen_at, status) VALUES ($1, $2, $3, 1, $4, now(), 'online')",
		id, name, group, applied)
	return id
}

func TestGetNotFoundOnlyForMissingRows(t *testing.T) {
	st := openTest(t)
	ctx := context.Background()
	a := newTenant(t, st, "a", DefaultQuotas)
	b := newTenant(t, st, "b", DefaultQuotas)
	f := newLB(t, st, a, newGroup(t, st, "g"))
	err := st.Read(ctx, func(tx *Tx) error {
		if _, err := Get[LoadBalancer](ctx, tx, KindLoadBalancer, a, f.lb, false); err != nil {
			t.Errorf("own load balancer: %v", err)
		}
		_, err := Get[LoadBalancer](ctx, tx, KindLoadBalancer, b, f.lb, false)
		var nf *NotFoundError
		if !errors.Is(err, ErrNotFound) || !errors.As(err, &nf) || nf.Kind != "load balancer" || nf.ID != f.lb {
			t.Errorf("another tenant's load balancer: %v, want a NotFoundError", err)
		}
		if _, err := NodeGetByName(ctx, tx, "nobody", false); !errors.Is(err, ErrNotFound) {
			t.Errorf("missing node: %v, want ErrNotFound", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// A failed query (here: a cancelled context) is an error, never "not
	// found": the agent would take that as "register again".
	cctx, cancel := context.WithCancel(ctx)
	_ = st.Read(ctx, func(tx *Tx) error {
		cancel()
		_, err := NodeGetByName(cctx, tx, "nobody", false)
		if err == nil || errors.Is(err, ErrNotFound) {
			t.Errorf("node lookup with a cancelled context: %v, want an error that is not ErrNotFound", err)
		}
		_, err = Get[LoadBalancer](cctx, tx, KindLoadBalancer, a, f.lb, false)
		if err == nil || errors.Is(err, ErrNotFound) {
			t.Errorf("get with a cancelled context: %v, want an error that is not ErrNotFound", err)
		}
		return nil
	})
}

func TestTenantScopedWritesRefuseAnotherTenant(t *testing.T) {
	st := openTest(t)
	ctx := context.Background()
	a := newTenant(t, st, "a", DefaultQuotas)
	b := newTenant(t, st, "b", DefaultQuotas)
	f := newLB(t, st, a, newGroup(t, st, "g"))
	cert := NewID(KindCertificate.Prefix)
	exec(t, st, "INSERT INTO certificates (id, tenant_id, certificate_pem, private_key_enc, info, revision) VALUES ($1, $2, 'pem', '\\x00', '{}', 1)", cert, a)
	exec(t, st, "INSERT INTO listener_certificates (listener_id, certificate_id, position) VALUES ($1, $2, 0)", f.listener, cert)

	writes := map[string]func(tx *Tx) error{
		"Update": func(tx *Tx) error {
			_, err := Update[LoadBalancer](ctx, tx, KindLoadBalancer, b, f.lb, []Column{{Name: "description", Value: "hijacked"}})
			return err
		},
		"CheckDeletable": func(tx *Tx) error { return CheckDeletable(ctx, tx, KindLoadBalancer, b, f.lb, true) },
		"MarkDeleted":    func(tx *Tx) error { return MarkDeleted(ctx, tx, KindLoadBalancer, b, f.lb, true) },
		"MarkDeleted member": func(tx *Tx) error {
			return MarkDeleted(ctx, tx, KindMember, b, f.member, false)
		},
		"HardDelete certificate": func(tx *Tx) error { return HardDelete(ctx, tx, KindCertificate, b, cert) },
		"ListenerSetCertificates": func(tx *Tx) error {
			return ListenerSetCertificates(ctx, tx, b, f.listener, nil)
		},
		"ListenerMarkUpdatedByCertificate": func(tx *Tx) error {
			rev, err := tx.Revision(ctx)
			if err != nil {
				return err
			}
			return ListenerMarkUpdatedByCertificate(ctx, tx, b, cert, rev)
		},
	}
	for name, w := range writes {
		err := st.Write(ctx, false, w)
		if name == "ListenerMarkUpdatedByCertificate" {
			if err != nil {
				t.Errorf("%s: %v", name, err)
			}
			continue
		}
		if !errors.Is(err, ErrNotFound) {
			t.Errorf("%s with another tenant's id: %v, want ErrNotFound", name, err)
		}
	}
	// Nothing of tenant a changed.
	if d := scalar[string](t, st, "SELECT description FROM load_balancers WHERE id = $1", f.lb); d != "" {
		t.Errorf("description = %q, want unchanged", d)
	}
	for _, table := range []string{"load_balancers", "listeners", "pools", "members"} {
		if n := scalar[int](t, st, "SELECT count(*) FROM "+table+" WHERE tenant_id = $1 AND deleted_revision IS NULL", a); n != 1 {
			t.Errorf("%s: %d live rows of tenant a, want 1", table, n)
		}
	}
	if n := scalar[int](t, st, "SELECT count(*) FROM listener_certificates WHERE listener_id = $1", f.listener); n != 1 {
		t.Errorf("listener certificates replaced by another tenant")
	}
	if n := scalar[int](t, st, "SELECT count(*) FROM certificates WHERE id = $1", cert); n != 1 {
		t.Errorf("certificate deleted by another tenant")
	}
	if s := scalar[string](t, st, "SELECT provisioning_status FROM listeners WHERE id = $1", f.listener); s != "pending_create" {
		t.Errorf("listener status %q changed by another tenant's certificate update", s)
	}

	// A tenant revokes only its own tokens.
	tok := NewID(KindToken.Prefix)
	exec(t, st, "INSERT INTO tokens (id, kind, tenant_id, secret_hash) VALUES ($1, 'tenant', $2, '\\x00')", tok, a)
	if err := st.Write(ctx, false, func(tx *Tx) error { return TokenDelete(ctx, tx, b, tok) }); !errors.Is(err, ErrNotFound) {
		t.Errorf("TokenDelete of another tenant's token: %v, want ErrNotFound", err)
	}
	if err := st.Write(ctx, false, func(tx *Tx) error { return TokenDelete(ctx, tx, a, tok) }); err != nil {
		t.Errorf("TokenDelete of its own token: %v", err)
	}

	// The owner's writes go through.
	err := st.Write(ctx, false, func(tx *Tx) error {
		lb, err := Update[LoadBalancer](ctx, tx, KindLoadBalancer, a, f.lb, []Column{{Name: "description", Value: "mine"}})
		if err != nil {
			return err
		}
		if lb.Description != "mine" || lb.Version != 2 {
			t.Errorf("updated: description %q version %d", lb.Description, lb.Version)
		}
		if err := ListenerSetCertificates(ctx, tx, a, f.listener, nil); err != nil {
			return err
		}
		return HardDelete(ctx, tx, KindCertificate, a, cert)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestCheckDeletable(t *testing.T) {
	st := openTest(t)
	ctx := context.Background()
	a := newTenant(t, st, "a", DefaultQuotas)
	g := newGroup(t, st, "g")
	f := newLB(t, st, a, g)
	check := func(k Kind, id string, cascade bool) error {
		return st.Read(ctx, func(tx *Tx) error { return CheckDeletable(ctx, tx, k, a, id, cascade) })
	}
	var ce *ConflictError
	// Children stop a plain delete, not a cascade.
	err := check(KindLoadBalancer, f.lb, false)
	if !errors.Is(err, ErrConflict) || !errors.As(err, &ce) || ce.Reason != ReasonHasChildren || len(ce.Fields) != 1 || ce.Fields[0].Field != "cascade" {
		t.Errorf("load balancer with children: %v, want has-children on cascade", err)
	}
	if err := check(KindLoadBalancer, f.lb, true); err != nil {
		t.Errorf("load balancer, cascade: %v", err)
	}
	// A pool a listener uses stops even a cascade.
	err = check(KindPool, f.pool, true)
	if !errors.As(err, &ce) || ce.Reason != ReasonInUse || ce.Fields[0].Field != "id" || ce.Fields[0].Message != "is used by "+f.listener {
		t.Errorf("pool in use: %v, want in-use naming %s", err, f.listener)
	}
	// Load balancers stop their node group and their tenant.
	for _, c := range []struct {
		k  Kind
		id string
	}{{KindNodeGroup, g}, {KindTenant, a}} {
		k := c.k
		err := st.Read(ctx, func(tx *Tx) error { return CheckDeletable(ctx, tx, k, "", c.id, true) })
		if !errors.As(err, &ce) || ce.Reason != ReasonInUse {
			t.Errorf("%s with load balancers: %v, want in-use", k.Name, err)
		}
	}
	if err := check(KindMember, f.member, false); err != nil {
		t.Errorf("member: %v", err)
	}
	if err := check(KindMember, "mbr_missing", false); !errors.Is(err, ErrNotFound) {
		t.Errorf("missing member: %v, want ErrNotFound", err)
	}
}

func TestMarkDeletedCascadeAndPurge(t *testing.T) {
	st := openTest(t)
	ctx := context.Background()
	a := newTenant(t, st, "a", DefaultQuotas)
	g := newGroup(t, st, "g")
	other := newGroup(t, st, "other")
	f := newLB(t, st, a, g)
	f2 := newLB(t, st, a, other)
	// A serving node of g that has not applied the delete holds it back; a
	// node of another group does not.
	node := newNode(t, st, g, "n1", 0)
	newNode(t, st, other, "n2", 1<<40)

	var rev int64
	err := st.Write(ctx, false, func(tx *Tx) error {
		if err := MarkDeleted(ctx, tx, KindLoadBalancer, a, f.lb, true); err != nil {
			return err
		}
		rev = tx.rev
		return MarkDeleted(ctx, tx, KindLoadBalancer, a, f2.lb, true)
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, table := range []string{"load_balancers", "listeners", "pools", "members"} {
		col := "load_balancer_id"
		if table == "load_balancers" {
			col = "id"
		}
		q := "SELECT count(*) FROM " + table + " WHERE tenant_id = $1 AND deleted_revision = $2 AND provisioning_status = 'pending_delete' AND " + col + " = $3"
		if n := scalar[int](t, st, q, a, rev, f.lb); n != 1 {
			t.Errorf("%s of the held-back load balancer: %d pending_delete rows, want 1", table, n)
		}
		if n := scalar[int](t, st, "SELECT count(*) FROM "+table+" WHERE "+col+" = $1", f2.lb); n != 0 {
			t.Errorf("%s of the other group's load balancer: %d rows left, want purged", table, n)
		}
	}
	// Marking it again changes nothing (already being deleted).
	if err := st.Write(ctx, false, func(tx *Tx) error { return MarkDeleted(ctx, tx, KindLoadBalancer, a, f.lb, true) }); err != nil {
		t.Fatal(err)
	}
	if d := scalar[int64](t, st, "SELECT deleted_revision FROM load_balancers WHERE id = $1", f.lb); d != rev {
		t.Errorf("deleted_revision %d after a second delete, want %d", d, rev)
	}
	// Once the node applied the revision, Purge removes the whole tree.
	exec(t, st, "UPDATE nodes SET applied_revision = $2 WHERE id = $1", node, rev)
	if err := st.Write(ctx, false, func(tx *Tx) error { return Purge(ctx, tx) }); err != nil {
		t.Fatal(err)
	}
	for _, table := range []string{"listeners", "pools", "members"} {
		if n := scalar[int](t, st, "SELECT count(*) FROM "+table+" WHERE load_balancer_id = $1", f.lb); n != 0 {
			t.Errorf("%s: %d rows left after purge", table, n)
		}
	}
	if n := scalar[int](t, st, "SELECT count(*) FROM load_balancers WHERE id = $1", f.lb); n != 0 {
		t.Errorf("load balancer left after purge")
	}
}

func TestPurgeWaitsForEveryServingNode(t *testing.T) {
	st := openTest(t)
	ctx := context.Background()
	a := newTenant(t, st, "a", DefaultQuotas)
	g := newGroup(t, st, "g")
	f := newLB(t, st, a, g)
	newNode(t, st, g, "fast", 1<<40)
	slow := newNode(t, st, g, "slow", 0)
	down := newNode(t, st, g, "down", 0)
	exec(t, st, "UPDATE nodes SET last_seen_at = now() - interval '1 hour' WHERE id = $1", down)
	err := st.Write(ctx, false, func(tx *Tx) error { return MarkDeleted(ctx, tx, KindMember, a, f.member, false) })
	if err != nil {
		t.Fatal(err)
	}
	if n := scalar[int](t, st, "SELECT count(*) FROM members WHERE id = $1", f.member); n != 1 {
		t.Fatal("member purged while a serving node had not applied its delete")
	}
	// Cordoning the slow node takes it out of the floor: the delete finishes.
	exec(t, st, "UPDATE nodes SET admin_state = 'cordoned' WHERE id = $1", slow)
	if err := st.Write(ctx, false, func(tx *Tx) error { return Purge(ctx, tx) }); err != nil {
		t.Fatal(err)
	}
	if n := scalar[int](t, st, "SELECT count(*) FROM members WHERE id = $1", f.member); n != 0 {
		t.Fatal("member not purged once every serving node applied its delete (down and cordoned nodes do not count)")
	}
	if n := scalar[int](t, st, "SELECT count(*) FROM pools WHERE id = $1", f.pool); n != 1 {
		t.Fatal("purge removed a live pool")
	}
}

func TestCheckQuota(t *testing.T) {
	st := openTest(t)
	ctx := context.Background()
	q := DefaultQuotas
	q.LoadBalancers = 2
	a := newTenant(t, st, "a", q)
	g := newGroup(t, st, "g")
	quota := func() error {
		return st.Write(ctx, false, func(tx *Tx) error { return CheckQuota(ctx, tx, KindLoadBalancer, a) })
	}
	newLB(t, st, a, g)
	if err := quota(); err != nil {
		t.Fatalf("1 of 2 load balancers: %v", err)
	}
	f := newLB(t, st, a, g)
	err := quota()
	var qe *QuotaError
	if !errors.Is(err, ErrConflict) || !errors.As(err, &qe) || qe.Limit != 2 || qe.Plural != "load balancers" {
		t.Fatalf("2 of 2 load balancers: %v, want a QuotaError of 2 load balancers", err)
	}
	// Load balancers being deleted do not count.
	newNode(t, st, g, "n1", 0)
	if err := st.Write(ctx, false, func(tx *Tx) error { return MarkDeleted(ctx, tx, KindLoadBalancer, a, f.lb, true) }); err != nil {
		t.Fatal(err)
	}
	if err := quota(); err != nil {
		t.Fatalf("after a delete: %v", err)
	}
	// Unbounded kinds pass; an unknown tenant is ErrNotFound.
	if err := st.Write(ctx, false, func(tx *Tx) error { return CheckQuota(ctx, tx, KindNode, a) }); err != nil {
		t.Fatalf("unbounded kind: %v", err)
	}
	err = st.Write(ctx, false, func(tx *Tx) error { return CheckQuota(ctx, tx, KindLoadBalancer, "tnt_missing") })
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown tenant: %v, want ErrNotFound", err)
	}
}

func TestApplyReport(t *testing.T) {
	st := openTest(t)
	ctx := context.Background()
	a := newTenant(t, st, "a", DefaultQuotas)
	g := newGroup(t, st, "g")
	f := newLB(t, st, a, g)
	rev := scalar[int64](t, st, "SELECT revision FROM load_balancers WHERE id = $1", f.lb)
	nodeID := newNode(t, st, g, "n1", rev)
	report := func(r Report) {
		t.Helper()
		err := st.Write(ctx, false, func(tx *Tx) error {
			n, err := Get[Node](ctx, tx, KindNode, "", nodeID, true)
			if err != nil {
				return err
			}
			return ApplyReport(ctx, tx, n, r)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	status := func(table, id string) (string, string) {
		t.Helper()
		var ps, msg string
		if err := st.pool.QueryRow(ctx, "SELECT provisioning_status, status_message FROM "+table+" WHERE id = $1", id).Scan(&ps, &msg); err != nil {
			t.Fatal(err)
		}
		return ps, msg
	}
	// Applied by every serving node: active, members' health rolled up.
	report(Report{MemberStatus: map[string]string{f.member: "online"}})
	for table, id := range map[string]string{"load_balancers": f.lb, "listeners": f.listener, "pools": f.pool, "members": f.member} {
		if ps, _ := status(table, id); ps != "active" {
			t.Errorf("%s: %s after the node applied it, want active", table, ps)
		}
	}
	if got := scalar[string](t, st, "SELECT operating_status FROM load_balancers WHERE id = $1", f.lb); got != "online" {
		t.Errorf("load balancer operating status %s with its one member online, want online", got)
	}
	// A rejected listener reads error with the node's message; its load
	// balancer reads degraded.
	report(Report{ReplaceLBErrors: true, LBErrors: []LBError{{LoadBalancerID: f.lb, ObjectID: f.listener, Field: "port", Message: "cannot bind"}}})
	if ps, msg := status("listeners", f.listener); ps != "error" || msg == "" {
		t.Errorf("rejected listener: %s %q, want error with the message", ps, msg)
	}
	if got := scalar[string](t, st, "SELECT operating_status FROM load_balancers WHERE id = $1", f.lb); got != "degraded" {
		t.Errorf("load balancer of a rejected listener: %s, want degraded", got)
	}
	// Errors about another group's load balancers are dropped.
	other := newLB(t, st, a, newGroup(t, st, "other"))
	report(Report{ReplaceLBErrors: true, LBErrors: []LBError{{LoadBalancerID: other.lb, Message: "not mine"}}})
	if n := scalar[int](t, st, "SELECT count(*) FROM node_lb_errors WHERE node_id = $1", nodeID); n != 0 {
		t.Errorf("%d load balancer errors stored, want 0 (the one reported is of another group, the earlier one is replaced)", n)
	}
	if ps, _ := status("listeners", f.listener); ps != "active" {
		t.Errorf("listener no longer rejected: %s, want active", ps)
	}
	if ps, _ := status("load_balancers", other.lb); ps != "pending_create" {
		t.Errorf("another group's load balancer: %s, want untouched", ps)
	}
	// A member reported down degrades its pool, listener and load balancer.
	report(Report{MemberStatus: map[string]string{f.member: "offline"}})
	if got := scalar[string](t, st, "SELECT operating_status FROM pools WHERE id = $1", f.pool); got != "offline" {
		t.Errorf("pool of its only member offline: %s, want offline", got)
	}
}

func TestMapErrorNamesTheField(t *testing.T) {
	st := openTest(t)
	ctx := context.Background()
	newTenant(t, st, "a", DefaultQuotas)
	err := st.Write(ctx, false, func(tx *Tx) error {
		_, err := Insert[Tenant](ctx, tx, KindTenant, []Column{{Name: "id", Value: NewID(KindTenant.Prefix)}, {Name: "name", Value: "a"},
			{Name: "quotas", Value: DefaultQuotas}, {Name: "revision", Value: 1}})
		return err
	})
	var ce *ConflictError
	if !errors.Is(err, ErrConflict) || !errors.As(err, &ce) || len(ce.Fields) != 1 || ce.Fields[0].Field != "name" {
		t.Fatalf("duplicate tenant name: %v, want a conflict naming name", err)
	}
}

func TestListRejectsForeignPageTokens(t *testing.T) {
	st := openTest(t)
	ctx := context.Background()
	err := st.Read(ctx, func(tx *Tx) error {
		_, _, err := List[Tenant](ctx, tx, KindTenant, "", ListQuery{PageToken: "bm90LWEtdG9rZW4"})
		return err
	})
	var ie *InputError
	if !errors.Is(err, ErrInvalidInput) || !errors.As(err, &ie) || ie.Field != "page_token" {
		t.Fatalf("foreign page token: %v, want an InputError on page_token", err)
	}
}
