package api_test

import (
	"net/http"
	"testing"
)

// A node group's VRRP settings: defaults, validation naming the field, and
// the snapshot carrying them to the agents only when an interface is set.
func TestNodeGroupVRRPSettings(t *testing.T) {
	b := setup(t)
	path := "/v1/node-groups/" + b.GroupID
	g := b.must(http.StatusOK, b.Admin, "GET", path, nil)
	if g["vrrp_interface"] != "" || g["vrrp_router_id_min"] != float64(1) || g["vrrp_router_id_max"] != float64(255) || g["vrrp_advert_interval_ms"] != float64(100) {
		t.Fatalf("defaults: %v", g)
	}
	b.must(http.StatusOK, b.Node, "PUT", "/v1/nodes/n1", map[string]any{"node_group_id": b.GroupID})
	snap := b.must(http.StatusOK, b.Node, "GET", "/v1/nodes/n1/snapshot?wait=0s", nil)
	if _, ok := snap["vrrp"]; ok {
		t.Fatalf("snapshot of a group without vrrp_interface has vrrp: %v", snap["vrrp"])
	}

	for _, c := range []struct {
		body  map[string]any
		field string
	}{
		{map[string]any{"vrrp_interface": "eth0; reboot"}, "vrrp_interface"},
		{map[string]any{"vrrp_router_id_min": 0}, "vrrp_router_id_min"},
		{map[string]any{"vrrp_router_id_min": 50, "vrrp_router_id_max": 40}, "vrrp_router_id_max"},
		{map[string]any{"vrrp_advert_interval_ms": 5}, "vrrp_advert_interval_ms"},
		{map[string]any{"vrrp_advert_interval_ms": 105}, "vrrp_advert_interval_ms"},
	} {
		res := b.do(b.Admin, "PATCH", path, c.body)
		if res.Status != http.StatusBadRequest && res.Status != http.StatusUnprocessableEntity {
			t.Errorf("PATCH %v: %d, want 400/422", c.body, res.Status)
			continue
		}
		if !containsField(res.Body, c.field) {
			t.Errorf("PATCH %v: the problem does not name %s: %s", c.body, c.field, res.Raw)
		}
	}

	g = b.must(http.StatusOK, b.Admin, "PATCH", path, map[string]any{"vrrp_interface": "eth1", "vrrp_router_id_min": 10, "vrrp_router_id_max": 20, "vrrp_advert_interval_ms": 200})
	if g["vrrp_interface"] != "eth1" || g["vrrp_router_id_min"] != float64(10) || g["vrrp_advert_interval_ms"] != float64(200) {
		t.Fatalf("after PATCH: %v", g)
	}
	snap = b.must(http.StatusOK, b.Node, "GET", "/v1/nodes/n1/snapshot?wait=0s", nil)
	v, _ := snap["vrrp"].(map[string]any)
	if v["interface"] != "eth1" || v["router_id_min"] != float64(10) || v["router_id_max"] != float64(20) || v["advert_interval_ms"] != float64(200) {
		t.Fatalf("snapshot vrrp: %v", snap["vrrp"])
	}

	created := b.must(http.StatusCreated, b.Admin, "POST", "/v1/node-groups", map[string]any{"name": "edge", "vip_range": "10.60.0.0/24", "vrrp_interface": "bond0"})
	if created["vrrp_interface"] != "bond0" || created["vrrp_router_id_max"] != float64(255) {
		t.Fatalf("create: %v", created)
	}
	if res := b.do(b.Admin, "POST", "/v1/node-groups", map[string]any{"name": "edge2", "vip_range": "10.61.0.0/24", "vrrp_router_id_max": 300}); res.Status != http.StatusBadRequest && res.Status != http.StatusUnprocessableEntity {
		t.Fatalf("create with router id 300: %d %s", res.Status, res.Raw)
	}
}

// containsField says whether a problem+json body names field in its errors.
func containsField(body map[string]any, field string) bool {
	errs, _ := body["errors"].([]any)
	for _, e := range errs {
		if m, _ := e.(map[string]any); m["field"] == field {
			return true
		}
	}
	return false
}
