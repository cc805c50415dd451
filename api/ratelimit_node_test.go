package api

import (
	"testing"

	"github.com/fulcrumlb/fulcrum/api/auth"
	"github.com/fulcrumlb/fulcrum/api/store"
)

// TestNodeTokenLimitedPerNode: every agent of a group may share one node
// token, so the node limit applies per node: one node's polls and reports
// using up its bucket leave another node's requests with the same token
// alone. Tenant tokens keep one bucket whatever the path.
func TestNodeTokenLimitedPerNode(t *testing.T) {
	l := newLimiters(map[string]RateLimit{store.TokenNode: {PerSecond: 1, Burst: 2}, store.TokenTenant: {PerSecond: 1, Burst: 2}})
	node := auth.Principal{Kind: store.TokenNode, TokenID: "tok_node"}
	for i := range 2 {
		if d := l.wait(node, "/v1/nodes/n1/reports"); d != 0 {
			t.Fatalf("n1's request %d refused (wait %s) within its burst", i, d)
		}
	}
	if d := l.wait(node, "/v1/nodes/n1/snapshot"); d == 0 {
		t.Fatal("n1 over its burst was admitted")
	}
	if d, _ := l.exhausted(limiterKey("tok_node", "/v1/nodes/n1/snapshot")); d == 0 {
		t.Fatal("the early check does not see n1's empty bucket")
	}
	if d := l.wait(node, "/v1/nodes/n2/snapshot"); d != 0 {
		t.Fatalf("n2, sharing n1's token, refused (wait %s): the limit is per node", d)
	}
	if d, _ := l.exhausted(limiterKey("tok_node", "/v1/nodes/n2")); d != 0 {
		t.Fatal("the early check refuses n2 for n1's bucket")
	}
	tenant := auth.Principal{Kind: store.TokenTenant, TokenID: "tok_tenant"}
	l.wait(tenant, "/v1/nodes/a/reports")
	l.wait(tenant, "/v1/nodes/b/reports")
	if d := l.wait(tenant, "/v1/nodes/c/reports"); d == 0 {
		t.Fatal("a tenant token got a bucket per path")
	}
}
