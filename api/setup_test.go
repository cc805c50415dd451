package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/fulcrumlb/fulcrum/api"
	"github.com/fulcrumlb/fulcrum/api/store"
	"github.com/fulcrumlb/fulcrum/internal/pgtest"
	"github.com/fulcrumlb/fulcrum/internal/secretbox"
	"github.com/fulcrumlb/fulcrum/internal/telemetry"
	"github.com/fulcrumlb/fulcrum/internal/testcerts"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// bundle is a running API on a fresh database with two tenants.
type bundle struct {
	t       testing.TB
	URL     string
	Store   *store.Store
	Admin   string // admin bearer token
	TenantA string // tenant ids
	TenantB string
	TokenA  string // tenant bearer tokens
	TokenB  string
	GroupID string // node group "default", 127.77.0.0/16 unless withVIPRange
	Node    string // node bearer token
	srv     *api.Server
}

// setupOptions change what setup creates.
type setupOptions struct {
	quotas   store.Quotas // both tenants'
	vipRange string       // the default node group's
	haproxy  string       // api.Config.HAProxy: "" skips the dry runs' haproxy -c
	database string       // connection URL; "" makes a new database with pgtest
	config   func(*api.Config)
	storeOpt store.Options
	// nodeJanitor is api.Config.NodeJanitorInterval (0: the default).
	nodeJanitor time.Duration
}

// withNodeJanitor runs the API's cleanup of down nodes every d.
func withNodeJanitor(d time.Duration) setupOption { return func(o *setupOptions) { o.nodeJanitor = d } }

// setupOption is an option of setup.
type setupOption func(*setupOptions)

// withQuotas gives both tenants quotas q instead of store.DefaultQuotas.
func withQuotas(q store.Quotas) setupOption { return func(o *setupOptions) { o.quotas = q } }

// withVIPRange gives the node group the VIPs of prefix instead of 127.77.0.0/16.
func withVIPRange(prefix string) setupOption { return func(o *setupOptions) { o.vipRange = prefix } }

// withHAProxy has dry runs checked with the haproxy binary at path.
func withHAProxy(path string) setupOption { return func(o *setupOptions) { o.haproxy = path } }

// withDatabase runs the API on the (empty) database at url.
func withDatabase(url string, opts store.Options) setupOption {
	return func(o *setupOptions) { o.database, o.storeOpt = url, opts }
}

// withConfig lets f change the API's configuration. setup lifts the rate
// limits unless f sets them.
func withConfig(f func(*api.Config)) setupOption { return func(o *setupOptions) { o.config = f } }

// noRateLimits lifts every token kind's rate limit.
var noRateLimits = map[string]api.RateLimit{store.TokenAdmin: {}, store.TokenTenant: {}, store.TokenNode: {}}

// setup starts the API against a brand-new Postgres database.
func setup(tb testing.TB, opts ...setupOption) *bundle {
	tb.Helper()
	o := setupOptions{quotas: store.DefaultQuotas, vipRange: "127.77.0.0/16"}
	for _, opt := range opts {
		opt(&o)
	}
	ctx := context.Background()
	if o.database == "" {
		o.database = pgtest.NewDatabase(tb)
	}
	st, err := store.OpenWith(ctx, o.database, o.storeOpt)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(st.Close)
	if _, err := st.Migrate(ctx); err != nil {
		tb.Fatal(err)
	}
	key, _ := secretbox.GenerateKey()
	raw, _ := secretbox.LoadKey(key)
	box, err := secretbox.New(raw)
	if err != nil {
		tb.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	// Telemetry as in production (server spans, X-Request-Id, Traceparent),
	// exporting nowhere and leaving the otel globals alone.
	tel, err := telemetry.Setup(ctx, "fulcrum-api-test", "test", telemetry.WithSpanExporter(tracetest.NewNoopExporter()), telemetry.WithoutGlobals())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
	cfg := api.Config{HAProxy: o.haproxy, RateLimits: noRateLimits, NodeJanitorInterval: o.nodeJanitor}
	if o.config != nil {
		o.config(&cfg)
	}
	srv, err := api.New(cfg, st, box, log, tel)
	if err != nil {
		tb.Fatal(err)
	}
	srv.Start(tb.Context())
	hs := httptest.NewServer(srv.Handler())
	tb.Cleanup(hs.Close)
	b := &bundle{t: tb, URL: hs.URL, Store: st, srv: srv}
	err = st.Write(ctx, false, func(tx *store.Tx) error {
		a, err := api.CreateTenantTx(ctx, tx, &store.Tenant{Name: "tenant-a", Quotas: o.quotas})
		if err != nil {
			return err
		}
		bb, err := api.CreateTenantTx(ctx, tx, &store.Tenant{Name: "tenant-b", Quotas: o.quotas})
		if err != nil {
			return err
		}
		b.TenantA, b.TenantB = a.ID, bb.ID
		g, err := api.CreateNodeGroupTx(ctx, tx, "default", "", nil, o.vipRange)
		if err != nil {
			return err
		}
		b.GroupID = g.ID
		if _, b.Admin, err = api.IssueToken(ctx, tx, store.TokenAdmin, "", "", "admin", "", nil); err != nil {
			return err
		}
		if _, b.TokenA, err = api.IssueToken(ctx, tx, store.TokenTenant, a.ID, "", "a", "", nil); err != nil {
			return err
		}
		if _, b.TokenB, err = api.IssueToken(ctx, tx, store.TokenTenant, bb.ID, "", "b", "", nil); err != nil {
			return err
		}
		_, b.Node, err = api.IssueToken(ctx, tx, store.TokenNode, "", "", "node", "", nil)
		return err
	})
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// response is a decoded answer.
type response struct {
	Status int
	Header http.Header
	Body   map[string]any
	Raw    []byte
}

// do sends a request; body may be nil, a string (sent as is) or any value (JSON).
func (b *bundle) do(token, method, path string, body any, headers ...string) response {
	b.t.Helper()
	res, err := b.send(token, method, path, body, headers...)
	if err != nil {
		b.t.Fatal(err)
	}
	// Statuses are derived from reports in the background (deriver.go): a
	// report sent here is followed by its group's derivation, as when
	// reports derived statuses themselves.
	if method == http.MethodPost && strings.HasSuffix(path, "/reports") && res.Status == http.StatusNoContent {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := b.srv.DeriveNow(ctx); err != nil {
			b.t.Fatalf("derive statuses after a report: %v", err)
		}
	}
	return res
}

// send is do for goroutines: it reports failures instead of ending the test.
// A header given as "Content-Type" replaces the JSON default; an empty value
// removes it.
func (b *bundle) send(token, method, path string, body any, headers ...string) (response, error) {
	var r io.Reader
	switch v := body.(type) {
	case nil:
	case string:
		r = bytes.NewBufferString(v)
	default:
		buf, err := json.Marshal(v)
		if err != nil {
			return response{}, err
		}
		r = bytes.NewReader(buf)
	}
	req, err := http.NewRequest(method, b.URL+path, r)
	if err != nil {
		return response{}, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		if headers[i+1] == "" {
			req.Header.Del(headers[i])
			continue
		}
		req.Header.Set(headers[i], headers[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return response{}, err
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		return response{}, fmt.Errorf("%s %s: read body: %w", method, path, err)
	}
	out := response{Status: res.StatusCode, Header: res.Header, Raw: raw}
	if len(raw) > 0 && raw[0] == '{' {
		if err := json.Unmarshal(raw, &out.Body); err != nil {
			return out, fmt.Errorf("%s %s: decode %q: %w", method, path, raw, err)
		}
	}
	return out, nil
}

// must sends a request and fails the test unless the status is want.
func (b *bundle) must(want int, token, method, path string, body any, headers ...string) map[string]any {
	b.t.Helper()
	res := b.do(token, method, path, body, headers...)
	if res.Status != want {
		b.t.Fatalf("%s %s: status %d, want %d: %s", method, path, res.Status, want, res.Raw)
	}
	return res.Body
}

// create POSTs and returns the new object's id.
func (b *bundle) create(token, path string, body any) string {
	b.t.Helper()
	return b.must(http.StatusCreated, token, http.MethodPost, path, body)["id"].(string)
}

// tree is one tenant's full set of objects.
type tree struct {
	LB, Listener, HTTPSListener, Pool, Member, Rule, Cert string
}

// buildTree creates one of every tenant object for token.
func (b *bundle) buildTree(token string) tree {
	b.t.Helper()
	var tr tree
	tr.LB = b.create(token, "/v1/load-balancers", map[string]any{"name": "web"})
	tr.Pool = b.create(token, "/v1/pools", map[string]any{"load_balancer_id": tr.LB, "protocol": "http", "name": "app",
		"health_monitor": map[string]any{"type": "http", "path": "/healthz"}})
	tr.Member = b.create(token, "/v1/members", map[string]any{"pool_id": tr.Pool, "address": "127.0.0.1", "port": 9001})
	tr.Listener = b.create(token, "/v1/listeners", map[string]any{"load_balancer_id": tr.LB, "protocol": "http", "port": 80, "default_pool_id": tr.Pool})
	tr.Rule = b.create(token, "/v1/routing-rules", map[string]any{"listener_id": tr.Listener, "priority": 10,
		"conditions": []any{map[string]any{"field": "path", "match": "prefix", "values": []string{"/api/"}}},
		"action":     map[string]any{"type": "forward", "forward": map[string]any{"pools": []any{map[string]any{"pool_id": tr.Pool}}}}})
	certPEM, keyPEM := testcerts.SelfSigned(b.t, "www.example.test")
	tr.Cert = b.create(token, "/v1/certificates", map[string]any{"name": "www", "certificate": certPEM, "private_key": keyPEM})
	tr.HTTPSListener = b.create(token, "/v1/listeners", map[string]any{"load_balancer_id": tr.LB, "protocol": "https", "port": 443,
		"default_pool_id": tr.Pool, "certificate_ids": []string{tr.Cert}})
	return tr
}

// Fields returns the errors[].field names of a problem response.
func (r response) Fields() []string {
	var out []string
	errs, _ := r.Body["errors"].([]any)
	for _, e := range errs {
		if m, ok := e.(map[string]any); ok {
			f, _ := m["field"].(string)
			out = append(out, f)
		}
	}
	return out
}

// FieldMessage returns the message of the first error naming field, and
// whether there is one.
func (r response) FieldMessage(field string) (string, bool) {
	errs, _ := r.Body["errors"].([]any)
	for _, e := range errs {
		if m, ok := e.(map[string]any); ok && m["field"] == field {
			msg, _ := m["message"].(string)
			return msg, true
		}
	}
	return "", false
}

// ProblemType returns the last segment of a problem's type URI.
func (r response) ProblemType() string {
	typ, _ := r.Body["type"].(string)
	return typ[strings.LastIndex(typ, "/")+1:]
}

// listAll follows next_page_token through every page of the list at path
// (which may carry a query) and returns the items.
func (b *bundle) listAll(token, path string) []map[string]any {
	b.t.Helper()
	var items []map[string]any
	sep := "?"
	if strings.Contains(path, "?") {
		sep = "&"
	}
	next := ""
	for page := 0; ; page++ {
		p := path
		if next != "" {
			p += sep + "page_token=" + url.QueryEscape(next)
		}
		body := b.must(http.StatusOK, token, http.MethodGet, p, nil)
		list, ok := body["items"].([]any)
		if !ok {
			b.t.Fatalf("GET %s: no items: %v", p, body)
		}
		for _, it := range list {
			items = append(items, it.(map[string]any))
		}
		next, _ = body["next_page_token"].(string)
		if next == "" {
			return items
		}
		if page > 1000 {
			b.t.Fatalf("GET %s: pagination does not end", path)
		}
	}
}

// ids lists every object at path and returns their ids.
func (b *bundle) ids(token, path string) []string {
	b.t.Helper()
	var out []string
	for _, it := range b.listAll(token, path) {
		out = append(out, it["id"].(string))
	}
	return out
}

// count is the number of objects listed at path.
func (b *bundle) count(token, path string) int {
	b.t.Helper()
	return len(b.listAll(token, path))
}

// collections are the lists of every tenant object kind.
var collections = []string{"/v1/load-balancers", "/v1/listeners", "/v1/pools", "/v1/members", "/v1/routing-rules", "/v1/certificates"}

// counts is the number of objects of each kind token sees.
func (b *bundle) counts(token string) map[string]int {
	b.t.Helper()
	out := map[string]int{}
	for _, c := range collections {
		out[c] = b.count(token, c)
	}
	return out
}

// paths returns the URL of each object of the tree.
func (tr tree) paths() []string {
	return []string{"/v1/load-balancers/" + tr.LB, "/v1/listeners/" + tr.Listener, "/v1/listeners/" + tr.HTTPSListener,
		"/v1/pools/" + tr.Pool, "/v1/members/" + tr.Member, "/v1/routing-rules/" + tr.Rule, "/v1/certificates/" + tr.Cert}
}

// tokenID is the id part of a bearer token (`<id>.<secret>`).
func tokenID(bearer string) string {
	id, _, _ := strings.Cut(bearer, ".")
	return id
}
