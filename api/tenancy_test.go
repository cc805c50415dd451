package api_test

import (
	"bytes"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/fulcrumlb/fulcrum/internal/testcerts"
)

// TestCrossTenantIsolation hits every endpoint and method with tenant B's
// token on tenant A's objects: everything is 404 (or, for a reference inside
// a create body of B's own parent, a 422 naming the field), nothing of A's
// changes, and B never sees A's ids.
func TestCrossTenantIsolation(t *testing.T) {
	t.Parallel()
	b := setup(t)
	a := b.buildTree(b.TokenA)
	own := b.buildTree(b.TokenB) // B's own parents, to hang references to A's objects on

	// What A's objects look like before B tries anything.
	before := map[string][]byte{}
	for _, p := range a.paths() {
		before[p] = b.do(b.TokenA, http.MethodGet, p, nil).Raw
	}
	aIDs := []string{a.LB, a.Listener, a.HTTPSListener, a.Pool, a.Member, a.Rule, a.Cert, b.TenantA, tokenID(b.TokenA)}

	// notFound asserts a 404 that says no more than a missing object would:
	// same type and title, and a detail that differs only by the id.
	notFound := func(res response, method, path, id, missing string) {
		t.Helper()
		if res.Status != http.StatusNotFound {
			t.Errorf("B %s %s: status %d, want 404: %s", method, path, res.Status, res.Raw)
			return
		}
		if res.ProblemType() != "not-found" {
			t.Errorf("B %s %s: problem type %q", method, path, res.ProblemType())
		}
		if missing == "" {
			return
		}
		ref := b.do(b.TokenB, method, strings.Replace(path, id, missing, 1), nil)
		got, _ := res.Body["detail"].(string)
		want, _ := ref.Body["detail"].(string)
		if ref.Status != res.Status || ref.Body["title"] != res.Body["title"] ||
			strings.ReplaceAll(got, id, "ID") != strings.ReplaceAll(want, missing, "ID") {
			t.Errorf("B %s %s: answer differs from a missing object's:\n got %s\nwant %s", method, path, res.Raw, ref.Raw)
		}
	}

	// GET, PATCH (a valid body, also with the right If-Match and as a dry
	// run) and DELETE (plain, cascade, stale If-Match) on each of A's objects.
	certPEM, keyPEM := testcerts.SelfSigned(t, "rotated.example.test")
	objects := []struct {
		path, id string
		patch    map[string]any
	}{
		{"/v1/load-balancers/", a.LB, map[string]any{"name": "hijacked", "description": "x", "enabled": false, "deletion_protection": true}},
		{"/v1/listeners/", a.Listener, map[string]any{"description": "x", "connection_limit": 5, "default_pool_id": nil}},
		{"/v1/listeners/", a.HTTPSListener, map[string]any{"description": "x", "certificate_ids": []string{own.Cert}}},
		{"/v1/pools/", a.Pool, map[string]any{"description": "x", "retries": 1, "health_monitor": nil}},
		{"/v1/members/", a.Member, map[string]any{"weight": 7, "enabled": false}},
		{"/v1/routing-rules/", a.Rule, map[string]any{"priority": 99, "action": map[string]any{"type": "deny"}}},
		{"/v1/certificates/", a.Cert, map[string]any{"description": "x"}},
		{"/v1/certificates/", a.Cert, map[string]any{"certificate": certPEM, "private_key": keyPEM}},
	}
	for _, o := range objects {
		p := o.path + o.id
		prefix, _, _ := strings.Cut(o.id, "_")
		missing := prefix + "_01aaaaaaaaaaaaaaaaaaaaaaaa"
		version := int64(b.do(b.TokenA, http.MethodGet, p, nil).Body["version"].(float64))
		etag := `"` + strconv.FormatInt(version, 10) + `"`

		notFound(b.do(b.TokenB, http.MethodGet, p, nil), "GET", p, o.id, missing)
		notFound(b.do(b.TokenB, http.MethodPatch, p, o.patch), "PATCH", p, o.id, "")
		notFound(b.do(b.TokenB, http.MethodPatch, p, o.patch, "If-Match", etag), "PATCH If-Match", p, o.id, "")
		notFound(b.do(b.TokenB, http.MethodPatch, p, o.patch, "If-Match", `"999"`), "PATCH stale If-Match", p, o.id, "")
		notFound(b.do(b.TokenB, http.MethodPatch, p+"?dry_run=true", o.patch), "PATCH dry_run", p, o.id, "")
		notFound(b.do(b.TokenB, http.MethodDelete, p, nil), "DELETE", p, o.id, missing)
		notFound(b.do(b.TokenB, http.MethodDelete, p, nil, "If-Match", `"999"`), "DELETE stale If-Match", p, o.id, "")
		notFound(b.do(b.TokenB, http.MethodDelete, p, nil, "If-Match", etag), "DELETE If-Match", p, o.id, "")
		notFound(b.do(b.TokenB, http.MethodDelete, p+"?cascade=true", nil), "DELETE cascade", p+"?cascade=true", o.id, "")
	}

	// Creates whose parent is A's: 404 naming the parent field, also as dry runs.
	parents := []struct {
		path, field string
		body        map[string]any
	}{
		{"/v1/listeners", "load_balancer_id", map[string]any{"load_balancer_id": a.LB, "protocol": "http", "port": 8080}},
		{"/v1/pools", "load_balancer_id", map[string]any{"load_balancer_id": a.LB, "protocol": "http"}},
		{"/v1/members", "pool_id", map[string]any{"pool_id": a.Pool, "address": "127.0.0.1", "port": 9100}},
		{"/v1/routing-rules", "listener_id", map[string]any{"listener_id": a.Listener, "priority": 5, "action": map[string]any{"type": "deny"}}},
		{"/v1/routing-rules", "listener_id", map[string]any{"listener_id": a.HTTPSListener, "priority": 5,
			"action": map[string]any{"type": "forward", "forward": map[string]any{"pools": []any{map[string]any{"pool_id": a.Pool}}}}}},
	}
	for _, c := range parents {
		for _, q := range []string{"", "?dry_run=true"} {
			res := b.do(b.TokenB, http.MethodPost, c.path+q, c.body)
			if res.Status != http.StatusNotFound || !slices.Contains(res.Fields(), c.field) {
				t.Errorf("B POST %s%s with A's %s: status %d, fields %v, want 404 naming %s: %s", c.path, q, c.field, res.Status, res.Fields(), c.field, res.Raw)
			}
		}
	}

	// References to A's objects inside bodies whose parent is B's own: the
	// field is named and said not to exist (404 or 422).
	forwardA := map[string]any{"type": "forward", "forward": map[string]any{"pools": []any{map[string]any{"pool_id": a.Pool}}}}
	refs := []struct {
		method, path, field string
		body                map[string]any
	}{
		{"POST", "/v1/listeners", "default_pool_id", map[string]any{"load_balancer_id": own.LB, "protocol": "http", "port": 8081, "default_pool_id": a.Pool}},
		{"POST", "/v1/listeners", "certificate_ids[0]", map[string]any{"load_balancer_id": own.LB, "protocol": "https", "port": 8443, "certificate_ids": []string{a.Cert}}},
		{"POST", "/v1/listeners", "certificate_ids[1]", map[string]any{"load_balancer_id": own.LB, "protocol": "https", "port": 8444, "certificate_ids": []string{own.Cert, a.Cert}}},
		{"POST", "/v1/routing-rules", "action.forward.pools[0].pool_id", map[string]any{"listener_id": own.Listener, "priority": 20, "action": forwardA}},
		{"POST", "/v1/routing-rules?dry_run=true", "action.forward.pools[0].pool_id", map[string]any{"listener_id": own.Listener, "priority": 21, "action": forwardA}},
		{"PATCH", "/v1/listeners/" + own.Listener, "default_pool_id", map[string]any{"default_pool_id": a.Pool}},
		{"PATCH", "/v1/listeners/" + own.HTTPSListener, "certificate_ids[0]", map[string]any{"certificate_ids": []string{a.Cert}}},
		{"PATCH", "/v1/routing-rules/" + own.Rule, "action.forward.pools[0].pool_id", map[string]any{"action": forwardA}},
		{"POST", "/v1/tokens", "tenant_id", map[string]any{"kind": "tenant", "tenant_id": b.TenantA, "name": "steal"}},
	}
	ownBefore := map[string][]byte{}
	for _, p := range own.paths() {
		ownBefore[p] = b.do(b.TokenB, http.MethodGet, p, nil).Raw
	}
	for _, r := range refs {
		res := b.do(b.TokenB, r.method, r.path, r.body)
		msg, named := res.FieldMessage(r.field)
		if (res.Status != http.StatusNotFound && res.Status != http.StatusUnprocessableEntity) || !named || !strings.Contains(msg, "does not exist") {
			t.Errorf("B %s %s referring to A's object: status %d, want 404/422 with %s \"does not exist\": %s", r.method, r.path, res.Status, r.field, res.Raw)
		}
	}
	for _, p := range own.paths() {
		if got := b.do(b.TokenB, http.MethodGet, p, nil).Raw; !bytes.Equal(got, ownBefore[p]) {
			t.Errorf("B's %s changed by a failed request:\nbefore %s\nafter  %s", p, ownBefore[p], got)
		}
	}

	// Lists filtered by A's parents are empty, not A's children.
	for _, p := range []string{
		"/v1/listeners?load_balancer_id=" + a.LB,
		"/v1/pools?load_balancer_id=" + a.LB,
		"/v1/members?pool_id=" + a.Pool,
		"/v1/members?load_balancer_id=" + a.LB,
		"/v1/routing-rules?listener_id=" + a.Listener,
		"/v1/routing-rules?load_balancer_id=" + a.LB,
		"/v1/tokens?tenant_id=" + b.TenantA,
	} {
		if items := b.listAll(b.TokenB, p); len(items) != 0 {
			t.Errorf("B GET %s: %d items, want none", p, len(items))
		}
	}

	// The load balancer's status tree and traffic stats.
	for _, sub := range []string{"/status", "/stats"} {
		p := "/v1/load-balancers/" + a.LB + sub
		notFound(b.do(b.TokenB, http.MethodGet, p, nil), "GET", p, a.LB, "lb_01aaaaaaaaaaaaaaaaaaaaaaaa")
	}

	// Tokens and the tenant itself.
	tok := "/v1/tokens/" + tokenID(b.TokenA)
	notFound(b.do(b.TokenB, http.MethodGet, tok, nil), "GET", tok, "", "")
	notFound(b.do(b.TokenB, http.MethodDelete, tok, nil), "DELETE", tok, "", "")
	ten := "/v1/tenants/" + b.TenantA
	notFound(b.do(b.TokenB, http.MethodGet, ten, nil), "GET", ten, b.TenantA, "tnt_01aaaaaaaaaaaaaaaaaaaaaaaa")

	// B's lists, filters or not, never hold A's ids.
	for _, p := range append(slices.Clone(collections),
		"/v1/tokens", "/v1/tenants", "/v1/load-balancers?name=web", "/v1/certificates?name=www", "/v1/pools?name=app",
		"/v1/load-balancers?node_group_id="+b.GroupID) {
		for _, id := range b.ids(b.TokenB, p) {
			if slices.Contains(aIDs, id) {
				t.Errorf("B GET %s lists A's %s", p, id)
			}
		}
	}
	if got := b.ids(b.TokenB, "/v1/tenants"); !slices.Equal(got, []string{b.TenantB}) {
		t.Errorf("B lists tenants %v, want only its own", got)
	}

	// Nothing of A's changed, byte for byte (versions included), and A's
	// token still works.
	for _, p := range a.paths() {
		res := b.do(b.TokenA, http.MethodGet, p, nil)
		if res.Status != http.StatusOK || !bytes.Equal(res.Raw, before[p]) {
			t.Errorf("A's %s changed:\nbefore %s\nafter  %d %s", p, before[p], res.Status, res.Raw)
		}
	}
	want := map[string]int{"/v1/load-balancers": 1, "/v1/listeners": 2, "/v1/pools": 1, "/v1/members": 1, "/v1/routing-rules": 1, "/v1/certificates": 1}
	for _, who := range []string{b.TokenA, b.TokenB} {
		if got := b.counts(who); !maps.Equal(got, want) {
			t.Errorf("object counts %v, want %v", got, want)
		}
	}
	b.must(http.StatusOK, b.Admin, http.MethodGet, tok, nil)
}

// TestTenantTokensSeeOnlyTheirTenant checks the admin-side objects: a tenant
// reads its own tenant and tokens, and issues tokens for itself only.
func TestTenantTokensSeeOnlyTheirTenant(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.must(http.StatusOK, b.TokenA, http.MethodGet, "/v1/tenants/"+b.TenantA, nil)
	b.must(http.StatusOK, b.TokenA, http.MethodGet, "/v1/tokens/"+tokenID(b.TokenA), nil)
	for _, p := range []string{"/v1/tokens/" + tokenID(b.Admin), "/v1/tokens/" + tokenID(b.Node)} {
		b.must(http.StatusNotFound, b.TokenA, http.MethodGet, p, nil)
		b.must(http.StatusNotFound, b.TokenA, http.MethodDelete, p, nil)
	}
	// A tenant token issues tenant tokens of its own tenant, nothing more.
	issued := b.must(http.StatusCreated, b.TokenA, http.MethodPost, "/v1/tokens", map[string]any{"kind": "tenant", "name": "ci"})
	if issued["tenant_id"] != b.TenantA {
		t.Errorf("issued token tenant %v, want %s", issued["tenant_id"], b.TenantA)
	}
	secret := issued["secret"].(string)
	if got := b.must(http.StatusCreated, secret, http.MethodPost, "/v1/load-balancers", map[string]any{"name": "via-ci"}); got["tenant_id"] != b.TenantA {
		t.Errorf("object created with the issued token belongs to %v", got["tenant_id"])
	}
	for _, kind := range []string{"admin", "node"} {
		b.must(http.StatusForbidden, b.TokenA, http.MethodPost, "/v1/tokens", map[string]any{"kind": kind})
	}
	for _, id := range b.ids(b.TokenA, "/v1/tokens") {
		if id == tokenID(b.TokenB) || id == tokenID(b.Admin) || id == tokenID(b.Node) {
			t.Errorf("A lists token %s", id)
		}
	}
}
