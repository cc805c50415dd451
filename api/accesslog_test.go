package api_test

import (
	"net/http"
	"testing"
)

// TestListenerAccessLog: access_log defaults to disabled, is set on create,
// replaced by PATCH, answered by GET and list, and a bad value is refused
// naming the field.
func TestListenerAccessLog(t *testing.T) {
	t.Parallel()
	b := setup(t, withHAProxy(haproxyBinary(t)))
	tr := b.buildTree(b.TokenA)
	enabled := func(obj map[string]any) any {
		al, ok := obj["access_log"].(map[string]any)
		if !ok {
			return nil
		}
		return al["enabled"]
	}
	if got := enabled(b.must(http.StatusOK, b.TokenA, "GET", "/v1/listeners/"+tr.Listener, nil)); got != false {
		t.Fatalf("a listener created without access_log: access_log.enabled = %v, want false", got)
	}
	on := map[string]any{"enabled": true}
	tcp := b.must(http.StatusCreated, b.TokenA, "POST", "/v1/listeners", map[string]any{"load_balancer_id": tr.LB, "protocol": "tcp", "port": 5432,
		"access_log": on})
	if got := enabled(tcp); got != true {
		t.Fatalf("POST with access_log enabled answered %v", tcp["access_log"])
	}
	id := tcp["id"].(string)
	if got := enabled(b.must(http.StatusOK, b.TokenA, "GET", "/v1/listeners/"+id, nil)); got != true {
		t.Fatalf("GET after create: access_log.enabled = %v", got)
	}
	// A PATCH naming other fields keeps it; one naming it replaces it.
	if got := enabled(b.must(http.StatusOK, b.TokenA, "PATCH", "/v1/listeners/"+id, map[string]any{"name": "db"})); got != true {
		t.Fatalf("PATCH of the name changed access_log to %v", got)
	}
	if got := enabled(b.must(http.StatusOK, b.TokenA, "PATCH", "/v1/listeners/"+id, map[string]any{"access_log": map[string]any{"enabled": false}})); got != false {
		t.Fatalf("PATCH disabling access_log answered %v", got)
	}
	b.must(http.StatusOK, b.TokenA, "PATCH", "/v1/listeners/"+tr.Listener, map[string]any{"access_log": on})
	for _, l := range b.listAll(b.TokenA, "/v1/listeners?load_balancer_id="+tr.LB) {
		if want := l["id"] == tr.Listener; enabled(l) != want {
			t.Errorf("list: listener %v access_log %v, want enabled=%v", l["id"], l["access_log"], want)
		}
	}
	// A dry run checks the config nodes would get, log lines included,
	// with haproxy -c.
	dry := b.must(http.StatusOK, b.TokenA, "POST", "/v1/listeners?dry_run=true", map[string]any{"load_balancer_id": tr.LB, "protocol": "https",
		"port": 8443, "certificate_ids": []string{tr.Cert}, "access_log": on})
	if got := enabled(dry); got != true {
		t.Errorf("dry run answered access_log %v", dry["access_log"])
	}
	for _, bad := range []any{map[string]any{"enabled": "yes"}, map[string]any{}, true, map[string]any{"enabled": true, "sample": 1}} {
		res := b.do(b.TokenA, "PATCH", "/v1/listeners/"+id, map[string]any{"access_log": bad})
		if res.Status != http.StatusBadRequest && res.Status != http.StatusUnprocessableEntity {
			t.Errorf("access_log %v: %d %v, want 400 or 422", bad, res.Status, res.Body)
			continue
		}
		named := false
		for _, f := range res.Fields() {
			if len(f) >= len("access_log") && f[:len("access_log")] == "access_log" {
				named = true
			}
		}
		if !named {
			t.Errorf("access_log %v: the problem names %v, not access_log: %v", bad, res.Fields(), res.Body)
		}
	}
}
