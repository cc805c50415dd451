package api_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/fulcrumlb/fulcrum/api"
	"github.com/fulcrumlb/fulcrum/api/store"
)

// TestNodeTokenBoundToNode: a node token bound to a node registers, polls
// and reports for that node only (by name or id), whether the others exist
// or not; a group-bound token keeps working for any node of its group.
func TestNodeTokenBoundToNode(t *testing.T) {
	b := setup(t)
	ctx := context.Background()
	var n1Token, groupToken string
	err := b.Store.Write(ctx, false, func(tx *store.Tx) error {
		var err error
		if _, n1Token, err = api.IssueNodeToken(ctx, tx, b.GroupID, "n1", "n1", "", nil); err != nil {
			return err
		}
		_, groupToken, err = api.IssueToken(ctx, tx, store.TokenNode, "", b.GroupID, "group", "", nil)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	register := map[string]any{"node_group_id": b.GroupID}
	report := map[string]any{"revision": 0, "status": "ack"}

	n1 := b.must(http.StatusOK, n1Token, http.MethodPut, "/v1/nodes/n1", register)["id"].(string)
	b.must(http.StatusOK, groupToken, http.MethodPut, "/v1/nodes/n2", register)
	n2 := b.must(http.StatusOK, b.Admin, http.MethodGet, "/v1/nodes/n2", nil)["id"].(string)

	for _, id := range []string{"n1", n1} {
		b.must(http.StatusOK, n1Token, http.MethodPut, "/v1/nodes/"+id, register)
		b.must(http.StatusOK, n1Token, http.MethodGet, "/v1/nodes/"+id+"/snapshot?wait=0s", nil)
		b.must(http.StatusNoContent, n1Token, http.MethodPost, "/v1/nodes/"+id+"/reports", report)
	}
	for _, id := range []string{"n2", n2, "n3"} { // n3 does not exist
		for _, r := range []struct {
			method, path string
			body         any
		}{{http.MethodPut, "/v1/nodes/" + id, register}, {http.MethodGet, "/v1/nodes/" + id + "/snapshot?wait=0s", nil},
			{http.MethodPost, "/v1/nodes/" + id + "/reports", report}} {
			res := b.do(n1Token, r.method, r.path, r.body)
			if res.Status != http.StatusForbidden {
				t.Errorf("n1's token: %s %s: status %d, want 403: %s", r.method, r.path, res.Status, res.Raw)
			}
		}
	}
	if got := b.count(b.Admin, "/v1/nodes"); got != 2 {
		t.Errorf("%d nodes, want 2 (n1's token must not register others)", got)
	}
	// The group token serves every node of its group.
	for _, id := range []string{"n1", "n2"} {
		b.must(http.StatusNoContent, groupToken, http.MethodPost, "/v1/nodes/"+id+"/reports", report)
	}
}

// TestNodeTokenBoundThroughAPI: POST /v1/tokens with node_name issues a token
// bound to that node; node_name on another kind is a 422 naming it.
func TestNodeTokenBoundThroughAPI(t *testing.T) {
	b := setup(t)
	tok := b.must(http.StatusCreated, b.Admin, http.MethodPost, "/v1/tokens",
		map[string]any{"kind": "node", "node_group_id": b.GroupID, "node_name": "edge-1"})
	if tok["node_name"] != "edge-1" {
		t.Fatalf("node_name = %v, want edge-1", tok["node_name"])
	}
	secret := tok["secret"].(string)
	register := map[string]any{"node_group_id": b.GroupID}
	b.must(http.StatusOK, secret, http.MethodPut, "/v1/nodes/edge-1", register)
	if res := b.do(secret, http.MethodPut, "/v1/nodes/edge-2", register); res.Status != http.StatusForbidden {
		t.Errorf("edge-1's token registering edge-2: status %d, want 403", res.Status)
	}
	res := b.do(b.Admin, http.MethodPost, "/v1/tokens", map[string]any{"kind": "admin", "node_name": "edge-1"})
	if res.Status != http.StatusUnprocessableEntity || !bytesContain(res.Raw, "node_name") {
		t.Errorf("node_name on an admin token: status %d, want 422 naming node_name: %s", res.Status, res.Raw)
	}
}

func bytesContain(b []byte, s string) bool { return strings.Contains(string(b), s) }
