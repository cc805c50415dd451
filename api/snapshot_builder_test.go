package api_test

import (
	"context"
	"encoding/json"
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/fulcrumlb/fulcrum/api/snapshot"
	"github.com/fulcrumlb/fulcrum/api/store"
	"github.com/fulcrumlb/fulcrum/openapi"
)

// Tests of api/snapshot's Builder on real Postgres, here to reuse the API's
// test setup: objects are created through the API, the Builder is run on
// the store. Its shapes show ids only (the API's own shapes are tested with
// its handlers), so what is checked is the Builder's part: which objects,
// grouped under which load balancer, in which order, with which keys.

// idShapes show each object by its id and load balancer.
var idShapes = snapshot.Shapes{
	LoadBalancer: func(lb *store.LoadBalancer) openapi.LoadBalancer {
		return openapi.LoadBalancer{Id: lb.ID, NodeGroupId: lb.NodeGroupID, Enabled: lb.Enabled}
	},
	Listener: func(l *store.Listener) openapi.Listener {
		return openapi.Listener{Id: l.ID, LoadBalancerId: l.LoadBalancerID}
	},
	Pool: func(p *store.Pool) openapi.Pool { return openapi.Pool{Id: p.ID, LoadBalancerId: p.LoadBalancerID} },
	Member: func(m *store.Member) openapi.Member {
		return openapi.Member{Id: m.ID, LoadBalancerId: m.LoadBalancerID}
	},
	RoutingRule: func(r *store.RoutingRule) openapi.RoutingRule {
		return openapi.RoutingRule{Id: r.ID, LoadBalancerId: r.LoadBalancerID}
	},
}

// testKey stands for a certificate's opened private key.
func testKey(c *store.Certificate) ([]byte, error) { return []byte("key of " + c.ID), nil }

func ids[T any](items []T, id func(T) string) []string {
	out := []string{}
	for _, it := range items {
		out = append(out, id(it))
	}
	return out
}

// A group's snapshot holds its live load balancers with their live objects
// (by id) and the certificates their listeners use, keys opened; one load
// balancer's part (a dry run's) is exactly its entry in the group's; a node
// gets a snapshot only when its group or itself changed after the revision
// it holds.
func TestSnapshotBuilder(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tr := b.buildTree(b.TokenA)
	second := b.create(b.TokenA, "/v1/members", map[string]any{"pool_id": tr.Pool, "address": "127.0.0.1", "port": 9002})
	gone := b.create(b.TokenA, "/v1/members", map[string]any{"pool_id": tr.Pool, "address": "127.0.0.1", "port": 9003})
	b.must(http.StatusAccepted, b.TokenA, http.MethodDelete, "/v1/members/"+gone, nil)
	// Another tenant's load balancer in the same group, deleted (pending
	// until nodes drop it): no longer served.
	other := b.create(b.TokenB, "/v1/load-balancers", map[string]any{"name": "other"})
	b.must(http.StatusAccepted, b.TokenB, http.MethodDelete, "/v1/load-balancers/"+other, nil)
	b.must(http.StatusOK, b.Node, http.MethodPut, "/v1/nodes/n1", map[string]any{"node_group_id": b.GroupID})

	builder := snapshot.NewBuilder(idShapes, testKey)
	ctx := context.Background()
	var group, node *openapi.Snapshot
	var lb *openapi.SnapshotLoadBalancer
	var lbCerts []openapi.SnapshotCertificate
	var rev int64
	err := b.Store.ReadSnapshot(ctx, func(tx *store.Tx) error {
		n, err := store.NodeGetByName(ctx, tx, "n1", false)
		if err != nil {
			return err
		}
		if rev, err = snapshot.Revision(ctx, tx, n); err != nil {
			return err
		}
		if group, err = builder.Group(ctx, tx, b.GroupID, rev); err != nil {
			return err
		}
		if lb, lbCerts, err = builder.LoadBalancer(ctx, tx, tr.LB); err != nil {
			return err
		}
		if gone, _, err := builder.LoadBalancer(ctx, tx, other); err != nil || gone != nil {
			t.Errorf("a deleted load balancer's part: %v %v, want none", gone, err)
		}
		if node, err = builder.ForNode(ctx, tx, n, 0); err != nil {
			return err
		}
		if again, err := builder.ForNode(ctx, tx, n, rev); err != nil || again != nil {
			t.Errorf("snapshot for a node holding revision %d: %v %v, want none", rev, again, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	if group.Revision != rev || group.NodeGroupId != b.GroupID || group.HeartbeatIntervalMs == nil || group.Node != nil {
		t.Errorf("group part: revision %d (want %d), group %s, heartbeat %v, node %v", group.Revision, rev, group.NodeGroupId, group.HeartbeatIntervalMs, group.Node)
	}
	if got := ids(group.LoadBalancers, func(l openapi.SnapshotLoadBalancer) string { return l.LoadBalancer.Id }); !reflect.DeepEqual(got, []string{tr.LB}) {
		t.Fatalf("load balancers %v, want [%s] (the deleted one left out)", got, tr.LB)
	}
	g := group.LoadBalancers[0]
	check := func(what string, got, want []string) {
		t.Helper()
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s %v, want %v", what, got, want)
		}
	}
	check("listeners", ids(g.Listeners, func(l openapi.Listener) string { return l.Id }), sorted(tr.Listener, tr.HTTPSListener))
	check("pools", ids(g.Pools, func(p openapi.Pool) string { return p.Id }), []string{tr.Pool})
	check("members", ids(g.Members, func(m openapi.Member) string { return m.Id }), sorted(tr.Member, second))
	check("routing rules", ids(g.RoutingRules, func(r openapi.RoutingRule) string { return r.Id }), []string{tr.Rule})
	want := []openapi.SnapshotCertificate{{Id: tr.Cert, PrivateKey: "key of " + tr.Cert}}
	if len(group.Certificates) != 1 || group.Certificates[0].Id != want[0].Id || group.Certificates[0].PrivateKey != want[0].PrivateKey ||
		group.Certificates[0].Certificate == "" {
		t.Errorf("certificates %+v, want %s with its key opened", group.Certificates, tr.Cert)
	}

	// The dry run sees what the agents see.
	if lb == nil || !reflect.DeepEqual(*lb, g) || !reflect.DeepEqual(lbCerts, group.Certificates) {
		t.Errorf("load balancer part\n%+v %+v\ndiffers from the group's\n%+v %+v", lb, lbCerts, g, group.Certificates)
	}

	// A node's snapshot is the group's part plus its own.
	if node == nil || node.Node == nil || node.Node.Name != "n1" || node.Node.AdminState != "in_service" {
		t.Fatalf("node part: %+v", node)
	}
	if node.Traceparents == nil || len(*node.Traceparents) == 0 {
		t.Errorf("a node starting from nothing: no traceparents of the writes")
	}
	shared := *node
	shared.Node, shared.Traceparents, shared.GeneratedAt = nil, nil, group.GeneratedAt
	if !reflect.DeepEqual(&shared, group) {
		t.Errorf("node snapshot without its own part\n%+v\ndiffers from the group's\n%+v", shared, *group)
	}
}

func sorted(s ...string) []string {
	out := slices.Clone(s)
	slices.Sort(out)
	return out
}

// A group's part built from the previous one by the rows written since
// (GroupSince, GroupRevisionSince: what the snapshot cache does while no
// purge intervened) is exactly the part built from scratch, after each of a
// sequence of writes to one load balancer among several: member changes,
// adds and deletes, a new load balancer, a deleted one.
func TestSnapshotGroupSinceIsFullBuild(t *testing.T) {
	t.Parallel()
	b := setup(t)
	// A serving node that acks nothing holds every delete back from Purge
	// (with a purge the cache builds by every row's revision instead).
	b.must(http.StatusOK, b.Node, http.MethodPut, "/v1/nodes/n1", map[string]any{"node_group_id": b.GroupID})
	type lbTree struct{ lb, pool, member string }
	var trees []lbTree
	for i := range 6 {
		lb := b.create(b.TokenA, "/v1/load-balancers", map[string]any{"name": "lb" + strconv.Itoa(i)})
		pool := b.create(b.TokenA, "/v1/pools", map[string]any{"load_balancer_id": lb, "protocol": "http"})
		m := b.create(b.TokenA, "/v1/members", map[string]any{"pool_id": pool, "address": "127.0.0.1", "port": 9001})
		b.create(b.TokenA, "/v1/listeners", map[string]any{"load_balancer_id": lb, "protocol": "http", "port": 80, "default_pool_id": pool})
		trees = append(trees, lbTree{lb, pool, m})
	}
	builder := snapshot.NewBuilder(idShapes, testKey)
	ctx := context.Background()
	build := func(prev *openapi.Snapshot) (full, since *openapi.Snapshot) {
		t.Helper()
		err := b.Store.ReadSnapshot(ctx, func(tx *store.Tx) error {
			rev, err := store.GroupRevision(ctx, tx, b.GroupID)
			if err != nil {
				return err
			}
			if full, err = builder.Group(ctx, tx, b.GroupID, rev); err != nil {
				return err
			}
			if prev == nil {
				return nil
			}
			revSince, err := store.GroupRevisionSince(ctx, tx, b.GroupID, prev.Revision)
			if err != nil {
				return err
			}
			if revSince != rev {
				t.Errorf("GroupRevisionSince(%d) = %d, GroupRevision = %d", prev.Revision, revSince, rev)
			}
			since, err = builder.GroupSince(ctx, tx, b.GroupID, revSince, prev)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return full, since
	}
	prev, _ := build(nil)
	writes := []struct {
		what string
		do   func()
	}{
		{"member disabled", func() {
			b.must(http.StatusOK, b.TokenA, http.MethodPatch, "/v1/members/"+trees[0].member, map[string]any{"enabled": false})
		}},
		{"member added", func() {
			b.create(b.TokenA, "/v1/members", map[string]any{"pool_id": trees[1].pool, "address": "127.0.0.1", "port": 9002})
		}},
		{"member deleted", func() { b.must(http.StatusAccepted, b.TokenA, http.MethodDelete, "/v1/members/"+trees[2].member, nil) }},
		{"load balancer added", func() { b.create(b.TokenA, "/v1/load-balancers", map[string]any{"name": "new"}) }},
		{"load balancer deleted", func() {
			b.must(http.StatusAccepted, b.TokenA, http.MethodDelete, "/v1/load-balancers/"+trees[3].lb+"?cascade=true", nil)
		}},
		{"nothing", func() {}},
	}
	for _, w := range writes {
		w.do()
		full, since := build(prev)
		full.GeneratedAt, since.GeneratedAt = time.Time{}, time.Time{}
		if !reflect.DeepEqual(since, full) {
			gj, _ := json.MarshalIndent(since, "", " ")
			wj, _ := json.MarshalIndent(full, "", " ")
			t.Fatalf("after %s: built from the previous part:\n%s\nfrom scratch:\n%s", w.what, gj, wj)
		}
		prev = since
	}
}
