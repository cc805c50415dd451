package api_test

import (
	"context"
	"fmt"
	"io/fs"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/fulcrumlb/fulcrum/api/store"
	"github.com/fulcrumlb/fulcrum/internal/pgtest"
	"github.com/fulcrumlb/fulcrum/internal/testcerts"
	"github.com/fulcrumlb/fulcrum/migrations"
)

// request is one call of parallel.
type request struct {
	token, method, path string
	body                any
	headers             []string
}

// parallel sends every request at once and returns the answers in order.
func (b *bundle) parallel(reqs []request) []response {
	b.t.Helper()
	out := make([]response, len(reqs))
	errs := make([]error, len(reqs))
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i, r := range reqs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			out[i], errs[i] = b.send(r.token, r.method, r.path, r.body, r.headers...)
		}()
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			b.t.Fatalf("request %d: %v", i, err)
		}
	}
	return out
}

// statuses counts answers by status.
func statuses(res []response) map[int]int {
	out := map[int]int{}
	for _, r := range res {
		out[r.Status]++
	}
	return out
}

func (b *bundle) setQuota(tenant, kind string, n int) {
	b.t.Helper()
	got := b.must(http.StatusOK, b.Admin, http.MethodPatch, "/v1/tenants/"+tenant, map[string]any{"quotas": map[string]any{kind: n}})
	if q := got["quotas"].(map[string]any)[kind]; q != float64(n) {
		b.t.Fatalf("quota %s = %v, want %d", kind, q, n)
	}
}

// quotaRace sends 50 creates at once against a quota of 10.
func quotaRace(t *testing.T, b *bundle, list string, reqs []request) {
	t.Helper()
	res := b.parallel(reqs)
	created := map[string]bool{}
	for _, r := range res {
		switch r.Status {
		case http.StatusCreated:
			created[r.Body["id"].(string)] = true
		case http.StatusConflict:
			if r.ProblemType() != "quota-exceeded" || !strings.HasSuffix(r.Body["type"].(string), "/quota-exceeded") {
				t.Errorf("409 of type %v, want quota-exceeded: %s", r.Body["type"], r.Raw)
			}
		default:
			t.Errorf("status %d: %s", r.Status, r.Raw)
		}
	}
	if got := statuses(res); got[http.StatusCreated] != 10 || got[http.StatusConflict] != 40 {
		t.Errorf("answers %v, want 10 × 201 and 40 × 409", got)
	}
	ids := b.ids(b.TokenA, list)
	if len(ids) != 10 {
		t.Errorf("%s lists %d objects, want 10", list, len(ids))
	}
	for _, id := range ids {
		if !created[id] {
			t.Errorf("%s lists %s, which no 201 announced", list, id)
		}
	}
}

func TestQuotaParallelLoadBalancers(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.setQuota(b.TenantA, "load_balancers", 10)
	reqs := make([]request, 50)
	for i := range reqs {
		reqs[i] = request{token: b.TokenA, method: http.MethodPost, path: "/v1/load-balancers", body: map[string]any{"name": fmt.Sprintf("lb-%02d", i)}}
	}
	quotaRace(t, b, "/v1/load-balancers", reqs)

	// The ten winners got ten different VIPs.
	vips := map[string]bool{}
	lbs := b.listAll(b.TokenA, "/v1/load-balancers")
	for _, lb := range lbs {
		vips[lb["vip_address"].(string)] = true
	}
	if len(vips) != len(lbs) {
		t.Errorf("%d load balancers share %d VIPs: %v", len(lbs), len(vips), vips)
	}
	// One more, also as a dry run, is still refused; another tenant is not
	// held back by A's quota.
	for _, p := range []string{"/v1/load-balancers", "/v1/load-balancers?dry_run=true"} {
		if res := b.do(b.TokenA, http.MethodPost, p, map[string]any{}); res.Status != http.StatusConflict || res.ProblemType() != "quota-exceeded" {
			t.Errorf("POST %s over quota: %d %s", p, res.Status, res.Raw)
		}
	}
	b.must(http.StatusCreated, b.TokenB, http.MethodPost, "/v1/load-balancers", map[string]any{})
}

func TestQuotaParallelMembers(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tr := b.buildTree(b.TokenA)
	b.must(http.StatusAccepted, b.TokenA, http.MethodDelete, "/v1/members/"+tr.Member, nil)
	b.setQuota(b.TenantA, "members", 10)
	reqs := make([]request, 50)
	for i := range reqs {
		reqs[i] = request{token: b.TokenA, method: http.MethodPost, path: "/v1/members",
			body: map[string]any{"pool_id": tr.Pool, "address": "10.1.0.1", "port": 10000 + i}}
	}
	res := b.parallel(reqs)
	if got := statuses(res); got[http.StatusCreated] != 10 || got[http.StatusConflict] != 40 {
		t.Errorf("answers %v, want 10 × 201 and 40 × 409", got)
	}
	for _, r := range res {
		if r.Status == http.StatusConflict && r.ProblemType() != "quota-exceeded" {
			t.Errorf("409 of type %v", r.Body["type"])
		}
	}
	created := map[string]bool{}
	for _, r := range res {
		if r.Status == http.StatusCreated {
			created[r.Body["id"].(string)] = true
		}
	}
	ids := b.ids(b.TokenA, "/v1/members?pool_id="+tr.Pool)
	if len(ids) != 10 {
		t.Errorf("pool has %d members, want 10 (the quota)", len(ids))
	}
	for _, id := range ids {
		if !created[id] {
			t.Errorf("pool lists member %s, which no 201 announced", id)
		}
	}
}

// TestIfMatch covers optimistic concurrency on every kind of tenant object.
func TestIfMatch(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tr := b.buildTree(b.TokenA)
	patches := map[string]map[string]any{
		"/v1/load-balancers/" + tr.LB:         {"description": "changed"},
		"/v1/listeners/" + tr.Listener:        {"description": "changed"},
		"/v1/listeners/" + tr.HTTPSListener:   {"description": "changed"},
		"/v1/pools/" + tr.Pool:                {"description": "changed"},
		"/v1/members/" + tr.Member:            {"description": "changed"},
		"/v1/routing-rules/" + tr.Rule:        {"description": "changed"},
		"/v1/certificates/" + tr.Cert:         {"description": "changed"},
		"/v1/tenants/" + b.TenantA + "#admin": {"description": "changed"},
	}
	for p, patch := range patches {
		token := b.TokenA
		if path, ok := strings.CutSuffix(p, "#admin"); ok {
			p, token = path, b.Admin
		}
		cur := b.do(token, http.MethodGet, p, nil)
		v := int64(cur.Body["version"].(float64))
		if got, want := cur.Header.Get("ETag"), etagOf(v); got != want {
			t.Errorf("GET %s: ETag %q, want %q", p, got, want)
		}
		for _, stale := range []string{etagOf(v + 1), etagOf(v - 1), `"abc"`, `W/"0"`, etagOf(v+1) + ", " + etagOf(v+2)} {
			res := b.do(token, http.MethodPatch, p, patch, "If-Match", stale)
			if res.Status != http.StatusPreconditionFailed || !slices.Contains(res.Fields(), "If-Match") {
				t.Errorf("PATCH %s If-Match %s: %d %s", p, stale, res.Status, res.Raw)
			}
			res = b.do(token, http.MethodDelete, p+"?cascade=true", nil, "If-Match", stale)
			if res.Status != http.StatusPreconditionFailed {
				t.Errorf("DELETE %s If-Match %s: %d %s", p, stale, res.Status, res.Raw)
			}
		}
		if after := b.do(token, http.MethodGet, p, nil); string(after.Raw) != string(cur.Raw) {
			t.Errorf("%s changed by refused writes:\nbefore %s\nafter  %s", p, cur.Raw, after.Raw)
		}
		res := b.do(token, http.MethodPatch, p, patch, "If-Match", etagOf(v))
		if res.Status != http.StatusOK {
			t.Fatalf("PATCH %s with the current ETag: %d %s", p, res.Status, res.Raw)
		}
		if got := int64(res.Body["version"].(float64)); got != v+1 {
			t.Errorf("PATCH %s: version %d, want %d", p, got, v+1)
		}
		if got, want := res.Header.Get("ETag"), etagOf(v+1); got != want {
			t.Errorf("PATCH %s: ETag %q, want %q", p, got, want)
		}
		// A weak tag and a list holding the current one match too.
		res = b.do(token, http.MethodPatch, p, patch, "If-Match", `"1000", W/`+etagOf(v+1))
		if res.Status != http.StatusOK || res.Header.Get("ETag") != etagOf(v+2) {
			t.Errorf("PATCH %s with a list holding the current ETag: %d %s", p, res.Status, res.Raw)
		}
		if got := b.do(token, http.MethodGet, p, nil); got.Header.Get("ETag") != etagOf(v+2) || got.Body["description"] != "changed" {
			t.Errorf("GET %s after PATCH: ETag %q: %s", p, got.Header.Get("ETag"), got.Raw)
		}
	}
	// ETag on create.
	res := b.do(b.TokenA, http.MethodPost, "/v1/load-balancers", map[string]any{"name": "etag"})
	if res.Status != http.StatusCreated || res.Header.Get("ETag") != `"1"` || res.Body["version"] != float64(1) {
		t.Errorf("POST: %d ETag %q: %s", res.Status, res.Header.Get("ETag"), res.Raw)
	}
	// DELETE with a stale ETag leaves the object; with the current one it goes.
	p := "/v1/load-balancers/" + res.Body["id"].(string)
	b.must(http.StatusPreconditionFailed, b.TokenA, http.MethodDelete, p, nil, "If-Match", `"2"`)
	b.must(http.StatusOK, b.TokenA, http.MethodGet, p, nil)
	b.must(http.StatusAccepted, b.TokenA, http.MethodDelete, p, nil, "If-Match", `"1"`)
	b.must(http.StatusNotFound, b.TokenA, http.MethodGet, p, nil)
}

func etagOf(v int64) string { return `"` + strconv.FormatInt(v, 10) + `"` }

// TestIfMatchRace sends ten PATCHes with the same ETag at once: one wins.
func TestIfMatchRace(t *testing.T) {
	t.Parallel()
	b := setup(t)
	id := b.create(b.TokenA, "/v1/load-balancers", map[string]any{"name": "race"})
	reqs := make([]request, 10)
	for i := range reqs {
		reqs[i] = request{token: b.TokenA, method: http.MethodPatch, path: "/v1/load-balancers/" + id,
			body: map[string]any{"description": fmt.Sprint("writer ", i)}, headers: []string{"If-Match", `"1"`}}
	}
	res := b.parallel(reqs)
	if got := statuses(res); got[http.StatusOK] != 1 || got[http.StatusPreconditionFailed] != 9 {
		t.Fatalf("answers %v, want one 200 and nine 412", got)
	}
	var winner string
	for _, r := range res {
		if r.Status == http.StatusOK {
			winner = r.Body["description"].(string)
		}
	}
	got := b.must(http.StatusOK, b.TokenA, http.MethodGet, "/v1/load-balancers/"+id, nil)
	if got["version"] != float64(2) || got["description"] != winner {
		t.Errorf("after the race: version %v description %q, want 2 and %q", got["version"], got["description"], winner)
	}
}

func TestIdempotencyKey(t *testing.T) {
	t.Parallel()
	b := setup(t)
	body := map[string]any{"name": "idem", "labels": map[string]string{"env": "prod"}}
	reqs := make([]request, 20)
	for i := range reqs {
		reqs[i] = request{token: b.TokenA, method: http.MethodPost, path: "/v1/load-balancers", body: body, headers: []string{"Idempotency-Key", "create-idem-1"}}
	}
	res := b.parallel(reqs)
	id := ""
	for _, r := range res {
		if r.Status != http.StatusCreated {
			t.Fatalf("retry answered %d: %s", r.Status, r.Raw)
		}
		if id == "" {
			id = r.Body["id"].(string)
		}
		if r.Body["id"] != id || r.Header.Get("ETag") != `"1"` {
			t.Errorf("retry answered id %v ETag %q, want %s \"1\"", r.Body["id"], r.Header.Get("ETag"), id)
		}
	}
	if ids := b.ids(b.TokenA, "/v1/load-balancers"); !slices.Equal(ids, []string{id}) {
		t.Fatalf("load balancers %v, want just %s", ids, id)
	}
	// A later retry replays the same answer.
	again := b.do(b.TokenA, http.MethodPost, "/v1/load-balancers", body, "Idempotency-Key", "create-idem-1")
	if again.Status != http.StatusCreated || string(again.Raw) != string(res[0].Raw) {
		t.Errorf("replay: %d %s, want %s", again.Status, again.Raw, res[0].Raw)
	}

	// The same key with another body, or on another endpoint: 422 naming the key.
	certPEM, keyPEM := testcerts.SelfSigned(t, "idem.example.test")
	for _, c := range []struct {
		path string
		body map[string]any
	}{
		{"/v1/load-balancers", map[string]any{"name": "other"}},
		{"/v1/load-balancers", map[string]any{"name": "idem"}},
		{"/v1/certificates", map[string]any{"name": "idem", "certificate": certPEM, "private_key": keyPEM}},
		{"/v1/pools", map[string]any{"load_balancer_id": id, "protocol": "http"}},
	} {
		r := b.do(b.TokenA, http.MethodPost, c.path, c.body, "Idempotency-Key", "create-idem-1")
		if r.Status != http.StatusUnprocessableEntity || !slices.Contains(r.Fields(), "Idempotency-Key") {
			t.Errorf("POST %s reusing the key: %d %s", c.path, r.Status, r.Raw)
		}
	}
	if n := b.count(b.TokenA, "/v1/load-balancers"); n != 1 {
		t.Errorf("%d load balancers after refused reuses, want 1", n)
	}
	if n := b.count(b.TokenA, "/v1/pools") + b.count(b.TokenA, "/v1/certificates"); n != 0 {
		t.Errorf("%d pools and certificates after refused reuses, want 0", n)
	}

	// Tenant B's identical key is B's own: a new object, B's.
	rb := b.must(http.StatusCreated, b.TokenB, http.MethodPost, "/v1/load-balancers", body, "Idempotency-Key", "create-idem-1")
	if rb["id"] == id || rb["tenant_id"] != b.TenantB {
		t.Errorf("B's create with A's key: %v", rb)
	}
	if ids := b.ids(b.TokenB, "/v1/load-balancers"); !slices.Equal(ids, []string{rb["id"].(string)}) {
		t.Errorf("B's load balancers %v", ids)
	}
	// …and A's retry still gets A's object.
	if r := b.must(http.StatusCreated, b.TokenA, http.MethodPost, "/v1/load-balancers", body, "Idempotency-Key", "create-idem-1"); r["id"] != id {
		t.Errorf("A's retry after B used the key: %v", r["id"])
	}

	// A dry run does not use the key up.
	dry := map[string]any{"name": "dry"}
	b.must(http.StatusOK, b.TokenA, http.MethodPost, "/v1/load-balancers?dry_run=true", dry, "Idempotency-Key", "create-idem-2")
	b.must(http.StatusCreated, b.TokenA, http.MethodPost, "/v1/load-balancers", map[string]any{"name": "real"}, "Idempotency-Key", "create-idem-2")

	// Keys that are not keys.
	for _, key := range []string{strings.Repeat("k", 256), "has space"} {
		r := b.do(b.TokenA, http.MethodPost, "/v1/load-balancers", dry, "Idempotency-Key", key)
		if r.Status != http.StatusUnprocessableEntity || !slices.Contains(r.Fields(), "Idempotency-Key") {
			t.Errorf("Idempotency-Key %.20q: %d %s", key, r.Status, r.Raw)
		}
	}
	if n := b.count(b.TokenA, "/v1/load-balancers"); n != 2 {
		t.Errorf("%d load balancers, want 2", n)
	}
}

// TestParallelUniqueness: parallel creates that collide on a unique field
// get one 201 and 409s naming the field.
func TestParallelUniqueness(t *testing.T) {
	t.Parallel()
	b := setup(t)
	lb := b.create(b.TokenA, "/v1/load-balancers", map[string]any{})

	check := func(what, field string, res []response) {
		t.Helper()
		if got := statuses(res); got[http.StatusCreated] != 1 || got[http.StatusConflict] != len(res)-1 {
			t.Errorf("%s: answers %v, want one 201", what, got)
		}
		for _, r := range res {
			if r.Status == http.StatusConflict && !slices.Contains(r.Fields(), field) {
				t.Errorf("%s: 409 not naming %s: %s", what, field, r.Raw)
			}
		}
	}

	reqs := make([]request, 10)
	for i := range reqs {
		reqs[i] = request{token: b.TokenA, method: http.MethodPost, path: "/v1/listeners",
			body: map[string]any{"load_balancer_id": lb, "protocol": "tcp", "port": 7000, "name": fmt.Sprint("l", i)}}
	}
	check("same port", "port", b.parallel(reqs))

	// The same explicit VIP from two tenants.
	for i := range reqs {
		token := b.TokenA
		if i%2 == 1 {
			token = b.TokenB
		}
		reqs[i] = request{token: token, method: http.MethodPost, path: "/v1/load-balancers", body: map[string]any{"vip_address": "127.77.9.9"}}
	}
	check("same VIP", "vip_address", b.parallel(reqs))

	// Allocated VIPs never collide, whichever tenant asks.
	for i := range reqs {
		token := b.TokenA
		if i%2 == 1 {
			token = b.TokenB
		}
		reqs[i] = request{token: token, method: http.MethodPost, path: "/v1/load-balancers", body: map[string]any{}}
	}
	b.setQuota(b.TenantA, "load_balancers", 20)
	b.setQuota(b.TenantB, "load_balancers", 20)
	seen := map[string]string{}
	for _, r := range b.parallel(reqs) {
		if r.Status != http.StatusCreated {
			t.Fatalf("create: %d %s", r.Status, r.Raw)
		}
		vip := r.Body["vip_address"].(string)
		if other, dup := seen[vip]; dup {
			t.Errorf("VIP %s given to %s and %s", vip, other, r.Body["id"])
		}
		seen[vip] = r.Body["id"].(string)
		if a, err := netip.ParseAddr(vip); err != nil || !netip.MustParsePrefix("127.77.0.0/16").Contains(a) {
			t.Errorf("VIP %s outside the group's range", vip)
		}
	}
}

// TestMigrateConcurrently starts five migrators on a fresh database, as five
// API replicas starting together would: each succeeds, the schema is applied
// once.
func TestMigrateConcurrently(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := pgtest.NewDatabase(t)
	files, err := fs.Glob(migrations.FS, "*.sql")
	if err != nil || len(files) == 0 {
		t.Fatalf("migrations: %v %v", files, err)
	}
	const n = 5
	stores := make([]*store.Store, n)
	for i := range stores {
		if stores[i], err = store.Open(ctx, url); err != nil {
			t.Fatal(err)
		}
		defer stores[i].Close()
	}
	versions := make([]int32, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			versions[i], errs[i] = stores[i].Migrate(ctx)
		}()
	}
	close(start)
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Errorf("migrator %d: %v", i, errs[i])
		}
		if versions[i] != int32(len(files)) {
			t.Errorf("migrator %d: schema version %d, want %d", i, versions[i], len(files))
		}
	}
	var rows, version int
	if err := stores[0].PoolForTests().QueryRow(ctx, "SELECT count(*), max(version) FROM schema_version").Scan(&rows, &version); err != nil {
		t.Fatal(err)
	}
	if rows != 1 || version != len(files) {
		t.Errorf("schema_version has %d rows, version %d", rows, version)
	}
	// The schema is there and usable; migrating again changes nothing.
	if _, err := stores[0].PoolForTests().Exec(ctx, "SELECT id, vip_address FROM load_balancers LIMIT 1"); err != nil {
		t.Errorf("schema not applied: %v", err)
	}
	if v, err := stores[1].Migrate(ctx); err != nil || v != int32(len(files)) {
		t.Errorf("migrating again: %d %v", v, err)
	}
}
