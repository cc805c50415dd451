package api_test

import (
	"context"
	"net/http"
	"testing"
)

// TestNodeLookupFailureIsNotNotFound: when the node cannot be looked up
// (here the nodes table is gone; the database down or the request's context
// ending are alike), the node protocol answers a server error, never the 404
// "node not found" the agent takes as "register again" (regression: the
// lookup used to turn any error into that 404).
func TestNodeLookupFailureIsNotNotFound(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.must(http.StatusOK, b.Node, http.MethodPut, "/v1/nodes/n1", map[string]any{"node_group_id": b.GroupID})
	snap := b.must(http.StatusOK, b.Node, http.MethodGet, "/v1/nodes/n1/snapshot?after=0&wait=0s", nil)
	rev := snap["revision"]

	ctx := context.Background()
	// Authentication reads the tokens table only: the requests reach the
	// node lookup, which fails.
	if _, err := b.Store.PoolForTests().Exec(ctx, "ALTER TABLE nodes RENAME TO nodes_away"); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		what, method, path string
		body               any
	}{
		{"snapshot", http.MethodGet, "/v1/nodes/n1/snapshot?after=0&wait=0s", nil},
		{"report", http.MethodPost, "/v1/nodes/n1/reports", map[string]any{"revision": rev, "status": "ack"}},
		{"register", http.MethodPut, "/v1/nodes/n1", map[string]any{"node_group_id": b.GroupID}},
	} {
		res := b.do(b.Node, c.method, c.path, c.body)
		if res.Status == http.StatusNotFound || res.Status < 500 {
			t.Errorf("%s while the node lookup fails: %d, want a 5xx (never 404): %s", c.what, res.Status, res.Raw)
		}
	}

	// The same requests succeed once the lookup works again.
	if _, err := b.Store.PoolForTests().Exec(ctx, "ALTER TABLE nodes_away RENAME TO nodes"); err != nil {
		t.Fatal(err)
	}
	b.must(http.StatusOK, b.Node, http.MethodGet, "/v1/nodes/n1/snapshot?after=0&wait=0s", nil)
	b.must(http.StatusNoContent, b.Node, http.MethodPost, "/v1/nodes/n1/reports", map[string]any{"revision": rev, "status": "ack"})
	// A node that does not exist is still a 404.
	b.must(http.StatusNotFound, b.Node, http.MethodGet, "/v1/nodes/n9/snapshot?after=0&wait=0s", nil)
}
