package api_test

import (
	"context"
	"fmt"
	"net/http"
	"reflect"
	"testing"

	"github.com/fulcrumlb/fulcrum/api/store"
	"github.com/fulcrumlb/fulcrum/dataplane/haproxy"
	snapconv "github.com/fulcrumlb/fulcrum/dataplane/snapshot"
	"github.com/fulcrumlb/fulcrum/openapi"
)

// Purging deleted objects (store.Purge) against incremental snapshots: an
// agent caches what it converted of a load balancer by the load balancer's
// revision (dataplane/agent), so one revision must never name two contents,
// and a purge must never make a revision an agent holds look current when
// something was deleted since.

// lbRevisions maps each load balancer of s to its revision.
func lbRevisions(s *openapi.Snapshot) map[string]int64 {
	out := map[string]int64{}
	for _, lb := range s.LoadBalancers {
		out[lb.LoadBalancer.Id] = lb.Revision
	}
	return out
}

// lbContents remembers, by load balancer id and revision, the HAProxy model
// a load balancer converts to, and fails the test when one (id, revision)
// shows two models.
type lbContents map[string]haproxy.LoadBalancer

func (c lbContents) check(t *testing.T, what string, s *openapi.Snapshot) {
	t.Helper()
	for i := range s.LoadBalancers {
		sl := &s.LoadBalancers[i]
		m, err := snapconv.ToLoadBalancer(sl, func(id string) string { return "/certs/" + id + ".pem" })
		if err != nil {
			t.Fatalf("%s: convert load balancer %s: %v", what, sl.LoadBalancer.Id, err)
		}
		k := fmt.Sprintf("%s@%d", sl.LoadBalancer.Id, sl.Revision)
		if old, ok := c[k]; ok && !reflect.DeepEqual(old, m) {
			t.Fatalf("%s: load balancer %s at revision %d differs from an earlier snapshot's at the same revision: an agent caching it by revision serves the old one\nearlier: %+v\nnow: %+v",
				what, sl.LoadBalancer.Id, sl.Revision, old, m)
		}
		c[k] = m
	}
}

// TestSnapshotPurgeKeepsRevisions: a load balancer whose newest change is a
// child's delete keeps that revision once the delete is purged (it does not
// fall back to an older revision, whose content held the child); a delta
// after a revision newer than the purge merges to exactly the full snapshot;
// an agent behind the purge gets a complete snapshot; and purging the group's
// newest write (a load balancer's delete) does not lower the group's
// revision, so an agent that held the load balancer still learns it is gone.
func TestSnapshotPurgeKeepsRevisions(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t)
	b.must(http.StatusOK, b.Node, http.MethodPut, "/v1/nodes/n1", map[string]any{"node_group_id": b.GroupID})
	ack := func(rev int64) { // a report derives and purges (bundle.do)
		b.must(http.StatusNoContent, b.Node, http.MethodPost, "/v1/nodes/n1/reports", map[string]any{"revision": rev, "status": "ack"})
	}
	purgedRevision := func() int64 {
		var rev int64
		if err := b.Store.PoolForTests().QueryRow(ctx, "SELECT COALESCE(max(purged_revision), 0) FROM snapshot_purges").Scan(&rev); err != nil {
			t.Fatal(err)
		}
		return rev
	}
	seen := lbContents{}

	// The pool deleted below is older than the load balancer's newest
	// change (its listener).
	lb := b.create(b.TokenA, "/v1/load-balancers", map[string]any{"name": "web"})
	spare := b.create(b.TokenA, "/v1/pools", map[string]any{"load_balancer_id": lb, "protocol": "http", "name": "spare"})
	pool := b.create(b.TokenA, "/v1/pools", map[string]any{"load_balancer_id": lb, "protocol": "http", "name": "app"})
	b.create(b.TokenA, "/v1/members", map[string]any{"pool_id": pool, "address": "127.0.0.1", "port": 9001})
	b.create(b.TokenA, "/v1/listeners", map[string]any{"load_balancer_id": lb, "protocol": "http", "port": 80, "default_pool_id": pool})
	other := b.create(b.TokenB, "/v1/load-balancers", map[string]any{"name": "other"})
	s0 := b.getSnapshot(0, false)
	seen.check(t, "before the delete", s0)
	ack(s0.Revision)

	b.must(http.StatusAccepted, b.TokenA, http.MethodDelete, "/v1/pools/"+spare, nil)
	s1 := b.getSnapshot(0, false)
	seen.check(t, "after the delete", s1)
	if r0, r1 := lbRevisions(s0)[lb], lbRevisions(s1)[lb]; r1 <= r0 {
		t.Fatalf("a pool's delete left the load balancer at revision %d (was %d)", r1, r0)
	}
	ack(s1.Revision) // every node dropped the pool: it is purged
	if p := purgedRevision(); p < s1.Revision {
		t.Fatalf("purged up to %d after the ack of %d: want the pool's delete purged", p, s1.Revision)
	}
	// A write elsewhere: the group's part is built again, after the purge.
	b.must(http.StatusOK, b.TokenB, http.MethodPatch, "/v1/load-balancers/"+other, map[string]any{"description": "x"})
	s2 := b.getSnapshot(0, false)
	seen.check(t, "after the purge", s2)
	for id, r := range lbRevisions(s1) {
		if r2 := lbRevisions(s2)[id]; r2 < r {
			t.Errorf("load balancer %s: revision %d after the purge, %d before it", id, r2, r)
		}
	}
	want := canonical(t, s2)

	// An agent holding the revision of the delete takes a delta; one behind
	// it (the delete purged since) a complete snapshot. Both end at s2.
	for _, base := range []*openapi.Snapshot{s1, s0} {
		d := b.getSnapshot(base.Revision, true)
		if d == nil {
			t.Fatalf("nothing after %d, want revision %d", base.Revision, s2.Revision)
		}
		seen.check(t, fmt.Sprintf("the answer after %d", base.Revision), d)
		if base == s0 && snapconv.IsDelta(d) {
			t.Errorf("a delta after %d though the delete at %d is purged", s0.Revision, s1.Revision)
		}
		merged, err := snapconv.Merge(base, d)
		if err != nil {
			t.Fatalf("merge the answer after %d: %v", base.Revision, err)
		}
		if got := canonical(t, merged); !reflect.DeepEqual(got, want) {
			t.Errorf("snapshot %d merged with the answer after it (delta %v): load balancers %v, the full snapshot's %v (configs equal: %v)",
				base.Revision, snapconv.IsDelta(d), got.LBs, want.LBs, reflect.DeepEqual(got.Config, want.Config))
		}
	}

	// The group's newest write is a load balancer's delete; once purged, the
	// group's revision stays at it.
	b.must(http.StatusAccepted, b.TokenB, http.MethodDelete, "/v1/load-balancers/"+other+"?cascade=true", nil)
	s3 := b.getSnapshot(0, false)
	if _, ok := lbRevisions(s3)[other]; ok || s3.Revision <= s2.Revision {
		t.Fatalf("after the delete of %s: revision %d, load balancers %v", other, s3.Revision, lbRevisions(s3))
	}
	ack(s3.Revision)
	if p := purgedRevision(); p < s3.Revision {
		t.Fatalf("purged up to %d after the ack of %d: want the load balancer's delete purged", p, s3.Revision)
	}
	var groupRev int64
	if err := b.Store.ReadSnapshot(ctx, func(tx *store.Tx) error {
		var err error
		groupRev, err = store.GroupRevision(ctx, tx, b.GroupID)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if groupRev < s3.Revision {
		t.Errorf("the group's revision fell from %d to %d when the delete was purged: an agent holding %d (with %s) would see nothing newer",
			s3.Revision, groupRev, s2.Revision, other)
	}
	// An agent that held s2 (it was down when the delete was purged) gets
	// the delete.
	d := b.getSnapshot(s2.Revision, true)
	if d == nil {
		t.Fatalf("nothing after %d: the delete of %s is lost", s2.Revision, other)
	}
	merged, err := snapconv.Merge(s2, d)
	if err != nil {
		t.Fatal(err)
	}
	// (A delta is right here: the group's part at s3 was read before the
	// purge, with the delete.)
	if _, ok := lbRevisions(merged)[other]; ok || merged.Revision != s3.Revision {
		t.Errorf("after %d: delta %v, revision %d, load balancers %v; want revision %d without %s",
			s2.Revision, snapconv.IsDelta(d), merged.Revision, lbRevisions(merged), s3.Revision, other)
	}
}
