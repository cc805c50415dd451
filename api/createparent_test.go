package api_test

import (
	"context"
	"net/http"
	"testing"
)

// TestCreateUnderParent: a create reads only what it needs of its parent
// (store.GetLiveParent) and still refuses a parent that is another tenant's
// or missing (404 naming the field) or being deleted (409), and records the
// parent's load balancer.
func TestCreateUnderParent(t *testing.T) {
	b := setup(t)
	ctx := context.Background()
	trA, trB := b.buildTree(b.TokenA), b.buildTree(b.TokenB)

	m := b.must(http.StatusCreated, b.TokenA, http.MethodPost, "/v1/members", map[string]any{"pool_id": trA.Pool, "address": "10.7.0.1", "port": 80})
	if m["pool_id"] != trA.Pool || m["load_balancer_id"] != trA.LB {
		t.Errorf("member: pool_id %v load_balancer_id %v, want %s %s", m["pool_id"], m["load_balancer_id"], trA.Pool, trA.LB)
	}
	for _, c := range []struct{ path, field string }{
		{"/v1/members", "pool_id"}, {"/v1/pools", "load_balancer_id"}, {"/v1/listeners", "load_balancer_id"},
	} {
		body := func(parent string) map[string]any {
			switch c.path {
			case "/v1/members":
				return map[string]any{"pool_id": parent, "address": "10.7.0.2", "port": 80}
			case "/v1/pools":
				return map[string]any{"load_balancer_id": parent, "protocol": "http"}
			}
			return map[string]any{"load_balancer_id": parent, "protocol": "http", "port": 18080}
		}
		parentB := trB.LB
		if c.field == "pool_id" {
			parentB = trB.Pool
		}
		res := b.do(b.TokenA, http.MethodPost, c.path, body(parentB))
		if res.Status != http.StatusNotFound || !bytesContain(res.Raw, c.field) {
			t.Errorf("POST %s under tenant B's parent: %d %s, want 404 naming %s", c.path, res.Status, res.Raw, c.field)
		}
	}

	// Being deleted (as while nodes still serve it): 409.
	if _, err := b.Store.PoolForTests().Exec(ctx, "UPDATE pools SET deleted_revision = revision WHERE id = $1", trA.Pool); err != nil {
		t.Fatal(err)
	}
	if res := b.do(b.TokenA, http.MethodPost, "/v1/members", map[string]any{"pool_id": trA.Pool, "address": "10.7.0.3", "port": 80}); res.Status != http.StatusConflict {
		t.Errorf("member in a pool being deleted: %d %s, want 409", res.Status, res.Raw)
	}
	if _, err := b.Store.PoolForTests().Exec(ctx, "UPDATE load_balancers SET deleted_revision = revision WHERE id = $1", trA.LB); err != nil {
		t.Fatal(err)
	}
	for _, body := range []map[string]any{{"load_balancer_id": trA.LB, "protocol": "http"}, {"load_balancer_id": trA.LB, "protocol": "http", "port": 18081}} {
		path := "/v1/pools"
		if body["port"] != nil {
			path = "/v1/listeners"
		}
		if res := b.do(b.TokenA, http.MethodPost, path, body); res.Status != http.StatusConflict {
			t.Errorf("POST %s under a load balancer being deleted: %d %s, want 409", path, res.Status, res.Raw)
		}
	}
}
