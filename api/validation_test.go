package api_test

import (
	"bytes"
	"maps"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/fulcrumlb/fulcrum/internal/testcerts"
)

// hasField says whether res names field; a field ending in "*" is a prefix.
func hasField(res response, field string) bool {
	for _, f := range res.Fields() {
		if f == field || strings.HasSuffix(field, "*") && strings.HasPrefix(f, strings.TrimSuffix(field, "*")) {
			return true
		}
	}
	return false
}

// TestValidation: every refused request answers a 4xx naming the field(s)
// in errors[].field, and writes nothing.
func TestValidation(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tr := b.buildTree(b.TokenA)
	tcpPool := b.create(b.TokenA, "/v1/pools", map[string]any{"load_balancer_id": tr.LB, "protocol": "tcp", "name": "tcp"})
	tcpListener := b.create(b.TokenA, "/v1/listeners", map[string]any{"load_balancer_id": tr.LB, "protocol": "tcp", "port": 9000, "default_pool_id": tcpPool})

	certPEM, keyPEM := testcerts.SelfSigned(t, "valid.example.test")
	_, otherKey := testcerts.SelfSigned(t, "other.example.test")
	oldPEM, oldKey := testcerts.Expired(t, "old.example.test")

	lsn := func(kv ...any) map[string]any {
		m := map[string]any{"load_balancer_id": tr.LB, "protocol": "http", "port": 8080}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i].(string)] = kv[i+1]
		}
		return m
	}
	pool := func(kv ...any) map[string]any {
		m := map[string]any{"load_balancer_id": tr.LB, "protocol": "http"}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i].(string)] = kv[i+1]
		}
		return m
	}
	mbr := func(kv ...any) map[string]any {
		m := map[string]any{"pool_id": tr.Pool, "address": "10.0.0.1", "port": 8080}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i].(string)] = kv[i+1]
		}
		return m
	}
	rule := func(kv ...any) map[string]any {
		m := map[string]any{"listener_id": tr.Listener, "priority": 50, "action": map[string]any{"type": "deny"}}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i].(string)] = kv[i+1]
		}
		return m
	}
	cond := func(field, match string, values ...string) []any {
		return []any{map[string]any{"field": field, "match": match, "values": values}}
	}
	cert := func(c, k string) map[string]any { return map[string]any{"certificate": c, "private_key": k} }
	big := strings.Repeat("x", 2<<20)

	cases := []struct {
		name         string
		method, path string
		body         any
		headers      []string
		status       int
		fields       []string
	}{
		// Listeners.
		{"port 0", "POST", "/v1/listeners", lsn("port", 0), nil, 422, []string{"port"}},
		{"port 70000", "POST", "/v1/listeners", lsn("port", 70000), nil, 422, []string{"port"}},
		{"port fraction", "POST", "/v1/listeners", lsn("port", 80.5), nil, 422, []string{"port"}},
		{"port string", "POST", "/v1/listeners", lsn("port", "80"), nil, 422, []string{"port"}},
		{"protocol udp", "POST", "/v1/listeners", lsn("protocol", "udp"), nil, 422, []string{"protocol"}},
		{"missing port", "POST", "/v1/listeners", map[string]any{"load_balancer_id": tr.LB, "protocol": "http"}, nil, 422, []string{"port"}},
		{"bad CIDR", "POST", "/v1/listeners", lsn("allowed_cidrs", []string{"10.0.0.0/8", "10.0.0.300/33"}), nil, 422, []string{"allowed_cidrs[1]"}},
		{"bad denied CIDR", "POST", "/v1/listeners", lsn("denied_cidrs", []string{"nonsense"}), nil, 422, []string{"denied_cidrs[0]"}},
		{"https without certificates", "POST", "/v1/listeners", lsn("protocol", "https", "port", 8443), nil, 422, []string{"certificate_ids"}},
		{"certificates on http", "POST", "/v1/listeners", lsn("certificate_ids", []string{tr.Cert}), nil, 422, []string{"certificate_ids"}},
		{"unknown certificate", "POST", "/v1/listeners", lsn("protocol", "https", "port", 8443, "certificate_ids", []string{tr.Cert, "cert_01aaaaaaaaaaaaaaaaaaaaaaaa"}), nil, 422, []string{"certificate_ids[1]"}},
		{"tcp pool for http", "POST", "/v1/listeners", lsn("default_pool_id", tcpPool), nil, 422, []string{"default_pool_id"}},
		{"zero timeout", "POST", "/v1/listeners", lsn("timeouts", map[string]any{"client_ms": 0}), nil, 422, []string{"timeouts.client_ms"}},
		{"unknown nested field", "POST", "/v1/listeners", lsn("timeouts", map[string]any{"x": 1}), nil, 422, []string{"timeouts.x"}},
		{"hsts on http", "POST", "/v1/listeners", lsn("hsts", map[string]any{}), nil, 422, []string{"hsts"}},
		{"request rate on tcp", "POST", "/v1/listeners", lsn("protocol", "tcp", "rate_limit", map[string]any{"per_second": 10}), nil, 422, []string{"rate_limit.type"}},
		{"several at once", "POST", "/v1/listeners", lsn("port", 0, "protocol", "udp", "connection_limit", -1), nil, 422, []string{"port", "protocol", "connection_limit"}},
		{"duplicate port", "POST", "/v1/listeners", lsn("port", 80), nil, 409, []string{"port"}},
		// Load balancers: names, labels, unknown fields.
		{"unknown field", "POST", "/v1/load-balancers", map[string]any{"name": "x", "bogus": 1}, nil, 422, []string{"bogus"}},
		{"newline in name", "POST", "/v1/load-balancers", map[string]any{"name": "two\nlines"}, nil, 422, []string{"name"}},
		{"tab in name", "POST", "/v1/load-balancers", map[string]any{"name": "a\tb"}, nil, 422, []string{"name"}},
		{"NUL in name", "POST", "/v1/load-balancers", map[string]any{"name": "a\x00b"}, nil, 422, []string{"name"}},
		{"line separator in name", "POST", "/v1/load-balancers", map[string]any{"name": "a\u2028b"}, nil, 422, []string{"name"}},
		{"name a number", "POST", "/v1/load-balancers", map[string]any{"name": 5}, nil, 422, []string{"name"}},
		{"name too long", "POST", "/v1/load-balancers", map[string]any{"name": strings.Repeat("n", 256)}, nil, 422, []string{"name"}},
		{"description too long", "POST", "/v1/load-balancers", map[string]any{"description": strings.Repeat("d", 1025)}, nil, 422, []string{"description"}},
		{"newline in label value", "POST", "/v1/load-balancers", map[string]any{"labels": map[string]string{"env": "a\nb"}}, nil, 422, []string{"labels.env"}},
		{"control in label value", "POST", "/v1/load-balancers", map[string]any{"labels": map[string]string{"env": "a\x01"}}, nil, 422, []string{"labels.env"}},
		{"invalid label key", "POST", "/v1/load-balancers", map[string]any{"labels": map[string]string{"Bad Key": "x"}}, nil, 422, []string{"labels*"}},
		{"label key with newline", "POST", "/v1/load-balancers", map[string]any{"labels": map[string]string{"a\nb": "x"}}, nil, 422, []string{"labels*"}},
		{"label value too long", "POST", "/v1/load-balancers", map[string]any{"labels": map[string]string{"env": strings.Repeat("v", 256)}}, nil, 422, []string{"labels*"}},
		{"labels not a map", "POST", "/v1/load-balancers", map[string]any{"labels": []string{"env"}}, nil, 422, []string{"labels"}},
		{"duplicate name", "POST", "/v1/load-balancers", map[string]any{"name": "web"}, nil, 409, []string{"name"}},
		// Pools.
		{"timeout over interval", "POST", "/v1/pools", pool("health_monitor", map[string]any{"type": "http", "interval_ms": 1000, "timeout_ms": 2000}), nil, 422, []string{"health_monitor.timeout_ms"}},
		{"bad expected codes", "POST", "/v1/pools", pool("health_monitor", map[string]any{"type": "http", "expected_codes": "abc"}), nil, 422, []string{"health_monitor.expected_codes"}},
		{"http fields on tcp monitor", "POST", "/v1/pools", pool("health_monitor", map[string]any{"type": "tcp", "path": "/x"}), nil, 422, []string{"health_monitor.path"}},
		{"cookie on tcp pool", "POST", "/v1/pools", pool("protocol", "tcp", "session_persistence", map[string]any{"type": "cookie_insert"}), nil, 422, []string{"session_persistence.type"}},
		{"url_param without hash_key", "POST", "/v1/pools", pool("algorithm", "url_param"), nil, 422, []string{"hash_key"}},
		{"header without hash_key", "POST", "/v1/pools", pool("algorithm", "header"), nil, 422, []string{"hash_key"}},
		{"uri on tcp pool", "POST", "/v1/pools", pool("protocol", "tcp", "algorithm", "uri"), nil, 422, []string{"algorithm"}},
		{"algorithm unknown", "POST", "/v1/pools", pool("algorithm", "fastest"), nil, 422, []string{"algorithm"}},
		{"duplicate pool name", "POST", "/v1/pools", pool("name", "app"), nil, 409, []string{"name"}},
		// Members.
		{"bad address", "POST", "/v1/members", mbr("address", "not a host!"), nil, 422, []string{"address"}},
		{"address with zone", "POST", "/v1/members", mbr("address", "fe80::1%eth0"), nil, 422, []string{"address"}},
		{"weight 300", "POST", "/v1/members", mbr("weight", 300), nil, 422, []string{"weight"}},
		{"weight -1", "POST", "/v1/members", mbr("weight", -1), nil, 422, []string{"weight"}},
		{"member port 0", "POST", "/v1/members", mbr("port", 0), nil, 422, []string{"port"}},
		{"missing address", "POST", "/v1/members", map[string]any{"pool_id": tr.Pool, "port": 80}, nil, 422, []string{"address"}},
		{"duplicate member", "POST", "/v1/members", mbr("address", "127.0.0.1", "port", 9001), nil, 409, []string{"address"}},
		// Routing rules.
		{"rule on tcp listener", "POST", "/v1/routing-rules", rule("listener_id", tcpListener), nil, 422, []string{"listener_id"}},
		{"bad regex", "POST", "/v1/routing-rules", rule("conditions", cond("path", "regex", "^/ok$", "(unclosed")), nil, 422, []string{"conditions[0].values[1]"}},
		{"unknown condition field", "POST", "/v1/routing-rules", rule("conditions", cond("body", "exact", "x")), nil, 422, []string{"conditions[0].field"}},
		{"condition without values", "POST", "/v1/routing-rules", rule("conditions", []any{map[string]any{"field": "path", "values": []string{}}}), nil, 422, []string{"conditions[0].values"}},
		{"redirect with two targets", "POST", "/v1/routing-rules", rule("action", map[string]any{"type": "redirect",
			"redirect": map[string]any{"url": "https://example.com/", "prefix": "https://example.org"}}), nil, 422, []string{"action.redirect"}},
		{"redirect without target", "POST", "/v1/routing-rules", rule("action", map[string]any{"type": "redirect", "redirect": map[string]any{}}), nil, 422, []string{"action.redirect"}},
		{"forward without forward", "POST", "/v1/routing-rules", rule("action", map[string]any{"type": "forward"}), nil, 422, []string{"action.forward"}},
		{"forward to tcp pool", "POST", "/v1/routing-rules", rule("action", map[string]any{"type": "forward",
			"forward": map[string]any{"pools": []any{map[string]any{"pool_id": tcpPool}}}}), nil, 422, []string{"action.forward.pools[0].pool_id"}},
		{"fixed response status", "POST", "/v1/routing-rules", rule("action", map[string]any{"type": "fixed_response",
			"fixed_response": map[string]any{"status_code": 99}}), nil, 422, []string{"action.fixed_response.status_code"}},
		{"priority 0", "POST", "/v1/routing-rules", rule("priority", 0), nil, 422, []string{"priority"}},
		{"duplicate priority", "POST", "/v1/routing-rules", rule("priority", 10), nil, 409, []string{"priority"}},
		// Certificates.
		{"mismatched key", "POST", "/v1/certificates", cert(certPEM, otherKey), nil, 422, []string{"private_key"}},
		{"garbage PEM", "POST", "/v1/certificates", cert("hello", "world"), nil, 422, []string{"certificate", "private_key"}},
		{"key in certificate", "POST", "/v1/certificates", cert(keyPEM, keyPEM), nil, 422, []string{"certificate"}},
		{"expired certificate", "POST", "/v1/certificates", cert(oldPEM, oldKey), nil, 422, []string{"certificate"}},
		{"missing key", "POST", "/v1/certificates", map[string]any{"certificate": certPEM}, nil, 422, []string{"private_key"}},
		// Bodies that are not JSON objects.
		{"invalid JSON", "POST", "/v1/load-balancers", `{"name":`, nil, 400, []string{"body"}},
		{"JSON garbage", "POST", "/v1/listeners", `port=80`, nil, 400, []string{"body"}},
		{"trailing data", "POST", "/v1/load-balancers", `{} {}`, nil, 400, []string{"body"}},
		{"invalid UTF-8", "POST", "/v1/load-balancers", "{\"name\":\"\xff\"}", nil, 400, []string{"body"}},
		{"wrong Content-Type", "POST", "/v1/load-balancers", `{"name":"x"}`, []string{"Content-Type", "text/plain"}, 415, []string{"body"}},
		{"form Content-Type", "POST", "/v1/load-balancers", `name=x`, []string{"Content-Type", "application/x-www-form-urlencoded"}, 415, []string{"body"}},
		{"no Content-Type", "POST", "/v1/load-balancers", `{"name":"x"}`, []string{"Content-Type", ""}, 415, []string{"body"}},
		{"array body", "POST", "/v1/load-balancers", `[]`, nil, 422, []string{"body"}},
		{"null body", "POST", "/v1/load-balancers", `null`, nil, 422, []string{"body"}},
		{"empty body", "POST", "/v1/listeners", ``, nil, 422, []string{"body"}},
		{"body too large", "POST", "/v1/load-balancers", `{"description":"` + big + `"}`, nil, 413, []string{"body"}},
		// Parameters.
		{"dry_run not a boolean", "POST", "/v1/load-balancers?dry_run=maybe", map[string]any{}, nil, 422, []string{"dry_run"}},
		{"cascade not a boolean", "DELETE", "/v1/load-balancers/" + tr.LB + "?cascade=yes", nil, nil, 422, []string{"cascade"}},
		{"id too long", "GET", "/v1/pools/" + strings.Repeat("p", 65), nil, nil, 422, []string{"id"}},
		{"control in id", "PATCH", "/v1/pools/pool%01", map[string]any{}, nil, 422, []string{"id"}},
		{"control in filter", "GET", "/v1/pools?name=a%0Ab", nil, nil, 422, []string{"name"}},
		{"invalid UTF-8 in filter", "GET", "/v1/pools?name=%FF", nil, nil, 422, []string{"name"}},
		// PATCH validates the object as it would become.
		{"PATCH port", "PATCH", "/v1/listeners/" + tr.Listener, map[string]any{"port": 70000}, nil, 422, []string{"port"}},
		{"PATCH port taken", "PATCH", "/v1/listeners/" + tr.Listener, map[string]any{"port": 443}, nil, 409, []string{"port"}},
		{"PATCH CIDR", "PATCH", "/v1/listeners/" + tr.Listener, map[string]any{"allowed_cidrs": []string{"1.2.3.4/40"}}, nil, 422, []string{"allowed_cidrs[0]"}},
		{"PATCH to https", "PATCH", "/v1/listeners/" + tr.Listener, map[string]any{"protocol": "https"}, nil, 422, []string{"certificate_ids"}},
		{"PATCH algorithm", "PATCH", "/v1/pools/" + tr.Pool, map[string]any{"algorithm": "header"}, nil, 422, []string{"hash_key"}},
		{"PATCH monitor", "PATCH", "/v1/pools/" + tr.Pool, map[string]any{"health_monitor": map[string]any{"type": "tcp", "interval_ms": 500, "timeout_ms": 600}}, nil, 422, []string{"health_monitor.timeout_ms"}},
		{"PATCH cookie on tcp", "PATCH", "/v1/pools/" + tcpPool, map[string]any{"session_persistence": map[string]any{"type": "app_cookie", "cookie_name": "S"}}, nil, 422, []string{"session_persistence.type"}},
		{"PATCH address", "PATCH", "/v1/members/" + tr.Member, map[string]any{"address": "not a host!"}, nil, 422, []string{"address"}},
		{"PATCH weight", "PATCH", "/v1/members/" + tr.Member, map[string]any{"weight": 257}, nil, 422, []string{"weight"}},
		{"PATCH name", "PATCH", "/v1/load-balancers/" + tr.LB, map[string]any{"name": "a\rb"}, nil, 422, []string{"name"}},
		{"PATCH unknown field", "PATCH", "/v1/load-balancers/" + tr.LB, map[string]any{"vip_address": "127.77.0.9"}, nil, 422, []string{"vip_address"}},
		{"PATCH regex", "PATCH", "/v1/routing-rules/" + tr.Rule, map[string]any{"conditions": cond("host", "regex", "*")}, nil, 422, []string{"conditions[0].values[0]"}},
		{"PATCH redirect", "PATCH", "/v1/routing-rules/" + tr.Rule, map[string]any{"action": map[string]any{"type": "redirect",
			"redirect": map[string]any{"url": "https://a.example/", "host": "b.example"}}}, nil, 422, []string{"action.redirect"}},
		{"PATCH certificate alone", "PATCH", "/v1/certificates/" + tr.Cert, map[string]any{"certificate": certPEM}, nil, 422, []string{"private_key"}},
		{"PATCH mismatched pair", "PATCH", "/v1/certificates/" + tr.Cert, cert(certPEM, otherKey), nil, 422, []string{"private_key"}},
		{"PATCH expired pair", "PATCH", "/v1/certificates/" + tr.Cert, cert(oldPEM, oldKey), nil, 422, []string{"certificate"}},
		{"PATCH invalid JSON", "PATCH", "/v1/pools/" + tr.Pool, `{"retries":}`, nil, 400, []string{"body"}},
	}

	before := b.counts(b.TokenA)
	paths := append(tr.paths(), "/v1/pools/"+tcpPool, "/v1/listeners/"+tcpListener)
	raw := map[string][]byte{}
	for _, p := range paths {
		raw[p] = b.do(b.TokenA, http.MethodGet, p, nil).Raw
	}
	for _, c := range cases {
		res := b.do(b.TokenA, c.method, c.path, c.body, c.headers...)
		if res.Status >= 500 {
			t.Errorf("%s: server error %d: %s", c.name, res.Status, res.Raw)
			continue
		}
		if res.Status != c.status {
			t.Errorf("%s: status %d, want %d: %.300s", c.name, res.Status, c.status, res.Raw)
			continue
		}
		if ct := res.Header.Get("Content-Type"); ct != "application/problem+json" {
			t.Errorf("%s: Content-Type %q", c.name, ct)
		}
		for _, f := range c.fields {
			if !hasField(res, f) {
				t.Errorf("%s: errors name %v, not %s: %.300s", c.name, res.Fields(), f, res.Raw)
			}
		}
	}
	if after := b.counts(b.TokenA); !maps.Equal(before, after) {
		t.Errorf("refused requests wrote objects: %v → %v", before, after)
	}
	for _, p := range paths {
		if got := b.do(b.TokenA, http.MethodGet, p, nil).Raw; !bytes.Equal(got, raw[p]) {
			t.Errorf("refused requests changed %s:\nbefore %s\nafter  %s", p, raw[p], got)
		}
	}
}

// TestOddValues puts odd JSON values in every field of valid create and
// update bodies: the API never fails with a 5xx, and each 4xx names a field.
func TestOddValues(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tr := b.buildTree(b.TokenA)
	certPEM, keyPEM := testcerts.SelfSigned(t, "odd.example.test")
	bodies := []struct {
		method, path string
		body         map[string]any
	}{
		{"POST", "/v1/load-balancers", map[string]any{"name": "n", "description": "d", "labels": map[string]any{"k": "v"},
			"node_group_id": b.GroupID, "vip_address": "127.77.1.1", "enabled": true, "deletion_protection": false}},
		{"POST", "/v1/listeners", map[string]any{"load_balancer_id": tr.LB, "protocol": "http", "port": 8080, "default_pool_id": tr.Pool,
			"connection_limit": 10, "rate_limit": map[string]any{"per_second": 5}, "allowed_cidrs": []any{"10.0.0.0/8"}, "denied_cidrs": []any{},
			"timeouts": map[string]any{"client_ms": 1000}, "insert_headers": map[string]any{"x_forwarded_for": true},
			"redirect_http_to_https": false, "compression": true}},
		{"POST", "/v1/pools", map[string]any{"load_balancer_id": tr.LB, "protocol": "http", "algorithm": "header", "hash_key": "X-User",
			"session_persistence": map[string]any{"type": "cookie_insert", "cookie_ttl_seconds": 60},
			"health_monitor":      map[string]any{"type": "http", "path": "/h", "expected_codes": "200"}, "retries": 1, "redispatch": true,
			"proxy_protocol": "v2", "drain_timeout_ms": 100, "tls_to_members": false}},
		{"POST", "/v1/members", map[string]any{"pool_id": tr.Pool, "address": "10.2.3.4", "port": 81, "weight": 3, "backup": false, "enabled": true, "max_connections": 9}},
		{"POST", "/v1/routing-rules", map[string]any{"listener_id": tr.Listener, "priority": 300,
			"conditions": []any{map[string]any{"field": "header", "key": "X-A", "match": "prefix", "values": []any{"v"}, "invert": false}},
			"action":     map[string]any{"type": "forward", "forward": map[string]any{"pools": []any{map[string]any{"pool_id": tr.Pool, "weight": 2}}}}}},
		{"POST", "/v1/certificates", map[string]any{"name": "odd", "certificate": certPEM, "private_key": keyPEM}},
		{"PATCH", "/v1/listeners/" + tr.Listener, map[string]any{"default_pool_id": tr.Pool, "timeouts": map[string]any{"server_ms": 5}, "allowed_cidrs": []any{"::/0"}}},
		{"PATCH", "/v1/pools/" + tr.Pool, map[string]any{"health_monitor": map[string]any{"type": "tcp"}, "retries": 2}},
		{"PATCH", "/v1/members/" + tr.Member, map[string]any{"address": "example.com", "weight": 0}},
		{"PATCH", "/v1/routing-rules/" + tr.Rule, map[string]any{"conditions": []any{}, "action": map[string]any{"type": "fixed_response", "fixed_response": map[string]any{"status_code": 204}}}},
		{"PATCH", "/v1/tenants/" + b.TenantA + "#admin", map[string]any{"name": "a2", "quotas": map[string]any{"pools": 5}}},
		{"POST", "/v1/tokens#admin", map[string]any{"kind": "tenant", "tenant_id": b.TenantB, "name": "t", "expires_at": "2999-01-01T00:00:00Z"}},
		{"POST", "/v1/node-groups#admin", map[string]any{"name": "g", "vip_range": "10.50.0.0/24"}},
	}
	odd := []any{nil, "", " ", "\u00e9\u4e2d", "x\x00", "\uFFFD", strings.Repeat("z", 300), 0, -1, 1e300, 9007199254740993, 1.5, true,
		[]any{}, []any{nil}, map[string]any{}, map[string]any{"": ""}, "lb_01aaaaaaaaaaaaaaaaaaaaaaaa", "127.77.0.1", "-1", "1e3"}
	n := 0
	for _, bd := range bodies {
		token, path := b.TokenA, bd.path
		if p, ok := strings.CutSuffix(path, "#admin"); ok {
			token, path = b.Admin, p
		}
		for _, field := range slices.Sorted(maps.Keys(bd.body)) {
			for _, v := range odd {
				body := maps.Clone(bd.body)
				body[field] = v
				q := "?dry_run=true"
				if path == "/v1/tokens" {
					q = "" // tokens have no dry run
				}
				res := b.do(token, bd.method, path+q, body)
				n++
				switch {
				case res.Status >= 500:
					t.Errorf("%s %s with %s=%#v: %d %s", bd.method, path, field, v, res.Status, res.Raw)
				case res.Status >= 400 && len(res.Fields()) == 0:
					t.Errorf("%s %s with %s=%#v: %d names no field: %s", bd.method, path, field, v, res.Status, res.Raw)
				}
			}
		}
	}
	t.Logf("%d requests", n)
}
