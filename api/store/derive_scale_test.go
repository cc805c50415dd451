package store

import (
	"cmp"
	"context"
	"os"
	"strconv"
	"testing"
	"time"
)

// bulkGroup fills group g of tenant with nLB load balancers (one listener,
// one pool, nMember members each) and nNode nodes, in a few statements.
func bulkGroup(t *testing.T, st *Store, tenant, g string, nLB, nMember, nNode int) {
	t.Helper()
	exec(t, st, `INSERT INTO revisions (revision) SELECT nextval('revision_seq')`)
	exec(t, st, `INSERT INTO load_balancers (id, tenant_id, node_group_id, vip_address, revision)
SELECT 'lb_' || $3 || i, $1, $2, ('10.0.0.0'::inet + i), (SELECT last_value FROM revision_seq) FROM generate_series(1, $4) i`, tenant, g, g, nLB)
	exec(t, st, `INSERT INTO pools (id, tenant_id, load_balancer_id, protocol, spec, revision)
SELECT 'pool_' || lb.id, $1, lb.id, 'http', '{}', lb.revision FROM load_balancers lb WHERE lb.node_group_id = $2`, tenant, g)
	exec(t, st, `INSERT INTO listeners (id, tenant_id, load_balancer_id, protocol, port, default_pool_id, spec, revision)
SELECT 'lsn_' || lb.id, $1, lb.id, 'http', 80, 'pool_' || lb.id, '{}', lb.revision FROM load_balancers lb WHERE lb.node_group_id = $2`, tenant, g)
	exec(t, st, `INSERT INTO members (id, tenant_id, load_balancer_id, pool_id, address, port, spec, revision)
SELECT 'mbr_' || lb.id || '_' || m, $1, lb.id, 'pool_' || lb.id, '127.0.0.1', 8000 + m, '{"enabled": true}', lb.revision
FROM load_balancers lb, generate_series(1, $3) m WHERE lb.node_group_id = $2`, tenant, g, nMember)
	exec(t, st, `INSERT INTO nodes (id, name, node_group_id, revision, applied_revision, last_seen_at, status)
SELECT 'node_' || $1 || i, 'n-' || $1 || i, $1, 1, 0, now(), 'online' FROM generate_series(1, $2) i`, g, nNode)
	exec(t, st, "UPDATE revisions SET created_at = now() - interval '1 minute'")
	exec(t, st, "ANALYZE")
}

// TestDeriveScale times DeriveGroup (incremental) on a large group, as
// the fleet benchmark has it: FULCRUM_DERIVE_SCALE=1 runs it, with
// FULCRUM_DERIVE_LBS (default 1000) load balancers of FULCRUM_DERIVE_MEMBERS
// (2) members and FULCRUM_DERIVE_NODES (1000) nodes. It prints durations;
// it asserts nothing but that every derivation succeeds.
func TestDeriveScale(t *testing.T) {
	if os.Getenv("FULCRUM_DERIVE_SCALE") != "1" {
		t.Skip("FULCRUM_DERIVE_SCALE=1")
	}
	ctx := context.Background()
	st := openTest(t)
	tenant := newTenant(t, st, "a", DefaultQuotas)
	g := newGroup(t, st, "g")
	nLB, _ := strconv.Atoi(os.Getenv("FULCRUM_DERIVE_LBS"))
	nNode, _ := strconv.Atoi(os.Getenv("FULCRUM_DERIVE_NODES"))
	nMember, _ := strconv.Atoi(os.Getenv("FULCRUM_DERIVE_MEMBERS"))
	bulkGroup(t, st, tenant, g, cmp.Or(nLB, 1000), cmp.Or(nMember, 2), cmp.Or(nNode, 1000))
	derive := func(what string) {
		t0 := time.Now()
		err := st.DeriveGroup(ctx, g, nil, 0)
		t.Logf("%s: %s", what, time.Since(t0))
		if err != nil {
			t.Error(err)
		}
	}
	derive("nothing applied")
	exec(t, st, "UPDATE nodes SET applied_revision = (SELECT last_value FROM revision_seq)")
	derive("all applied, first")
	derive("all applied, again")
	// a member write, half the nodes applied it
	exec(t, st, "INSERT INTO revisions (revision) SELECT nextval('revision_seq')")
	exec(t, st, "UPDATE members SET revision = (SELECT last_value FROM revision_seq), provisioning_status = 'pending_update' WHERE id = (SELECT min(id) FROM members)")
	exec(t, st, "UPDATE nodes SET applied_revision = (SELECT last_value FROM revision_seq) WHERE id IN (SELECT id FROM nodes ORDER BY id LIMIT 500)")
	derive("write, half applied")
	exec(t, st, "UPDATE nodes SET applied_revision = (SELECT last_value FROM revision_seq)")
	derive("write, all applied")
}
