package api_test

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/fulcrumlb/fulcrum/api/snapshot"
)

// A group's part rebuilt from the previous one reads only the writes since
// it (store.ReadGroupPart): a node holding the previous part's revision gets
// exactly the builder's snapshot, and so does a node further behind, whose
// trace contexts come from every write (an object written twice counts its
// last write only), and a node holding nothing.
func TestSnapshotCacheWritesSincePart(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.register("n1")
	builder := snapshot.NewBuilder(versionShapes, testKey)
	c := snapshot.NewCache(builder, b.Store, 10*time.Second)
	tr := b.buildTree(b.TokenA)
	s := pollNode(t, b, c, "n1", 0)
	if s == nil {
		t.Fatal("no snapshot")
	}
	held := []int64{0, s.Revision()}
	for i, step := range []func(){
		func() {
			b.must(http.StatusOK, b.TokenA, http.MethodPatch, "/v1/members/"+tr.Member, map[string]any{"weight": 2})
		},
		func() {
			b.must(http.StatusOK, b.TokenA, http.MethodPatch, "/v1/members/"+tr.Member, map[string]any{"weight": 3})
		},
		func() {
			b.must(http.StatusOK, b.TokenA, http.MethodPatch, "/v1/load-balancers/"+tr.LB, map[string]any{"name": "renamed"})
			b.must(http.StatusOK, b.TokenA, http.MethodPatch, "/v1/members/"+tr.Member, map[string]any{"enabled": false})
		},
		func() { b.must(http.StatusAccepted, b.TokenA, http.MethodDelete, "/v1/routing-rules/"+tr.Rule, nil) },
	} {
		step()
		last := held[len(held)-1]
		// The part is built from the previous one (the poll of a node
		// holding its revision), then every revision held so far asks.
		if s = pollNode(t, b, c, "n1", last); s == nil {
			t.Fatalf("step %d: no snapshot after %d", i, last)
		}
		for _, after := range held {
			got := pollNode(t, b, c, "n1", after)
			if got == nil {
				t.Fatalf("step %d: no snapshot after %d", i, after)
			}
			t.Run(fmt.Sprintf("step%d-after%d", i, after), func(t *testing.T) { sameAsBuilt(t, b, builder, got, "n1", after) })
			if n := got.Snapshot(); after > 0 && (n.Traceparents == nil || len(*n.Traceparents) == 0) {
				t.Fatalf("step %d after %d: no trace contexts of the writes since", i, after)
			}
		}
		held = append(held, s.Revision())
	}
}
