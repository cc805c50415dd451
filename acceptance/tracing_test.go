package acceptance

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/fulcrumlb/fulcrum/internal/telemetry"
	"github.com/fulcrumlb/fulcrum/internal/teststack"
)

// otelpgxScope is the instrumentation scope of the store's SQL spans.
const otelpgxScope = "github.com/exaring/otelpgx"

// TestTraceChain follows one `terraform apply` through the whole system
// (DESIGN.md §6): the provider's client span → the API's server spans → their
// SQL spans, each write recording its traceparent with its revision → the
// snapshot of the newest write carrying that traceparent → the agent's
// "agent.apply" span linking to it → the HAProxy reload under that apply.
//
// The SDK tracer provider is installed as the otel global (the agent, otelpgx
// and otelhttp read the globals), so spans of agents of tests running in
// parallel land in the exporter too; everything here is found by trace id or
// by this test's node name and its own database's revision.
func TestTraceChain(t *testing.T) {
	ctx := context.Background()
	exp := tracetest.NewInMemoryExporter()
	tel, err := telemetry.Setup(ctx, "fulcrum-api", "test", telemetry.WithSpanExporter(exp))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Later spans of other tests' agents go nowhere.
		otel.SetTracerProvider(tracenoop.NewTracerProvider())
		otel.SetMeterProvider(metricnoop.NewMeterProvider())
		otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator())
		_ = tel.Shutdown(context.Background())
	})

	s := startStack(t, teststack.Options{Telemetry: tel})
	s.StartAgent("trace-node")
	backend := teststack.StartBackend(t, "traced")
	port := freePort(t)

	// The provider's client (provider/internal/fulcrum.NewClient): otelhttp
	// injects the W3C trace context of the request's context.
	hc := &http.Client{Timeout: 30 * time.Second, Transport: otelhttp.NewTransport(http.DefaultTransport)}
	create := func(ctx context.Context, path string, body map[string]any) string {
		t.Helper()
		b, _ := json.Marshal(body)
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, s.Endpoint+path, bytes.NewReader(b))
		req.Header.Set("Authorization", "Bearer "+s.TenantToken)
		req.Header.Set("Content-Type", "application/json")
		res, err := hc.Do(req)
		if err != nil {
			t.Fatalf("POST %s: %v", path, err)
		}
		defer res.Body.Close()
		raw, _ := io.ReadAll(res.Body)
		if res.StatusCode != http.StatusCreated {
			t.Fatalf("POST %s: %d %s", path, res.StatusCode, raw)
		}
		var out struct{ ID string }
		if err := json.Unmarshal(raw, &out); err != nil || out.ID == "" {
			t.Fatalf("POST %s: no id in %s", path, raw)
		}
		return out.ID
	}

	actx, applySpan := otel.Tracer("terraform-provider-fulcrum").Start(ctx, "terraform apply")
	traceID := applySpan.SpanContext().TraceID()
	lb := create(actx, "/v1/load-balancers", map[string]any{"name": "traced"})
	pool := create(actx, "/v1/pools", map[string]any{"load_balancer_id": lb, "protocol": "http"})
	create(actx, "/v1/members", map[string]any{"pool_id": pool, "address": "127.0.0.1", "port": backend.Port})
	listener := create(actx, "/v1/listeners", map[string]any{"load_balancer_id": lb, "protocol": "http", "port": port, "default_pool_id": pool})
	s.WaitActive("/v1/listeners/" + listener)
	applySpan.End()

	// The listener's write is the newest: its revision is the one the agent
	// ends up applying, and the revision records the write's traceparent.
	var listenerRev int64
	var recorded string
	if err := s.Store.PoolForTests().QueryRow(ctx, "SELECT l.revision, r.traceparent FROM listeners l JOIN revisions r ON r.revision = l.revision WHERE l.id = $1",
		listener).Scan(&listenerRev, &recorded); err != nil {
		t.Fatal(err)
	}

	// The agent reports (and the listener turns active) before its apply
	// span has ended, so wait for the span to arrive. Its children ended
	// before it did.
	var spans tracetest.SpanStubs
	var apply *tracetest.SpanStub
	for deadline := time.Now().Add(10 * time.Second); apply == nil; time.Sleep(50 * time.Millisecond) {
		if err := tel.TracerProvider().ForceFlush(ctx); err != nil {
			t.Fatal(err)
		}
		spans = exp.GetSpans()
		var seen []int64
		for i := range spans {
			sp := &spans[i]
			if sp.Name != "agent.apply" || !hasAttr(sp.Attributes, "fulcrum.node", "trace-node") {
				continue
			}
			// The first apply at or past the listener's revision: a later
			// write (a node's registration, say) may fold into it, and the
			// apply links to every write it folds.
			rev := attrInt(sp.Attributes, "fulcrum.revision")
			seen = append(seen, rev)
			if rev >= listenerRev && (apply == nil || rev < attrInt(apply.Attributes, "fulcrum.revision")) {
				apply = sp
			}
		}
		if apply == nil && time.Now().After(deadline) {
			t.Fatalf("no agent.apply span of revision %d or later after 10s; applies seen: %v", listenerRev, seen)
		}
	}
	var applyChild *tracetest.SpanStub
	var children []string
	for i := range spans {
		sp := &spans[i]
		if sp.Parent.SpanID() != apply.SpanContext.SpanID() || sp.SpanContext.TraceID() != apply.SpanContext.TraceID() {
			continue
		}
		children = append(children, sp.Name)
		// A reload wins over a runtime change that fell back to one.
		if sp.Name == "haproxy.reload" || sp.Name == "haproxy.runtime" && applyChild == nil {
			applyChild = sp
		}
	}
	if applyChild == nil {
		t.Fatalf("agent.apply of revision %d has no haproxy.reload or haproxy.runtime child; children: %v", listenerRev, children)
	}

	byID := map[trace.SpanID]*tracetest.SpanStub{}
	for i := range spans {
		if spans[i].SpanContext.TraceID() == traceID {
			byID[spans[i].SpanContext.SpanID()] = &spans[i]
		}
	}
	root := applySpan.SpanContext().SpanID()
	if byID[root] == nil {
		t.Fatal(`the "terraform apply" span was not exported`)
	}
	// descends reports whether sp's parent chain, within the trace, reaches
	// the span with id anc.
	descends := func(sp *tracetest.SpanStub, anc trace.SpanID) bool {
		for n := 0; sp != nil && n < 100; n++ {
			if sp.Parent.SpanID() == anc {
				return true
			}
			sp = byID[sp.Parent.SpanID()]
		}
		return false
	}

	// Each request's server span is in the trace, under the client span.
	servers := map[string]*tracetest.SpanStub{}
	for _, route := range []string{"load-balancers", "pools", "members", "listeners"} {
		name := "POST /v1/" + route
		for _, sp := range byID {
			if sp.Name == name && sp.SpanKind == trace.SpanKindServer {
				servers[route] = sp
			}
		}
		sp := servers[route]
		if sp == nil {
			t.Errorf("no server span %q in trace %s", name, traceID)
			continue
		}
		if !descends(sp, root) {
			t.Errorf("server span %q (parent %s) does not descend from the terraform apply span", name, sp.Parent.SpanID())
		}
		if !hasInt(sp.Attributes, "http.response.status_code", http.StatusCreated) {
			t.Errorf("server span %q: attributes %v, want status 201", name, sp.Attributes)
		}
		// The request's SQL, the revision record included, is in the trace
		// under its server span.
		var sql, revision bool
		for _, q := range byID {
			if q.InstrumentationScope.Name != otelpgxScope || !descends(q, sp.SpanContext.SpanID()) {
				continue
			}
			sql = true
			revision = revision || strings.Contains(attrString(q.Attributes, "db.query.text"), "INSERT INTO revisions")
		}
		if !sql {
			t.Errorf("no SQL span under server span %q", name)
		}
		if !revision {
			t.Errorf("no SQL span recording the revision under server span %q", name)
		}
	}
	if t.Failed() {
		t.FailNow()
	}

	// The revision of the newest write carries its server span's context.
	lsc := servers["listeners"].SpanContext
	if want := fmt.Sprintf("00-%s-%s-%s", lsc.TraceID(), lsc.SpanID(), lsc.TraceFlags()); recorded != want {
		t.Errorf("revision %d records traceparent %q, want the listener request's %q", listenerRev, recorded, want)
	}

	// The agent's apply of that revision links to that write (and to the
	// other writes it folds, each a server span of this trace).
	linked := false
	for _, l := range apply.Links {
		if l.SpanContext.TraceID() != traceID {
			continue
		}
		if l.SpanContext.SpanID() == lsc.SpanID() {
			linked = true
		}
		if sp := byID[l.SpanContext.SpanID()]; sp == nil || sp.SpanKind != trace.SpanKindServer || !strings.HasPrefix(sp.Name, "POST ") {
			t.Errorf("agent.apply of revision %d links to span %s, which is not a write's server span of the trace", listenerRev, l.SpanContext.SpanID())
		}
	}
	if !linked {
		t.Errorf("agent.apply of revision %d has links %v, none to the listener request's span %s", listenerRev, apply.Links, lsc.SpanID())
	}
	// A new listener needs a new frontend: a reload, not a runtime change.
	if applyChild.Name != "haproxy.reload" {
		t.Errorf("agent.apply of revision %d has child %s, want haproxy.reload", listenerRev, applyChild.Name)
	}
}

func hasInt(kvs []attribute.KeyValue, key string, v int64) bool {
	for _, kv := range kvs {
		if string(kv.Key) == key && kv.Value.Type() == attribute.INT64 && kv.Value.AsInt64() == v {
			return true
		}
	}
	return false
}

func attrInt(kvs []attribute.KeyValue, key string) int64 {
	for _, kv := range kvs {
		if string(kv.Key) == key {
			return kv.Value.AsInt64()
		}
	}
	return -1
}

func attrString(kvs []attribute.KeyValue, key string) string {
	for _, kv := range kvs {
		if string(kv.Key) == key {
			return kv.Value.AsString()
		}
	}
	return ""
}
