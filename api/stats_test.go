package api_test

import (
	"encoding/json"
	"net/http"
	"testing"
)

// TestStatsPerObjectSummedOverNodes: the stats of a load balancer, its
// listeners, pools and members are the sums of what its nodes report (peaks
// summed, response times weighted by requests), every counter present.
func TestStatsPerObjectSummedOverNodes(t *testing.T) {
	t.Parallel()
	b := setup(t)
	a := b.buildTree(b.TokenA)
	other := b.create(b.TokenA, "/v1/members", map[string]any{"pool_id": a.Pool, "address": "127.0.0.1", "port": 9002})
	b.register("n1")
	b.register("n2")
	rev := b.revision()
	type m = map[string]any
	b.report("n1", rev, m{"stats": []m{{
		"load_balancer_id": a.LB, "requests_total": 30, "connections_current": 1, "connections_peak": 4, "response_time_ms": 10,
		"listeners": []m{{"id": a.Listener, "requests_total": 30, "connections_peak": 4, "responses_2xx": 30}},
		"pools": []m{{"id": a.Pool, "requests_total": 30, "response_time_ms": 10, "members": []m{
			{"id": a.Member, "requests_total": 20, "response_time_ms": 10, "connections_peak": 2},
			{"id": other, "requests_total": 10, "response_time_ms": 10},
		}}},
	}}})
	b.report("n2", rev, m{"stats": []m{{
		"load_balancer_id": a.LB, "requests_total": 10, "connections_peak": 1, "response_time_ms": 50,
		"listeners": []m{{"id": a.Listener, "requests_total": 10, "connections_peak": 1, "responses_5xx": 10}},
		"pools": []m{{"id": a.Pool, "requests_total": 10, "response_time_ms": 50, "members": []m{
			{"id": a.Member, "requests_total": 10, "response_time_ms": 50, "connections_peak": 1},
		}}},
	}}})

	res := b.do(b.TokenA, http.MethodGet, "/v1/load-balancers/"+a.LB+"/stats", nil)
	if res.Status != http.StatusOK {
		t.Fatalf("stats: %d %s", res.Status, res.Raw)
	}
	type counters struct {
		ID                 string `json:"id"`
		RequestsTotal      *int64 `json:"requests_total"`
		ConnectionsCurrent *int64 `json:"connections_current"`
		ConnectionsPeak    *int64 `json:"connections_peak"`
		Responses2xx       *int64 `json:"responses_2xx"`
		Responses5xx       *int64 `json:"responses_5xx"`
		Errors             *int64 `json:"errors"`
		ResponseTimeMs     *int64 `json:"response_time_ms"`
	}
	var got struct {
		counters
		NodesReporting int        `json:"nodes_reporting"`
		Listeners      []counters `json:"listeners"`
		Pools          []struct {
			counters
			Members []counters `json:"members"`
		} `json:"pools"`
	}
	if err := json.Unmarshal(res.Raw, &got); err != nil {
		t.Fatal(err)
	}
	check := func(what string, c counters, requests, peak, rtime int64) {
		t.Helper()
		if c.RequestsTotal == nil || c.ConnectionsPeak == nil || c.ResponseTimeMs == nil || c.Errors == nil || c.ConnectionsCurrent == nil {
			t.Errorf("%s: a counter is missing: %+v", what, c)
			return
		}
		if *c.RequestsTotal != requests || *c.ConnectionsPeak != peak || *c.ResponseTimeMs != rtime {
			t.Errorf("%s: requests %d peak %d response time %d, want %d %d %d", what, *c.RequestsTotal, *c.ConnectionsPeak, *c.ResponseTimeMs, requests, peak, rtime)
		}
	}
	if got.NodesReporting != 2 {
		t.Errorf("nodes_reporting %d, want 2", got.NodesReporting)
	}
	// (30×10 + 10×50) / 40 = 20; (20×10 + 10×50) / 30 = 23.
	check("load balancer", got.counters, 40, 5, 20)
	if len(got.Listeners) != 1 || got.Listeners[0].ID != a.Listener {
		t.Fatalf("listeners %+v, want %s", got.Listeners, a.Listener)
	}
	check("listener", got.Listeners[0], 40, 5, 0)
	if l := got.Listeners[0]; *l.Responses2xx != 30 || *l.Responses5xx != 10 {
		t.Errorf("listener responses: 2xx %d 5xx %d, want 30 and 10", *l.Responses2xx, *l.Responses5xx)
	}
	if len(got.Pools) != 1 || got.Pools[0].ID != a.Pool || len(got.Pools[0].Members) != 2 {
		t.Fatalf("pools %+v, want %s with 2 members", got.Pools, a.Pool)
	}
	check("pool", got.Pools[0].counters, 40, 0, 20)
	for _, mb := range got.Pools[0].Members {
		switch mb.ID {
		case a.Member:
			check("member", mb, 30, 3, 23)
		case other:
			check("other member", mb, 10, 0, 10)
		default:
			t.Errorf("unknown member %s", mb.ID)
		}
	}
	if got.Pools[0].Members[0].ID > got.Pools[0].Members[1].ID {
		t.Errorf("members not ordered by id: %s, %s", got.Pools[0].Members[0].ID, got.Pools[0].Members[1].ID)
	}
}

// TestStatsOtherTenant: another tenant's load balancer's stats are 404, the
// same answer as a load balancer that does not exist.
func TestStatsOtherTenant(t *testing.T) {
	t.Parallel()
	b := setup(t)
	a := b.buildTree(b.TokenA)
	b.register("n1")
	b.report("n1", b.revision(), map[string]any{"stats": []map[string]any{{"load_balancer_id": a.LB, "requests_total": 7,
		"listeners": []map[string]any{{"id": a.Listener, "requests_total": 7}}}}})
	path := "/v1/load-balancers/" + a.LB + "/stats"
	if res := b.do(b.TokenA, http.MethodGet, path, nil); res.Status != http.StatusOK || res.Body["requests_total"] != float64(7) {
		t.Fatalf("A's stats: %d %s", res.Status, res.Raw)
	}
	res := b.do(b.TokenB, http.MethodGet, path, nil)
	missing := b.do(b.TokenB, http.MethodGet, "/v1/load-balancers/lb_01aaaaaaaaaaaaaaaaaaaaaaaa/stats", nil)
	if res.Status != http.StatusNotFound || res.ProblemType() != "not-found" {
		t.Fatalf("B GET %s: %d %s, want 404", path, res.Status, res.Raw)
	}
	if res.Body["title"] != missing.Body["title"] || missing.Status != http.StatusNotFound {
		t.Errorf("B's answer differs from a missing load balancer's:\n got %s\nwant %s", res.Raw, missing.Raw)
	}
}
