package api_test

import (
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/fulcrumlb/fulcrum/internal/testcerts"
	"github.com/fulcrumlb/fulcrum/internal/testenv"
)

// haproxyBinary finds haproxy or fails the test (internal/testenv).
func haproxyBinary(t *testing.T) string {
	t.Helper()
	return testenv.RequireHAProxy(t)
}

// pcreRejectedRule is a routing rule whose path regex Go's RE2 accepts and
// HAProxy's PCRE2 (not in UTF mode) rejects: \x{100} is above 0xff.
func pcreRejectedRule(listener string) map[string]any {
	return map[string]any{"listener_id": listener, "priority": 20,
		"conditions": []any{map[string]any{"field": "path", "match": "regex", "values": []string{`^/\x{100}`}}},
		"action":     map[string]any{"type": "deny"}}
}

// wantRejected checks a 422 haproxy-rejected naming HAProxy's regex error on field.
func wantRejected(t *testing.T, what string, res response, field string) {
	t.Helper()
	if res.Status != http.StatusUnprocessableEntity || res.ProblemType() != "haproxy-rejected" {
		t.Fatalf("%s: %d %s, want 422 haproxy-rejected", what, res.Status, res.Raw)
	}
	if res.Body["title"] != "HAProxy rejects the configuration" {
		t.Errorf("%s: title %q", what, res.Body["title"])
	}
	msg, ok := res.FieldMessage(field)
	if !ok || !strings.Contains(msg, `regex '^/\x{100}' is invalid`) {
		t.Errorf("%s: errors %v, want %s naming HAProxy's regex error", what, res.Body["errors"], field)
	}
	if detail, _ := res.Body["detail"].(string); !strings.Contains(detail, "is invalid") || !strings.Contains(detail, "Nothing was stored") {
		t.Errorf("%s: detail %q", what, detail)
	}
	if strings.Contains(string(res.Raw), os.TempDir()+"/fulcrum-dry-run-") {
		t.Errorf("%s: the answer names the temporary file: %s", what, res.Raw)
	}
}

func TestDryRunChecksWithHAProxy(t *testing.T) {
	t.Parallel()
	b := setup(t, withHAProxy(haproxyBinary(t)))
	tr := b.buildTree(b.TokenA)
	rules := b.count(b.TokenA, "/v1/routing-rules")
	ruleBefore := b.do(b.TokenA, "GET", "/v1/routing-rules/"+tr.Rule, nil).Raw

	// Valid dry runs of every kind of the load balancer pass the check; the
	// load balancer has an https listener, so its certificate is written too.
	certPEM, keyPEM := testcerts.SelfSigned(t, "dry.example.test")
	cert := b.create(b.TokenA, "/v1/certificates", map[string]any{"name": "dry", "certificate": certPEM, "private_key": keyPEM})
	valid := []struct{ method, path string }{
		{"POST", "/v1/load-balancers"},
		{"PATCH", "/v1/load-balancers/" + tr.LB},
		{"POST", "/v1/listeners"},
		{"PATCH", "/v1/listeners/" + tr.HTTPSListener},
		{"POST", "/v1/pools"},
		{"PATCH", "/v1/pools/" + tr.Pool},
		{"POST", "/v1/members"},
		{"PATCH", "/v1/members/" + tr.Member},
		{"POST", "/v1/routing-rules"},
		{"PATCH", "/v1/routing-rules/" + tr.Rule},
	}
	bodies := []map[string]any{
		{"name": "dry"},
		{"description": "dry"},
		{"load_balancer_id": tr.LB, "protocol": "http", "port": 8080, "default_pool_id": tr.Pool, "allowed_cidrs": []string{"10.0.0.0/8"}},
		{"certificate_ids": []string{tr.Cert, cert}, "hsts": map[string]any{"max_age_seconds": 600}},
		{"load_balancer_id": tr.LB, "protocol": "http", "name": "dry", "algorithm": "least_connections",
			"session_persistence": map[string]any{"type": "cookie_insert", "cookie_name": "srv"}},
		{"health_monitor": map[string]any{"type": "http", "path": "/ready", "expected_codes": "200-299"}},
		{"pool_id": tr.Pool, "address": "backend.example.test", "port": 8443, "weight": 5},
		{"weight": 0},
		{"listener_id": tr.Listener, "priority": 30,
			"conditions": []any{map[string]any{"field": "path", "match": "regex", "values": []string{`^/api/v[0-9]+/`}}},
			"action":     map[string]any{"type": "forward", "forward": map[string]any{"pools": []any{map[string]any{"pool_id": tr.Pool}}}}},
		{"conditions": []any{map[string]any{"field": "header", "key": "X-Env", "match": "regex", "values": []string{`^(dev|test)$`}}}},
	}
	for i, v := range valid {
		if res := b.do(b.TokenA, v.method, v.path+"?dry_run=true", bodies[i]); res.Status != http.StatusOK {
			t.Errorf("dry run %s %s: %d %s", v.method, v.path, res.Status, res.Raw)
		}
	}

	// A regex HAProxy rejects: 422 naming the value, nothing stored.
	res := b.do(b.TokenA, "POST", "/v1/routing-rules?dry_run=true", pcreRejectedRule(tr.Listener))
	wantRejected(t, "dry run POST", res, "conditions[0].values[0]")
	res = b.do(b.TokenA, "PATCH", "/v1/routing-rules/"+tr.Rule+"?dry_run=true", map[string]any{
		"conditions": []any{map[string]any{"field": "host", "match": "exact", "values": []string{"www.example.test"}},
			map[string]any{"field": "path", "match": "regex", "values": []string{"^/ok$", `^/\x{100}`}}}})
	wantRejected(t, "dry run PATCH", res, "conditions[1].values[1]")
	if n := b.count(b.TokenA, "/v1/routing-rules"); n != rules {
		t.Errorf("%d routing rules after the rejected dry runs, want %d", n, rules)
	}
	if got := b.do(b.TokenA, "GET", "/v1/routing-rules/"+tr.Rule, nil).Raw; string(got) != string(ruleBefore) {
		t.Errorf("rule changed by a rejected dry run:\nbefore %s\nafter  %s", ruleBefore, got)
	}

	// Without dry_run the same rule is stored: writes are never checked with
	// HAProxy; the agent leaves such a load balancer at its last good version.
	bad := b.create(b.TokenA, "/v1/routing-rules", pcreRejectedRule(tr.Listener))

	// From then on a dry run of anything of that load balancer is rejected
	// (the agent would not apply it either), naming the rule's listener...
	res = b.do(b.TokenA, "POST", "/v1/members?dry_run=true", map[string]any{"pool_id": tr.Pool, "address": "10.1.2.3", "port": 80})
	if res.Status != http.StatusUnprocessableEntity || res.ProblemType() != "haproxy-rejected" {
		t.Fatalf("dry run of a member of a broken load balancer: %d %s", res.Status, res.Raw)
	}
	if msg, _ := res.FieldMessage("body"); !strings.Contains(msg, "frontend "+tr.Listener) || !strings.Contains(msg, bad+"_c0") {
		t.Errorf("dry run of a member of a broken load balancer: errors %v, want body naming the listener and the rule", res.Body["errors"])
	}
	// ...but disabling it renders nothing, so that dry run passes.
	if res := b.do(b.TokenA, "PATCH", "/v1/load-balancers/"+tr.LB+"?dry_run=true", map[string]any{"enabled": false}); res.Status != http.StatusOK {
		t.Errorf("dry run disabling the load balancer: %d %s", res.Status, res.Raw)
	}
	// Fixing the rule passes.
	if res := b.do(b.TokenA, "PATCH", "/v1/routing-rules/"+bad+"?dry_run=true", map[string]any{
		"conditions": []any{map[string]any{"field": "path", "match": "regex", "values": []string{`^/\x{ff}`}}}}); res.Status != http.StatusOK {
		t.Errorf("dry run fixing the rule: %d %s", res.Status, res.Raw)
	}

	// Another tenant's load balancer is not affected.
	trB := b.buildTree(b.TokenB)
	if res := b.do(b.TokenB, "POST", "/v1/members?dry_run=true", map[string]any{"pool_id": trB.Pool, "address": "10.1.2.3", "port": 80}); res.Status != http.StatusOK {
		t.Errorf("dry run on tenant B: %d %s", res.Status, res.Raw)
	}
}

func TestDryRunWithoutHAProxy(t *testing.T) {
	t.Parallel()
	for name, path := range map[string]string{"unset": "", "not found": "/nonexistent/haproxy"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, withHAProxy(path))
			tr := b.buildTree(b.TokenA)
			if res := b.do(b.TokenA, "POST", "/v1/routing-rules?dry_run=true", pcreRejectedRule(tr.Listener)); res.Status != http.StatusOK {
				t.Errorf("dry run without HAProxy: %d %s, want 200 (check skipped)", res.Status, res.Raw)
			}
		})
	}
}
