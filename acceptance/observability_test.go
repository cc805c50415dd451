package acceptance

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/codes"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/fulcrumlb/fulcrum/internal/pgtest"
	"github.com/fulcrumlb/fulcrum/internal/telemetry"
	"github.com/fulcrumlb/fulcrum/internal/teststack"
)

// tracedStack starts a stack whose API (and, through the otel globals, SQL
// and agents) records spans in memory. Tests using it do not run in parallel.
func tracedStack(t *testing.T) (*stack, *telemetry.Telemetry, *tracetest.InMemoryExporter) {
	t.Helper()
	exp := tracetest.NewInMemoryExporter()
	tel, err := telemetry.Setup(context.Background(), "fulcrum-api", "test", telemetry.WithSpanExporter(exp))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		otel.SetTracerProvider(tracenoop.NewTracerProvider())
		otel.SetMeterProvider(metricnoop.NewMeterProvider())
		otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator())
		_ = tel.Shutdown(context.Background())
	})
	return startStack(t, teststack.Options{Telemetry: tel}), tel, exp
}

// postTraced creates an object and returns its id and the server span of the
// request (from the Traceparent response header).
func postTraced(t *testing.T, s *stack, path string, body map[string]any) (string, trace.SpanContext) {
	t.Helper()
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest(http.MethodPost, s.Endpoint+path, bytes.NewReader(b))
	req.Header.Set("Authorization", "Bearer "+s.TenantToken)
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	defer res.Body.Close()
	var out struct{ ID string }
	if err := json.NewDecoder(res.Body).Decode(&out); err != nil || res.StatusCode != http.StatusCreated {
		t.Fatalf("POST %s: %d %v", path, res.StatusCode, err)
	}
	sc := trace.SpanContextFromContext(propagation.TraceContext{}.Extract(context.Background(),
		propagation.HeaderCarrier(res.Header)))
	if !sc.IsValid() || !sc.IsSampled() {
		t.Fatalf("POST %s: no sampled Traceparent in the response (%q)", path, res.Header.Get("Traceparent"))
	}
	return out.ID, sc
}

// TestTraceCoalescedWrites: N writes the agent applies in one snapshot (it
// was stopped while they were made) → its apply span links to each of them.
func TestTraceCoalescedWrites(t *testing.T) {
	s, tel, exp := tracedStack(t)
	const node = "coalesce-node"
	s.StartAgent(node)
	lb, _ := postTraced(t, s, "/v1/load-balancers", map[string]any{"name": "coalesced"})
	pool, _ := postTraced(t, s, "/v1/pools", map[string]any{"load_balancer_id": lb, "protocol": "http"})
	// A listener, so the load balancer is in HAProxy's configuration (one
	// without listeners is left out and costs no reload).
	lsn, _ := postTraced(t, s, "/v1/listeners", map[string]any{"load_balancer_id": lb, "protocol": "http", "port": 8080, "default_pool_id": pool})
	s.WaitActive("/v1/listeners/" + lsn)
	s.StopAgent(node)

	const n = 5
	want := map[trace.SpanID]bool{}
	var last string
	for i := range n {
		var sc trace.SpanContext
		last, sc = postTraced(t, s, "/v1/members", map[string]any{"pool_id": pool, "address": "127.0.0.1", "port": 9000 + i})
		want[sc.SpanID()] = true
	}
	var rev int64
	if err := s.Store.PoolForTests().QueryRow(context.Background(), "SELECT revision FROM members WHERE id = $1", last).Scan(&rev); err != nil {
		t.Fatal(err)
	}
	s.StartAgent(node)
	s.WaitActive("/v1/members/" + last)

	var apply *tracetest.SpanStub
	for deadline := time.Now().Add(15 * time.Second); apply == nil && time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		_ = tel.TracerProvider().ForceFlush(context.Background())
		spans := exp.GetSpans()
		for i := range spans {
			if spans[i].Name == "agent.apply" && hasAttr(spans[i].Attributes, "fulcrum.node", node) &&
				attrInt(spans[i].Attributes, "fulcrum.revision") >= rev {
				apply = &spans[i]
			}
		}
	}
	if apply == nil {
		t.Fatalf("no agent.apply span of revision %d on %s", rev, node)
	}
	got := map[trace.SpanID]bool{}
	for _, l := range apply.Links {
		got[l.SpanContext.SpanID()] = true
	}
	for id := range want {
		if !got[id] {
			t.Errorf("the apply of revision %d does not link to member write %s; links: %v", rev, id, fmt.Sprint(apply.Links))
		}
	}
	t.Logf("apply of revision %d: %d links for %d coalesced writes", attrInt(apply.Attributes, "fulcrum.revision"), len(apply.Links), n)

	// The agent's and the API's metrics (through the global meter provider
	// here), an authentication failure among them.
	if code, _ := s.CallAs("tok_00000000000000000000000000.nope", "GET", "/v1/load-balancers", nil); code != http.StatusUnauthorized {
		t.Errorf("a wrong token: %d, want 401", code)
	}
	rec := httptest.NewRecorder()
	tel.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	for _, want := range []string{"fulcrum_agent_apply_duration_seconds_bucket", "fulcrum_agent_reloads_total{",
		"fulcrum_agent_snapshot_size_bytes", "fulcrum_agent_applied_revision", "fulcrum_agent_load_balancer_errors",
		"fulcrum_api_snapshot_waiters", "fulcrum_api_node_reports_total{", `fulcrum_api_auth_failures_total{otel_scope_name="github.com/fulcrumlb/fulcrum/api/auth",otel_scope_schema_url="",otel_scope_version="",reason="unknown"}`,
		`provisioning_status="active"`, `fulcrum_api_node_revision_lag{node="` + node + `"`} {
		if !strings.Contains(rec.Body.String(), want) {
			t.Errorf("metrics have no %s", want)
		}
	}
}

// TestStatsSurviveReloads: a load balancer's counters do not drop when
// another load balancer on the node reloads HAProxy, nor when the agent (and
// its HAProxy) restarts.
func TestStatsSurviveReloads(t *testing.T) {
	t.Parallel()
	s := newStack(t, pgtest.NewDatabase(t))
	const node = "stats-node"
	s.StartAgent(node)
	b := teststack.StartBackend(t, "counted")
	lb := s.buildLB("counted", poolSpec{Port: 8000, Members: []int{b.Port}})
	cl := teststack.NewClient(nil)
	const n = 40
	for range n {
		if code, _, _, err := get(cl, lb.url(8000, "/"), nil); err != nil || code != 200 {
			t.Fatalf("request through the VIP: %d %v", code, err)
		}
	}
	requests := func() int64 {
		_, st := s.Call("GET", "/v1/load-balancers/"+lb.LB+"/stats", nil)
		v, _ := st["requests_total"].(float64)
		return int64(v)
	}
	waitRequests := func(what string) int64 {
		t.Helper()
		var got int64
		for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			if got = requests(); got >= n {
				return got
			}
		}
		t.Fatalf("%s: requests_total %d, want at least %d", what, got, n)
		return 0
	}
	before := waitRequests("after the traffic")

	// Another load balancer: a reload of the node's HAProxy.
	s.buildLB("other", poolSpec{Port: 8001, Members: []int{b.Port}})
	// Several reports after the reload (every 300ms in the test stack).
	time.Sleep(2 * time.Second)
	if got := requests(); got < before {
		t.Errorf("requests_total went from %d to %d when another load balancer reloaded HAProxy", before, got)
	}

	// The agent restarts, and HAProxy with it.
	s.StopAgent(node)
	s.StartAgent(node)
	time.Sleep(2 * time.Second)
	if got := waitRequests("after the agent restarted"); got < before {
		t.Errorf("requests_total went from %d to %d when the agent restarted", before, got)
	}
	t.Logf("requests_total: %d after the traffic, %d after a reload and a restart", before, requests())
}

// TestTraceRejectedLoadBalancer: the apply of a snapshot with a load
// balancer HAProxy rejects is an error span with an event naming the load
// balancer, its tenant and HAProxy's message.
func TestTraceRejectedLoadBalancer(t *testing.T) {
	s, tel, exp := tracedStack(t)
	const node = "reject-node"
	s.StartAgent(node)
	bad := s.newLB(8090, nil, teststack.StartBackend(t, "a"))
	// A regex Go's RE2 accepts but HAProxy's PCRE2 (non-UTF mode) rejects.
	s.Create("/v1/routing-rules", map[string]any{"listener_id": bad.Listener, "priority": 1,
		"conditions": []any{map[string]any{"field": "path", "match": "regex", "values": []string{`^/\x{100}`}}},
		"action":     map[string]any{"type": "deny"}})
	var event *sdktrace.Event
	var apply *tracetest.SpanStub
	for deadline := time.Now().Add(20 * time.Second); event == nil && time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		_ = tel.TracerProvider().ForceFlush(context.Background())
		spans := exp.GetSpans()
		for i := range spans {
			if spans[i].Name != "agent.apply" || !hasAttr(spans[i].Attributes, "fulcrum.node", node) {
				continue
			}
			for j := range spans[i].Events {
				if ev := &spans[i].Events[j]; ev.Name == "load balancer rejected" {
					event, apply = ev, &spans[i]
				}
			}
		}
	}
	if event == nil {
		t.Fatal("no agent.apply span with a \"load balancer rejected\" event")
	}
	if apply.Status.Code != codes.Error {
		t.Errorf("the apply with a rejected load balancer has status %v, want Error", apply.Status)
	}
	if !hasAttr(event.Attributes, "fulcrum.load_balancer_id", bad.LB) || !hasAttr(event.Attributes, "fulcrum.tenant_id", s.TenantID) ||
		attrString(event.Attributes, "exception.message") == "" {
		t.Errorf("the event does not name the load balancer %s, tenant %s and HAProxy's message: %v", bad.LB, s.TenantID, event.Attributes)
	}
}
