package api_test

import (
	"fmt"
	"net/http"
	"testing"
)

// Writes to different node groups no longer share one lock (store.WriteIn):
// a tenant's quota still holds when its creates race in two groups.
func TestQuotaParallelAcrossNodeGroups(t *testing.T) {
	t.Parallel()
	b := setup(t)
	edge := b.create(b.Admin, "/v1/node-groups", map[string]any{"name": "edge", "vip_range": "127.78.0.0/16"})
	groups := []string{b.GroupID, edge}
	b.setQuota(b.TenantA, "load_balancers", 12)
	// Two load balancers with a pool each, one per group, for the members.
	var pools []string
	for i, g := range groups {
		lb := b.create(b.TokenA, "/v1/load-balancers", map[string]any{"name": fmt.Sprintf("base-%d", i), "node_group_id": g})
		pools = append(pools, b.create(b.TokenA, "/v1/pools", map[string]any{"load_balancer_id": lb, "protocol": "http"}))
	}
	b.setQuota(b.TenantA, "load_balancers", 10)
	reqs := make([]request, 48)
	for i := range reqs {
		reqs[i] = request{token: b.TokenA, method: http.MethodPost, path: "/v1/load-balancers",
			body: map[string]any{"name": fmt.Sprintf("lb-%02d", i), "node_group_id": groups[i%2]}}
	}
	reqs = append(reqs, request{token: b.TokenA, method: http.MethodPost, path: "/v1/load-balancers", body: map[string]any{"name": "lb-x"}},
		request{token: b.TokenA, method: http.MethodPost, path: "/v1/load-balancers", body: map[string]any{"name": "lb-y", "node_group_id": edge}})
	// 2 exist: 8 of 50 are created.
	res := b.parallel(reqs)
	if got := statuses(res); got[http.StatusCreated] != 8 || got[http.StatusConflict] != 42 {
		t.Errorf("load balancers: answers %v, want 8 × 201 and 42 × 409", got)
	}
	if n := len(b.ids(b.TokenA, "/v1/load-balancers")); n != 10 {
		t.Errorf("%d load balancers, quota 10", n)
	}

	b.setQuota(b.TenantA, "members", 10)
	reqs = make([]request, 50)
	for i := range reqs {
		reqs[i] = request{token: b.TokenA, method: http.MethodPost, path: "/v1/members",
			body: map[string]any{"pool_id": pools[i%2], "address": fmt.Sprintf("10.0.0.%d", i+1), "port": 80}}
	}
	quotaRace(t, b, "/v1/members", reqs)
}

// One Idempotency-Key raced with two bodies in two node groups creates one
// load balancer: every retry of the winning body gets its answer, the other
// body 422.
func TestIdempotencyKeyAcrossNodeGroups(t *testing.T) {
	t.Parallel()
	b := setup(t)
	edge := b.create(b.Admin, "/v1/node-groups", map[string]any{"name": "edge", "vip_range": "127.78.0.0/16"})
	bodies := []map[string]any{{"name": "idem", "node_group_id": b.GroupID}, {"name": "idem", "node_group_id": edge}}
	reqs := make([]request, 20)
	for i := range reqs {
		reqs[i] = request{token: b.TokenA, method: http.MethodPost, path: "/v1/load-balancers", body: bodies[i%2],
			headers: []string{"Idempotency-Key", "groups-idem-1"}}
	}
	res := b.parallel(reqs)
	winner, id := -1, ""
	for i, r := range res {
		if r.Status == http.StatusCreated {
			if winner == -1 {
				winner, id = i%2, r.Body["id"].(string)
			}
			if i%2 != winner || r.Body["id"] != id {
				t.Errorf("request %d (body %d): 201 with id %v; body %d won with %s", i, i%2, r.Body["id"], winner, id)
			}
		}
	}
	if winner == -1 {
		t.Fatalf("no request created the load balancer: %v", statuses(res))
	}
	for i, r := range res {
		if i%2 != winner && r.Status != http.StatusUnprocessableEntity {
			t.Errorf("request %d with the other body: %d %s, want 422", i, r.Status, r.Raw)
		}
	}
	if ids := b.ids(b.TokenA, "/v1/load-balancers"); len(ids) != 1 || ids[0] != id {
		t.Fatalf("load balancers %v, want just %s", ids, id)
	}
}
