package api_test

import (
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/fulcrumlb/fulcrum/internal/testcerts"
)

var traceparentRE = regexp.MustCompile(`^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$`)

// TestProblemDetails checks the shape of every kind of error answer and the
// headers every answer carries.
func TestProblemDetails(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tr := b.buildTree(b.TokenA)
	errs := []struct {
		name, token, method, path string
		body                      any
		headers                   []string
		status                    int
		typ                       string
	}{
		{"no token", "", "GET", "/v1/load-balancers", nil, nil, 401, "unauthorized"},
		{"wrong kind", b.Admin, "GET", "/v1/load-balancers", nil, nil, 403, "forbidden"},
		{"not found", b.TokenA, "GET", "/v1/pools/pool_01aaaaaaaaaaaaaaaaaaaaaaaa", nil, nil, 404, "not-found"},
		{"no route", b.TokenA, "GET", "/v1/nothing-here", nil, nil, 404, "not-found"},
		{"method", b.TokenA, "PUT", "/v1/load-balancers/" + tr.LB, map[string]any{}, nil, 405, "method-not-allowed"},
		{"conflict", b.TokenA, "DELETE", "/v1/load-balancers/" + tr.LB, nil, nil, 409, "has-children"},
		{"stale", b.TokenA, "PATCH", "/v1/load-balancers/" + tr.LB, map[string]any{}, []string{"If-Match", `"77"`}, 412, "precondition-failed"},
		{"invalid", b.TokenA, "POST", "/v1/listeners", map[string]any{"load_balancer_id": tr.LB, "protocol": "tcp", "port": 0}, nil, 422, "validation"},
		{"not JSON", b.TokenA, "POST", "/v1/load-balancers", `{"name":`, nil, 400, "bad-request"},
		{"page token", b.TokenA, "GET", "/v1/load-balancers?page_token=%21", nil, nil, 400, "bad-request"},
	}
	for _, c := range errs {
		res := b.do(c.token, c.method, c.path, c.body, c.headers...)
		if res.Status != c.status {
			t.Errorf("%s: status %d, want %d: %s", c.name, res.Status, c.status, res.Raw)
			continue
		}
		if ct := res.Header.Get("Content-Type"); ct != "application/problem+json" {
			t.Errorf("%s: Content-Type %q", c.name, ct)
		}
		if typ, _ := res.Body["type"].(string); typ != "https://fulcrum.dev/problems/"+c.typ {
			t.Errorf("%s: type %q, want …/%s", c.name, typ, c.typ)
		}
		if title, _ := res.Body["title"].(string); title == "" {
			t.Errorf("%s: no title: %s", c.name, res.Raw)
		}
		if detail, _ := res.Body["detail"].(string); detail == "" {
			t.Errorf("%s: no detail: %s", c.name, res.Raw)
		}
		if res.Body["status"] != float64(c.status) {
			t.Errorf("%s: status member %v", c.name, res.Body["status"])
		}
		if c.status == 400 || c.status == 412 || c.status == 422 {
			if len(res.Fields()) == 0 {
				t.Errorf("%s: no errors[].field: %s", c.name, res.Raw)
			}
		}
		rid := res.Header.Get("X-Request-Id")
		if rid == "" || res.Body["request_id"] != rid {
			t.Errorf("%s: X-Request-Id %q, request_id %v", c.name, rid, res.Body["request_id"])
		}
		if tp := res.Header.Get("Traceparent"); !traceparentRE.MatchString(tp) {
			t.Errorf("%s: Traceparent %q", c.name, tp)
		}
	}
	if res := b.do("", "GET", "/v1/load-balancers", nil); !strings.HasPrefix(res.Header.Get("WWW-Authenticate"), "Bearer") {
		t.Errorf("401 without WWW-Authenticate: %v", res.Header)
	}

	// Successful answers carry the headers too, each request its own ids; a
	// client's request id is kept.
	seen := map[string]bool{}
	for range 3 {
		res := b.do(b.TokenA, "GET", "/v1/load-balancers/"+tr.LB, nil)
		rid, tp := res.Header.Get("X-Request-Id"), res.Header.Get("Traceparent")
		if rid == "" || !traceparentRE.MatchString(tp) || seen[rid] || seen[tp] {
			t.Errorf("GET: X-Request-Id %q Traceparent %q (seen before: %v)", rid, tp, seen[rid] || seen[tp])
		}
		seen[rid], seen[tp] = true, true
	}
	if got := b.do(b.TokenA, "GET", "/v1/load-balancers", nil, "X-Request-Id", "client-req-42").Header.Get("X-Request-Id"); got != "client-req-42" {
		t.Errorf("client X-Request-Id answered as %q", got)
	}
	// A client's trace is continued: same trace id, new span.
	parent := "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	tp := b.do(b.TokenA, "GET", "/v1/load-balancers", nil, "Traceparent", parent).Header.Get("Traceparent")
	if !strings.HasPrefix(tp, "00-4bf92f3577b34da6a3ce929d0e0e4736-") || tp == parent {
		t.Errorf("Traceparent %q does not continue %q", tp, parent)
	}
}

func TestOpenAPIDocumentIsPublic(t *testing.T) {
	t.Parallel()
	b := setup(t)
	res := b.do("", "GET", "/openapi.yaml", nil)
	if res.Status != http.StatusOK {
		t.Fatalf("GET /openapi.yaml: %d %s", res.Status, res.Raw)
	}
	if ct := res.Header.Get("Content-Type"); !strings.Contains(ct, "yaml") {
		t.Errorf("Content-Type %q", ct)
	}
	doc := string(res.Raw)
	if !strings.HasPrefix(doc, "openapi:") || !strings.Contains(doc, "/v1/load-balancers:") {
		t.Errorf("not the API document: %.200s", doc)
	}
	for _, p := range []string{"/healthz", "/readyz"} {
		b.must(http.StatusOK, "", "GET", p, nil)
	}
}

func TestAuthentication(t *testing.T) {
	t.Parallel()
	b := setup(t)
	id, secret, _ := strings.Cut(b.TokenA, ".")
	// A secret differing in its first character (never the same one: the
	// secret is random and may itself start with x).
	other := "x"
	if secret[0] == 'x' {
		other = "y"
	}
	for name, header := range map[string]string{
		"none":           "",
		"garbage":        "Bearer garbage",
		"empty bearer":   "Bearer ",
		"unknown id":     "Bearer tok_01aaaaaaaaaaaaaaaaaaaaaaaa." + secret,
		"wrong secret":   "Bearer " + id + "." + other + secret[1:],
		"no secret":      "Bearer " + id + ".",
		"id only":        "Bearer " + id,
		"basic":          "Basic " + b.TokenA,
		"long id":        "Bearer tok_" + strings.Repeat("a", 100) + "." + secret,
		"not a token id": "Bearer lb_01aaaaaaaaaaaaaaaaaaaaaaaa." + secret,
		"two tokens":     "Bearer " + b.TokenA + " " + b.TokenB,
	} {
		for _, p := range []string{"/v1/load-balancers", "/v1/tenants", "/v1/node-groups"} {
			res := b.do("", "GET", p, nil, "Authorization", header)
			if res.Status != http.StatusUnauthorized || res.ProblemType() != "unauthorized" {
				t.Errorf("%s: GET %s: %d %s", name, p, res.Status, res.Raw)
			}
		}
	}
	// The scheme is case-insensitive (RFC 9110, section 11.1).
	for _, scheme := range []string{"Bearer", "bearer", "BEARER"} {
		b.must(http.StatusOK, "", "GET", "/v1/load-balancers", nil, "Authorization", scheme+" "+b.TokenA)
	}
	// A revoked token stops working at once.
	issued := b.must(http.StatusCreated, b.Admin, "POST", "/v1/tokens", map[string]any{"kind": "tenant", "tenant_id": b.TenantA, "name": "temp"})
	temp := issued["secret"].(string)
	b.must(http.StatusOK, temp, "GET", "/v1/load-balancers", nil)
	b.must(http.StatusNoContent, b.Admin, "DELETE", "/v1/tokens/"+issued["id"].(string), nil)
	b.must(http.StatusUnauthorized, temp, "GET", "/v1/load-balancers", nil)
	b.must(http.StatusUnauthorized, temp, "POST", "/v1/load-balancers", map[string]any{})
	b.must(http.StatusNotFound, b.Admin, "GET", "/v1/tokens/"+issued["id"].(string), nil)
	b.must(http.StatusOK, b.TokenA, "GET", "/v1/load-balancers", nil)

	// Valid tokens of the wrong kind: 403.
	forbidden := []struct {
		who, token, method, path string
		body                     any
	}{
		{"tenant", b.TokenA, "POST", "/v1/tenants", map[string]any{"name": "evil"}},
		{"tenant", b.TokenA, "PATCH", "/v1/tenants/" + b.TenantA, map[string]any{"quotas": map[string]any{"load_balancers": 1000}}},
		{"tenant", b.TokenA, "DELETE", "/v1/tenants/" + b.TenantA, nil},
		{"tenant", b.TokenA, "POST", "/v1/node-groups", map[string]any{"name": "evil", "vip_range": "10.9.0.0/16"}},
		{"tenant", b.TokenA, "PATCH", "/v1/node-groups/" + b.GroupID, map[string]any{"vip_range": "0.0.0.0/0"}},
		{"tenant", b.TokenA, "GET", "/v1/nodes", nil},
		{"tenant", b.TokenA, "POST", "/v1/nodes", map[string]any{"name": "evil", "node_group_id": b.GroupID}},
		{"admin", b.Admin, "GET", "/v1/load-balancers", nil},
		{"admin", b.Admin, "POST", "/v1/load-balancers", map[string]any{}},
		{"admin", b.Admin, "GET", "/v1/certificates", nil},
		{"node", b.Node, "GET", "/v1/load-balancers", nil},
		{"node", b.Node, "POST", "/v1/load-balancers", map[string]any{}},
		{"node", b.Node, "GET", "/v1/tenants", nil},
		{"node", b.Node, "POST", "/v1/tenants", map[string]any{"name": "evil"}},
		{"node", b.Node, "GET", "/v1/tokens", nil},
	}
	for _, f := range forbidden {
		res := b.do(f.token, f.method, f.path, f.body)
		if res.Status != http.StatusForbidden || res.ProblemType() != "forbidden" {
			t.Errorf("%s token %s %s: %d %s", f.who, f.method, f.path, res.Status, res.Raw)
		}
	}
	if got := b.must(http.StatusOK, b.Admin, "GET", "/v1/tenants/"+b.TenantA, nil); got["quotas"].(map[string]any)["load_balancers"] != float64(10) {
		t.Errorf("tenant quotas changed: %v", got["quotas"])
	}
	if n := len(b.listAll(b.Admin, "/v1/tenants")); n != 2 {
		t.Errorf("%d tenants, want 2", n)
	}
	if n := len(b.listAll(b.Admin, "/v1/node-groups")); n != 1 {
		t.Errorf("%d node groups, want 1", n)
	}
	if n := b.count(b.TokenA, "/v1/load-balancers") + b.count(b.TokenB, "/v1/load-balancers"); n != 0 {
		t.Errorf("%d load balancers created by wrong kinds of tokens", n)
	}
}

// TestCreateAndVIPs: creates answer 201 pending_create; VIPs come from the
// group's range in order, explicit ones must lie in it and be free.
func TestCreateAndVIPs(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tr := b.buildTree(b.TokenA)
	for _, p := range tr.paths() {
		got := b.must(http.StatusOK, b.TokenA, "GET", p, nil)
		if !strings.HasPrefix(p, "/v1/certificates/") && got["provisioning_status"] != "pending_create" {
			t.Errorf("%s: provisioning_status %v", p, got["provisioning_status"])
		}
	}
	lb := b.must(http.StatusOK, b.TokenA, "GET", "/v1/load-balancers/"+tr.LB, nil)
	if lb["vip_address"] != "127.77.0.1" || lb["node_group_id"] != b.GroupID || lb["tenant_id"] != b.TenantA || lb["enabled"] != true {
		t.Errorf("first load balancer: %v", lb)
	}
	if !strings.HasPrefix(tr.LB, "lb_") || !strings.HasPrefix(tr.Listener, "lsn_") || !strings.HasPrefix(tr.Pool, "pool_") ||
		!strings.HasPrefix(tr.Member, "mbr_") || !strings.HasPrefix(tr.Rule, "rule_") || !strings.HasPrefix(tr.Cert, "cert_") {
		t.Errorf("id prefixes: %+v", tr)
	}
	create := func(token string, body map[string]any) response {
		t.Helper()
		return b.do(token, "POST", "/v1/load-balancers", body)
	}
	for i, want := range []string{"127.77.0.2", "127.77.0.3"} {
		res := create(b.TokenB, map[string]any{"name": fmt.Sprint("b", i)})
		if res.Status != http.StatusCreated || res.Body["vip_address"] != want || res.Body["provisioning_status"] != "pending_create" {
			t.Errorf("create %d: %d %s, want VIP %s", i, res.Status, res.Raw, want)
		}
	}
	// An explicit VIP is taken as given and skipped by allocation.
	if res := create(b.TokenA, map[string]any{"vip_address": "127.77.0.4"}); res.Status != http.StatusCreated || res.Body["vip_address"] != "127.77.0.4" {
		t.Errorf("explicit VIP: %d %s", res.Status, res.Raw)
	}
	if res := create(b.TokenA, map[string]any{}); res.Body["vip_address"] != "127.77.0.5" {
		t.Errorf("after an explicit VIP: %s", res.Raw)
	}
	before := b.count(b.TokenA, "/v1/load-balancers") + b.count(b.TokenB, "/v1/load-balancers")
	for _, c := range []struct {
		vip    string
		status int
	}{
		{"10.0.0.1", 422}, {"127.78.0.1", 422}, {"::1", 422}, {"::ffff:127.77.0.9", 422}, {"fe80::1%eth0", 422}, {"not-an-ip", 422}, {"", 422},
		{"127.77.0.1", 409}, {"127.77.0.4", 409},
	} {
		for _, token := range []string{b.TokenA, b.TokenB} {
			res := create(token, map[string]any{"vip_address": c.vip})
			if res.Status != c.status || !slices.Contains(res.Fields(), "vip_address") {
				t.Errorf("vip_address %q: %d %s, want %d naming vip_address", c.vip, res.Status, res.Raw, c.status)
			}
		}
	}
	if after := b.count(b.TokenA, "/v1/load-balancers") + b.count(b.TokenB, "/v1/load-balancers"); after != before {
		t.Errorf("refused creates stored load balancers: %d → %d", before, after)
	}
	// An unknown node group is named.
	res := create(b.TokenA, map[string]any{"node_group_id": "ng_01aaaaaaaaaaaaaaaaaaaaaaaa"})
	if res.Status != http.StatusUnprocessableEntity || !slices.Contains(res.Fields(), "node_group_id") {
		t.Errorf("unknown node group: %d %s", res.Status, res.Raw)
	}
	// A duplicate name within the tenant is a 409 naming it; another tenant may use it.
	res = create(b.TokenA, map[string]any{"name": "web"})
	if res.Status != http.StatusConflict || !slices.Contains(res.Fields(), "name") {
		t.Errorf("duplicate name: %d %s", res.Status, res.Raw)
	}
	b.must(http.StatusCreated, b.TokenB, "POST", "/v1/load-balancers", map[string]any{"name": "web"})
}

func TestDelete(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tr := b.buildTree(b.TokenA)
	lbPath := "/v1/load-balancers/" + tr.LB

	// A parent with children: 409 naming them; nothing goes.
	res := b.do(b.TokenA, "DELETE", lbPath, nil)
	if res.Status != http.StatusConflict {
		t.Fatalf("delete with children: %d %s", res.Status, res.Raw)
	}
	detail, _ := res.Body["detail"].(string)
	for _, id := range []string{tr.Listener, tr.HTTPSListener, tr.Pool} {
		if !strings.Contains(detail, id) {
			t.Errorf("409 detail does not name child %s: %s", id, detail)
		}
	}
	res = b.do(b.TokenA, "DELETE", "/v1/listeners/"+tr.Listener, nil)
	if d, _ := res.Body["detail"].(string); res.Status != http.StatusConflict || !strings.Contains(d, tr.Rule) {
		t.Errorf("delete listener with a rule: %d %s", res.Status, res.Raw)
	}
	res = b.do(b.TokenA, "DELETE", "/v1/pools/"+tr.Pool, nil)
	if d, _ := res.Body["detail"].(string); res.Status != http.StatusConflict || !strings.Contains(d, tr.Listener) {
		t.Errorf("delete pool in use: %d %s", res.Status, res.Raw)
	}
	// A pool that is a listener's default pool cannot go, even with cascade.
	res = b.do(b.TokenA, "DELETE", "/v1/pools/"+tr.Pool+"?cascade=true", nil)
	if d, _ := res.Body["detail"].(string); res.Status != http.StatusConflict || !strings.Contains(d, tr.Listener) || !strings.Contains(d, tr.HTTPSListener) || !strings.Contains(d, tr.Rule) {
		t.Errorf("cascade delete of a pool in use: %d %s", res.Status, res.Raw)
	}
	// A certificate in use cannot go.
	res = b.do(b.TokenA, "DELETE", "/v1/certificates/"+tr.Cert, nil)
	if d, _ := res.Body["detail"].(string); res.Status != http.StatusConflict || !strings.Contains(d, tr.HTTPSListener) {
		t.Errorf("delete certificate in use: %d %s", res.Status, res.Raw)
	}
	for _, p := range tr.paths() {
		b.must(http.StatusOK, b.TokenA, "GET", p, nil)
	}

	// deletion_protection: 409 (cascade or not) until turned off.
	b.must(http.StatusOK, b.TokenA, "PATCH", lbPath, map[string]any{"deletion_protection": true})
	for _, q := range []string{"", "?cascade=true"} {
		res := b.do(b.TokenA, "DELETE", lbPath+q, nil)
		if res.Status != http.StatusConflict || !slices.Contains(res.Fields(), "deletion_protection") {
			t.Errorf("delete protected%s: %d %s", q, res.Status, res.Raw)
		}
	}
	b.must(http.StatusOK, b.TokenA, "PATCH", lbPath, map[string]any{"deletion_protection": false})

	// cascade=true takes the load balancer and all its children; with no
	// node to wait for they are gone at once.
	b.must(http.StatusAccepted, b.TokenA, "DELETE", lbPath+"?cascade=true", nil)
	for _, p := range tr.paths() {
		want := http.StatusNotFound
		if strings.HasPrefix(p, "/v1/certificates/") {
			want = http.StatusOK // certificates belong to the tenant
		}
		b.must(want, b.TokenA, "GET", p, nil)
	}
	for _, c := range collections[:5] {
		if n := b.count(b.TokenA, c); n != 0 {
			t.Errorf("%s still lists %d objects", c, n)
		}
	}
	// The certificate is free now; deleting twice is 404.
	b.must(http.StatusAccepted, b.TokenA, "DELETE", "/v1/certificates/"+tr.Cert, nil)
	b.must(http.StatusNotFound, b.TokenA, "DELETE", "/v1/certificates/"+tr.Cert, nil)
	b.must(http.StatusNotFound, b.TokenA, "DELETE", lbPath, nil)

	// Leaves go one by one, bottom up, without cascade.
	tr = b.buildTree(b.TokenA)
	for _, p := range []string{"/v1/routing-rules/" + tr.Rule, "/v1/members/" + tr.Member, "/v1/listeners/" + tr.Listener,
		"/v1/listeners/" + tr.HTTPSListener, "/v1/pools/" + tr.Pool, "/v1/certificates/" + tr.Cert, "/v1/load-balancers/" + tr.LB} {
		b.must(http.StatusAccepted, b.TokenA, "DELETE", p, nil)
		b.must(http.StatusNotFound, b.TokenA, "GET", p, nil)
	}
	// The quota counts what is left: a fresh tree fits again.
	b.setQuota(b.TenantA, "load_balancers", 1)
	b.buildTree(b.TokenA)
}

func TestDryRun(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tr := b.buildTree(b.TokenA)
	before := b.counts(b.TokenA)
	raw := map[string][]byte{}
	for _, p := range tr.paths() {
		raw[p] = b.do(b.TokenA, "GET", p, nil).Raw
	}
	certPEM, keyPEM := testcerts.SelfSigned(t, "dry.example.test")
	creates := []struct {
		path  string
		body  map[string]any
		check func(map[string]any) bool
	}{
		{"/v1/load-balancers", map[string]any{"name": "dry", "labels": map[string]string{"env": "dry"}}, func(o map[string]any) bool {
			return o["name"] == "dry" && o["vip_address"] == "127.77.0.2" && o["provisioning_status"] == "pending_create"
		}},
		{"/v1/listeners", map[string]any{"load_balancer_id": tr.LB, "protocol": "http", "port": 8080, "default_pool_id": tr.Pool}, func(o map[string]any) bool {
			return o["port"] == float64(8080) && o["default_pool_id"] == tr.Pool
		}},
		{"/v1/pools", map[string]any{"load_balancer_id": tr.LB, "protocol": "tcp", "name": "dry"}, func(o map[string]any) bool {
			return o["protocol"] == "tcp" && o["algorithm"] == "round_robin"
		}},
		{"/v1/members", map[string]any{"pool_id": tr.Pool, "address": "10.9.9.9", "port": 80}, func(o map[string]any) bool {
			return o["address"] == "10.9.9.9" && o["weight"] == float64(1)
		}},
		{"/v1/routing-rules", map[string]any{"listener_id": tr.Listener, "priority": 77, "action": map[string]any{"type": "deny"}}, func(o map[string]any) bool {
			return o["priority"] == float64(77)
		}},
		{"/v1/certificates", map[string]any{"name": "dry", "certificate": certPEM, "private_key": keyPEM}, func(o map[string]any) bool {
			return o["name"] == "dry" && o["private_key"] == nil
		}},
	}
	for _, c := range creates {
		res := b.do(b.TokenA, "POST", c.path+"?dry_run=true", c.body)
		if res.Status != http.StatusOK || !c.check(res.Body) {
			t.Errorf("dry run POST %s: %d %s", c.path, res.Status, res.Raw)
			continue
		}
		if id, _ := res.Body["id"].(string); id != "" {
			b.must(http.StatusNotFound, b.TokenA, "GET", c.path+"/"+id, nil)
		}
	}
	patches := []struct {
		path string
		body map[string]any
	}{
		{"/v1/load-balancers/" + tr.LB, map[string]any{"name": "renamed", "enabled": false}},
		{"/v1/listeners/" + tr.Listener, map[string]any{"port": 8081, "default_pool_id": nil}},
		{"/v1/pools/" + tr.Pool, map[string]any{"health_monitor": nil, "algorithm": "least_connections"}},
		{"/v1/members/" + tr.Member, map[string]any{"weight": 50}},
		{"/v1/routing-rules/" + tr.Rule, map[string]any{"priority": 1}},
		{"/v1/certificates/" + tr.Cert, map[string]any{"name": "renamed", "certificate": certPEM, "private_key": keyPEM}},
	}
	for _, p := range patches {
		res := b.do(b.TokenA, "PATCH", p.path+"?dry_run=true", p.body)
		if res.Status != http.StatusOK {
			t.Errorf("dry run PATCH %s: %d %s", p.path, res.Status, res.Raw)
			continue
		}
		for k, v := range p.body {
			if fmt.Sprint(res.Body[k]) != fmt.Sprint(v) && k != "certificate" && k != "private_key" {
				t.Errorf("dry run PATCH %s: %s = %v, want %v", p.path, k, res.Body[k], v)
			}
		}
	}
	for _, p := range tr.paths() {
		if got := b.do(b.TokenA, "GET", p, nil).Raw; string(got) != string(raw[p]) {
			t.Errorf("%s changed by dry runs:\nbefore %s\nafter  %s", p, raw[p], got)
		}
	}
	if after := b.counts(b.TokenA); !maps.Equal(before, after) {
		t.Errorf("dry runs stored objects: %v → %v", before, after)
	}

	// Dry runs still report validation, reference, uniqueness and quota errors.
	fails := []struct {
		method, path string
		body         map[string]any
		status       int
		field        string
	}{
		{"POST", "/v1/listeners", map[string]any{"load_balancer_id": tr.LB, "protocol": "http", "port": 80}, 409, "port"},
		{"POST", "/v1/listeners", map[string]any{"load_balancer_id": tr.LB, "protocol": "https", "port": 8443}, 422, "certificate_ids"},
		{"POST", "/v1/pools", map[string]any{"load_balancer_id": tr.LB, "protocol": "http", "algorithm": "url_param"}, 422, "hash_key"},
		{"POST", "/v1/members", map[string]any{"pool_id": tr.Pool, "address": "not a host!", "port": 80}, 422, "address"},
		{"POST", "/v1/members", map[string]any{"pool_id": "pool_01aaaaaaaaaaaaaaaaaaaaaaaa", "address": "10.0.0.1", "port": 80}, 404, "pool_id"},
		{"PATCH", "/v1/listeners/" + tr.Listener, map[string]any{"default_pool_id": "pool_01aaaaaaaaaaaaaaaaaaaaaaaa"}, 422, "default_pool_id"},
		{"PATCH", "/v1/pools/" + tr.Pool, map[string]any{"protocol": "tcp"}, 422, "protocol"},
		{"PATCH", "/v1/load-balancers/" + tr.LB, map[string]any{"name": "bad\u0007name"}, 422, "name"},
	}
	for _, f := range fails {
		res := b.do(b.TokenA, f.method, f.path+"?dry_run=true", f.body)
		if res.Status != f.status || !slices.Contains(res.Fields(), f.field) {
			t.Errorf("dry run %s %s: %d %s, want %d naming %s", f.method, f.path, res.Status, res.Raw, f.status, f.field)
		}
	}
	b.setQuota(b.TenantA, "load_balancers", 1)
	res := b.do(b.TokenA, "POST", "/v1/load-balancers?dry_run=true", map[string]any{})
	if res.Status != http.StatusConflict || res.ProblemType() != "quota-exceeded" {
		t.Errorf("dry run over quota: %d %s", res.Status, res.Raw)
	}
}

func TestPagination(t *testing.T) {
	t.Parallel()
	b := setup(t)
	labels := []map[string]string{
		{"env": "prod", "team": "web"}, {"env": "prod"}, {"env": "dev"}, {"team": "web"}, {}, {"env": "prod", "team": "db"}, {"env": ""},
	}
	var all []string
	for i, l := range labels {
		all = append(all, b.create(b.TokenA, "/v1/load-balancers", map[string]any{"name": fmt.Sprintf("lb-%d", i), "labels": l}))
	}
	b.create(b.TokenB, "/v1/load-balancers", map[string]any{"name": "lb-0", "labels": map[string]string{"env": "prod"}})

	seen := map[string]bool{}
	var sizes []int
	token := ""
	for page := 0; page < 10; page++ {
		p := "/v1/load-balancers?limit=3"
		if token != "" {
			p += "&page_token=" + url.QueryEscape(token)
		}
		body := b.must(http.StatusOK, b.TokenA, "GET", p, nil)
		items := body["items"].([]any)
		sizes = append(sizes, len(items))
		for _, it := range items {
			id := it.(map[string]any)["id"].(string)
			if seen[id] {
				t.Errorf("page %d repeats %s", page, id)
			}
			seen[id] = true
		}
		token = body["next_page_token"].(string)
		if token == "" {
			break
		}
	}
	if !slices.Equal(sizes, []int{3, 3, 1}) {
		t.Errorf("page sizes %v, want [3 3 1]", sizes)
	}
	for _, id := range all {
		if !seen[id] {
			t.Errorf("%s on no page", id)
		}
	}
	if len(seen) != len(all) {
		t.Errorf("pages hold %d ids, want %d", len(seen), len(all))
	}
	// Exactly one page: no next token.
	if body := b.must(http.StatusOK, b.TokenA, "GET", "/v1/load-balancers?limit=7", nil); body["next_page_token"] != "" || len(body["items"].([]any)) != 7 {
		t.Errorf("limit=7: %v items, next %q", len(body["items"].([]any)), body["next_page_token"])
	}

	filters := map[string][]string{
		"name=lb-3":                         {all[3]},
		"name=nope":                         nil,
		"label=env%3Dprod":                  {all[0], all[1], all[5]},
		"label=env":                         {all[0], all[1], all[2], all[5], all[6]},
		"label=env%3D":                      {all[6]},
		"label=env%3Dprod&label=team":       {all[0], all[5]},
		"label=env%3Dprod&label=team%3Dweb": {all[0]},
		"label=team%3Dweb&name=lb-3":        {all[3]},
		"label=missing":                     nil,
		"label=env%3Dprod&limit=1":          {all[0], all[1], all[5]},
	}
	for q, want := range filters {
		got := b.ids(b.TokenA, "/v1/load-balancers?"+q)
		slices.Sort(got)
		w := slices.Clone(want)
		slices.Sort(w)
		if !slices.Equal(got, w) {
			t.Errorf("?%s: %v, want %v", q, got, w)
		}
	}

	// Page tokens this API did not issue: 400 naming page_token, never 500.
	lbPage := b.must(http.StatusOK, b.TokenA, "GET", "/v1/load-balancers?limit=1", nil)["next_page_token"].(string)
	for _, bad := range []string{"%", "not a token!", "!!!", "_w", "AA", "_-8", "bGJf", "YQ", "ZHJvcCB0YWJsZQ", lbPage + "!"} {
		res := b.do(b.TokenA, "GET", "/v1/load-balancers?page_token="+url.QueryEscape(bad), nil)
		if res.Status != http.StatusBadRequest || !slices.Contains(res.Fields(), "page_token") {
			t.Errorf("page_token %q: %d %s", bad, res.Status, res.Raw)
		}
	}
	// A token of one list is not one of another.
	if res := b.do(b.TokenA, "GET", "/v1/pools?page_token="+url.QueryEscape(lbPage), nil); res.Status != http.StatusBadRequest {
		t.Errorf("load balancer page token on pools: %d %s", res.Status, res.Raw)
	}
	for _, q := range []string{"limit=0", "limit=201", "limit=x", "label=%3Dprod"} {
		res := b.do(b.TokenA, "GET", "/v1/load-balancers?"+q, nil)
		if res.Status < 400 || res.Status >= 500 || len(res.Fields()) == 0 {
			t.Errorf("?%s: %d %s", q, res.Status, res.Raw)
		}
	}
}

func TestPatchSemantics(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tr := b.buildTree(b.TokenA)

	// Only the named fields change (and version, updated_at, status).
	same := func(path string, patch map[string]any) map[string]any {
		t.Helper()
		before := b.must(http.StatusOK, b.TokenA, "GET", path, nil)
		after := b.must(http.StatusOK, b.TokenA, "PATCH", path, patch)
		for k, v := range before {
			if _, patched := patch[k]; patched || k == "version" || k == "updated_at" {
				continue
			}
			if fmt.Sprint(after[k]) != fmt.Sprint(v) {
				t.Errorf("PATCH %s %v changed %s: %v → %v", path, patch, k, v, after[k])
			}
		}
		for k, v := range patch {
			if fmt.Sprint(after[k]) != fmt.Sprint(v) {
				t.Errorf("PATCH %s: %s = %v, want %v", path, k, after[k], v)
			}
		}
		if after["version"] != before["version"].(float64)+1 {
			t.Errorf("PATCH %s: version %v after %v", path, after["version"], before["version"])
		}
		if got := b.must(http.StatusOK, b.TokenA, "GET", path, nil); fmt.Sprint(got) != fmt.Sprint(after) {
			t.Errorf("PATCH %s answered %v but stored %v", path, after, got)
		}
		return after
	}
	b.must(http.StatusOK, b.TokenA, "PATCH", "/v1/load-balancers/"+tr.LB, map[string]any{"labels": map[string]string{"env": "prod"}, "description": "d0"})
	same("/v1/load-balancers/"+tr.LB, map[string]any{"description": "d1"})
	same("/v1/load-balancers/"+tr.LB, map[string]any{"enabled": false})
	same("/v1/listeners/"+tr.Listener, map[string]any{"connection_limit": float64(100)})
	same("/v1/listeners/"+tr.HTTPSListener, map[string]any{"name": "tls"})
	same("/v1/pools/"+tr.Pool, map[string]any{"retries": float64(5)})
	same("/v1/members/"+tr.Member, map[string]any{"weight": float64(9)})
	same("/v1/routing-rules/"+tr.Rule, map[string]any{"priority": float64(20)})
	same("/v1/certificates/"+tr.Cert, map[string]any{"description": "cert"})
	if got := b.must(http.StatusOK, b.TokenA, "GET", "/v1/load-balancers/"+tr.LB, nil); got["labels"].(map[string]any)["env"] != "prod" || got["description"] != "d1" {
		t.Errorf("labels or description lost: %v", got)
	}
	// Labels are replaced as a whole; {} clears them.
	same("/v1/load-balancers/"+tr.LB, map[string]any{"labels": map[string]any{}})

	// null clears a nullable field; leaving it out keeps it.
	got := same("/v1/listeners/"+tr.Listener, map[string]any{"default_pool_id": nil})
	if got["default_pool_id"] != nil {
		t.Errorf("default_pool_id after null: %v", got["default_pool_id"])
	}
	got = b.must(http.StatusOK, b.TokenA, "PATCH", "/v1/listeners/"+tr.Listener, map[string]any{"default_pool_id": tr.Pool})
	if got["default_pool_id"] != tr.Pool {
		t.Errorf("default_pool_id set back: %v", got["default_pool_id"])
	}
	if hm := b.must(http.StatusOK, b.TokenA, "GET", "/v1/pools/"+tr.Pool, nil)["health_monitor"]; hm == nil {
		t.Fatalf("pool has no monitor to remove")
	}
	got = same("/v1/pools/"+tr.Pool, map[string]any{"health_monitor": nil})
	if got["health_monitor"] != nil {
		t.Errorf("health_monitor after null: %v", got["health_monitor"])
	}
	// A nested object given is taken whole, with its defaults.
	got = b.must(http.StatusOK, b.TokenA, "PATCH", "/v1/pools/"+tr.Pool, map[string]any{"health_monitor": map[string]any{"type": "tcp"}})
	if hm, _ := got["health_monitor"].(map[string]any); hm == nil || hm["type"] != "tcp" || hm["interval_ms"] != float64(5000) || hm["path"] != nil {
		t.Errorf("health_monitor set: %v", got["health_monitor"])
	}

	// A pool an http listener (and a rule) sends to cannot become tcp.
	before := b.do(b.TokenA, "GET", "/v1/pools/"+tr.Pool, nil).Raw
	res := b.do(b.TokenA, "PATCH", "/v1/pools/"+tr.Pool, map[string]any{"protocol": "tcp"})
	if res.Status != http.StatusUnprocessableEntity || !slices.Contains(res.Fields(), "protocol") {
		t.Errorf("pool to tcp while in use: %d %s", res.Status, res.Raw)
	}
	if after := b.do(b.TokenA, "GET", "/v1/pools/"+tr.Pool, nil).Raw; string(after) != string(before) {
		t.Errorf("refused PATCH changed the pool:\nbefore %s\nafter  %s", before, after)
	}
	// A listener with rules cannot become tcp; an https one needs its certificates.
	res = b.do(b.TokenA, "PATCH", "/v1/listeners/"+tr.Listener, map[string]any{"protocol": "tcp", "default_pool_id": nil})
	if res.Status != http.StatusUnprocessableEntity || !slices.Contains(res.Fields(), "protocol") {
		t.Errorf("listener with rules to tcp: %d %s", res.Status, res.Raw)
	}
	res = b.do(b.TokenA, "PATCH", "/v1/listeners/"+tr.HTTPSListener, map[string]any{"certificate_ids": []string{}})
	if res.Status != http.StatusUnprocessableEntity || !slices.Contains(res.Fields(), "certificate_ids") {
		t.Errorf("https listener without certificates: %d %s", res.Status, res.Raw)
	}
	// Once nothing sends http traffic to it, it may.
	b.must(http.StatusAccepted, b.TokenA, "DELETE", "/v1/routing-rules/"+tr.Rule, nil)
	b.must(http.StatusOK, b.TokenA, "PATCH", "/v1/listeners/"+tr.Listener, map[string]any{"default_pool_id": nil})
	b.must(http.StatusOK, b.TokenA, "PATCH", "/v1/listeners/"+tr.HTTPSListener, map[string]any{"default_pool_id": nil})
	if got := b.must(http.StatusOK, b.TokenA, "PATCH", "/v1/pools/"+tr.Pool, map[string]any{"protocol": "tcp"}); got["protocol"] != "tcp" {
		t.Errorf("pool protocol: %v", got["protocol"])
	}
	// …and then an http listener cannot take it as default pool.
	res = b.do(b.TokenA, "PATCH", "/v1/listeners/"+tr.Listener, map[string]any{"default_pool_id": tr.Pool})
	if res.Status != http.StatusUnprocessableEntity || !slices.Contains(res.Fields(), "default_pool_id") {
		t.Errorf("http listener to a tcp pool: %d %s", res.Status, res.Raw)
	}

	// PATCH of a missing object is 404.
	b.must(http.StatusNotFound, b.TokenA, "PATCH", "/v1/pools/pool_01aaaaaaaaaaaaaaaaaaaaaaaa", map[string]any{"retries": 1})
}
