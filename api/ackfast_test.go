package api_test

import (
	"context"
	"fmt"
	"net/http"
	"testing"
)

// An acknowledgement of a node the replica knows plain is written without
// reading the node's row (store.WriteAcks). When another replica wrote
// something an acknowledgement clears meanwhile (here load balancer errors
// written straight to the database), it is recorded as a full report
// instead: the errors are cleared, the revision raised, the listener active.
func TestFastAckFallsBackWhenNodeNotPlain(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	b.register("n1")
	tr := b.buildTree(b.TokenA)
	poll := func(after, applied int64) {
		t.Helper()
		res := b.do(b.Node, http.MethodGet, fmt.Sprintf("/v1/nodes/n1/snapshot?after=%d&wait=0s&applied=%d", after, applied), nil, protocolHeader, "2")
		if res.Status != http.StatusNotModified {
			t.Fatalf("poll acknowledging %d: %d: %s", applied, res.Status, res.Raw)
		}
	}
	rev := b.revision()
	poll(rev, rev) // a full report: the replica now knows n1 plain
	b.waitFor("the member active", func() bool {
		return b.field(b.TokenA, "/v1/members/"+tr.Member, "provisioning_status") == "active"
	})
	// A second change, acknowledged by the fast path.
	b.must(http.StatusOK, b.TokenA, http.MethodPatch, "/v1/members/"+tr.Member, map[string]any{"weight": 3})
	rev2 := b.revision()
	poll(rev2, rev2)
	b.waitFor("the changed member active", func() bool {
		return b.appliedRevision("n1") == rev2 && b.field(b.TokenA, "/v1/members/"+tr.Member, "provisioning_status") == "active"
	})

	// Another replica records load balancer errors of n1.
	id := b.field(b.Admin, "/v1/nodes/n1", "id")
	if _, err := b.Store.PoolForTests().Exec(ctx, `INSERT INTO node_lb_errors (node_id, load_balancer_id, object_id, field, message)
VALUES ($1, $2, $3, 'port', 'cannot bind socket')`, id, tr.LB, tr.Listener); err != nil {
		t.Fatal(err)
	}
	b.must(http.StatusOK, b.TokenA, http.MethodPatch, "/v1/members/"+tr.Member, map[string]any{"weight": 4})
	rev3 := b.revision()
	poll(rev3, rev3)
	b.waitFor("the acknowledgement recorded as a full report", func() bool {
		var n int
		if err := b.Store.PoolForTests().QueryRow(ctx, "SELECT count(*) FROM node_lb_errors WHERE node_id = $1", id).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n == 0 && b.appliedRevision("n1") == rev3 &&
			b.field(b.TokenA, "/v1/members/"+tr.Member, "provisioning_status") == "active" &&
			b.field(b.TokenA, "/v1/listeners/"+tr.Listener, "provisioning_status") == "active"
	})
}
