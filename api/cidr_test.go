package api_test

import (
	"fmt"
	"net/http"
	"slices"
	"testing"
)

// TestCIDRNormalization: routing-rule source_ip values are stored and
// answered the way listener CIDRs are: host bits cleared, a bare address as a
// single-address prefix, IPv6 in canonical form.
func TestCIDRNormalization(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tr := b.buildTree(b.TokenA)
	written := []string{"10.1.2.3/8", "192.168.1.7", "2001:DB8::1/32", "172.16.5.4/12"}
	want := []string{"10.0.0.0/8", "192.168.1.7/32", "2001:db8::/32", "172.16.0.0/12"}
	values := func(obj map[string]any) []string {
		var out []string
		for _, v := range obj["conditions"].([]any)[0].(map[string]any)["values"].([]any) {
			out = append(out, fmt.Sprint(v))
		}
		return out
	}
	cond := func(vs []string) []any {
		return []any{map[string]any{"field": "source_ip", "values": vs}}
	}

	created := b.must(http.StatusCreated, b.TokenA, "POST", "/v1/routing-rules", map[string]any{"listener_id": tr.Listener, "priority": 310,
		"conditions": cond(written), "action": map[string]any{"type": "deny"}})
	if got := values(created); !slices.Equal(got, want) {
		t.Fatalf("POST answered source_ip %v, want %v", got, want)
	}
	id := created["id"].(string)
	if got := values(b.must(http.StatusOK, b.TokenA, "GET", "/v1/routing-rules/"+id, nil)); !slices.Equal(got, want) {
		t.Fatalf("GET answered source_ip %v, want %v", got, want)
	}
	patched := b.must(http.StatusOK, b.TokenA, "PATCH", "/v1/routing-rules/"+id, map[string]any{"conditions": cond([]string{"10.200.3.4/16"})})
	if got := values(patched); !slices.Equal(got, []string{"10.200.0.0/16"}) {
		t.Fatalf("PATCH answered source_ip %v, want [10.200.0.0/16]", got)
	}
	dry := b.must(http.StatusOK, b.TokenA, "POST", "/v1/routing-rules?dry_run=true", map[string]any{"listener_id": tr.Listener, "priority": 311,
		"conditions": cond([]string{"10.1.2.3/8"}), "action": map[string]any{"type": "deny"}})
	if got := values(dry); !slices.Equal(got, []string{"10.0.0.0/8"}) {
		t.Fatalf("dry run answered source_ip %v, want [10.0.0.0/8]", got)
	}

	// Listeners do the same with allowed_cidrs and denied_cidrs.
	lsn := b.must(http.StatusOK, b.TokenA, "PATCH", "/v1/listeners/"+tr.Listener, map[string]any{"allowed_cidrs": written, "denied_cidrs": []string{"10.1.2.3/8"}})
	var got []string
	for _, v := range lsn["allowed_cidrs"].([]any) {
		got = append(got, fmt.Sprint(v))
	}
	if !slices.Equal(got, want) || fmt.Sprint(lsn["denied_cidrs"]) != "[10.0.0.0/8]" {
		t.Fatalf("listener CIDRs %v / %v, want %v / [10.0.0.0/8]", got, lsn["denied_cidrs"], want)
	}

	// A value that is no CIDR is refused naming it.
	res := b.do(b.TokenA, "POST", "/v1/routing-rules", map[string]any{"listener_id": tr.Listener, "priority": 312,
		"conditions": cond([]string{"10.0.0.0/8", "10.1.2.3/40"}), "action": map[string]any{"type": "deny"}})
	if res.Status != http.StatusUnprocessableEntity || !hasField(res, "conditions[0].values[1]") {
		t.Fatalf("bad CIDR: %d %v", res.Status, res.Body)
	}
}
