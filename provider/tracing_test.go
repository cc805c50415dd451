package provider_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/terraform-plugin-go/tfprotov6"
	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"go.opentelemetry.io/otel"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/fulcrumlb/fulcrum/internal/telemetry"
	"github.com/fulcrumlb/fulcrum/internal/telemetry/otlptest"
	"github.com/fulcrumlb/fulcrum/internal/testcerts"
	"github.com/fulcrumlb/fulcrum/internal/teststack"
	"github.com/fulcrumlb/fulcrum/provider"
	"github.com/fulcrumlb/fulcrum/provider/internal/acctest"
)

const otelpgxScope = "github.com/exaring/otelpgx"

// TestAccTraceProviderToAgent runs a real `terraform apply` with every
// program exporting over OTLP/HTTP to an in-process receiver, as a user does
// with OTEL_EXPORTER_OTLP_ENDPOINT: the provider's operation spans join the
// trace terraform passes in TRACEPARENT, the API's server spans are under the
// provider's client spans, the SQL under the server spans, and the agent's
// apply links to the write it applied. Nothing exported holds a token, a
// private key or a certificate body.
//
// It installs the API's tracer provider as the otel global (otelpgx and the
// agent read it), so it does not run in parallel; the parallel tests of the
// package start after it.
func TestAccTraceProviderToAgent(t *testing.T) {
	acctest.SkipUnlessAcc(t)
	acctest.PreCheck(t)
	ctx := context.Background()
	rcv := otlptest.Start(t)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", rcv.Endpoint)
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
	t.Setenv("OTEL_TRACES_EXPORTER", "")
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "100")
	var tid, sid [16]byte
	_, _ = rand.Read(tid[:])
	_, _ = rand.Read(sid[:8])
	rootTrace, rootSpan := hex.EncodeToString(tid[:]), hex.EncodeToString(sid[:8])
	t.Setenv("TRACEPARENT", "00-"+rootTrace+"-"+rootSpan+"-01")

	var logs syncBuffer
	apiTel, err := telemetry.Setup(ctx, "fulcrum-api", "test", telemetry.WithLogger(telemetry.NewLogger(&logs, slog.LevelInfo)))
	if err != nil {
		t.Fatal(err)
	}
	provTel, err := telemetry.Setup(ctx, provider.ServiceName, "test", telemetry.WithoutGlobals())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		otel.SetTracerProvider(tracenoop.NewTracerProvider())
		otel.SetMeterProvider(metricnoop.NewMeterProvider())
		otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator())
		_ = apiTel.Shutdown(context.Background())
		_ = provTel.Shutdown(context.Background())
	})

	s := teststack.Start(t, teststack.Options{Telemetry: apiTel})
	s.StartAgent("node-1")
	backend := teststack.StartBackend(t, "traced")
	cert, key := testcerts.SelfSigned(t, "traced.example.com")
	cfg := acctest.ProviderBlock(s, s.TenantToken) + fmt.Sprintf(`
resource "fulcrum_certificate" "c" {
  name        = "traced"
  certificate = %q
  private_key = %q
}

resource "fulcrum_load_balancer" "web" {
  name           = "traced"
  cascade_delete = true
}

resource "fulcrum_pool" "app" {
  load_balancer_id = fulcrum_load_balancer.web.id
  protocol         = "http"
}

resource "fulcrum_member" "a" {
  pool_id = fulcrum_pool.app.id
  address = "127.0.0.1"
  port    = %d
}

resource "fulcrum_listener" "http" {
  load_balancer_id = fulcrum_load_balancer.web.id
  protocol         = "http"
  port             = 8000
  default_pool_id  = fulcrum_pool.app.id
}
`, cert, key, backend.Port)
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: map[string]func() (tfprotov6.ProviderServer, error){
			"fulcrum": provider.NewServer("test", provTel.TracerProvider()),
		},
		Steps: []resource.TestStep{{Config: cfg}},
	})

	// Find the chain, waiting for the agent's apply span (it ends after the
	// report that turned the listener active).
	var spans []otlptest.Span
	var missing string
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		_ = provTel.TracerProvider().ForceFlush(ctx)
		_ = apiTel.TracerProvider().ForceFlush(ctx)
		spans = rcv.Spans()
		if missing = checkChain(spans, rootTrace, rootSpan, s.TenantID); missing == "" || time.Now().After(deadline) {
			break
		}
	}
	if missing != "" {
		var names []string
		for _, sp := range spans {
			if sp.TraceID == rootTrace {
				names = append(names, sp.Service+":"+sp.Name)
			}
		}
		t.Fatalf("%s\nspans of trace %s: %v", missing, rootTrace, names)
	}

	// The certificate's creation has an audit line naming the token.
	if !strings.Contains(logs.String(), `"msg":"audit","method":"POST","path":"/v1/certificates"`) {
		t.Errorf("no audit line for the certificate's creation in:\n%s", logs.String())
	}

	// Nothing exported, logged or labelled holds a secret.
	rec := httptest.NewRecorder()
	apiTel.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	text := rcv.Text() + logs.String() + rec.Body.String()
	secrets := map[string]string{"tenant token": s.TenantToken, "admin token": s.AdminToken, "node token": s.NodeToken}
	for name, v := range secrets {
		if v != "" && strings.Contains(text, v) {
			t.Errorf("the %s was exported", name)
		}
	}
	for _, marker := range []string{"PRIVATE KEY", "BEGIN CERTIFICATE", "Bearer "} {
		if strings.Contains(text, marker) {
			t.Errorf("%q was exported", marker)
		}
	}
	for _, line := range strings.Split(strings.TrimSpace(cert), "\n")[1:3] {
		if strings.Contains(text, line) {
			t.Errorf("a line of the certificate body was exported: %q", line)
		}
	}
}

// checkChain returns what is missing from the trace rootTrace for the
// listener's creation, or "" when the whole chain is there: provider
// operation span (child of the TRACEPARENT span) → provider client span →
// API server span → SQL spans recording the revision, and an agent apply
// span linking to that server span.
func checkChain(spans []otlptest.Span, rootTrace, rootSpan, tenantID string) string {
	byID := map[string]otlptest.Span{}
	for _, sp := range spans {
		if sp.TraceID == rootTrace {
			byID[sp.SpanID] = sp
		}
	}
	find := func(pred func(otlptest.Span) bool) (otlptest.Span, bool) {
		for _, sp := range byID {
			if pred(sp) {
				return sp, true
			}
		}
		return otlptest.Span{}, false
	}
	op, ok := find(func(sp otlptest.Span) bool {
		return sp.Service == provider.ServiceName && sp.Name == "fulcrum_listener create"
	})
	if !ok {
		return "no provider span \"fulcrum_listener create\" in the trace of TRACEPARENT"
	}
	if op.ParentSpanID != rootSpan {
		return fmt.Sprintf("the provider's operation span has parent %q, want the TRACEPARENT span %s", op.ParentSpanID, rootSpan)
	}
	client, ok := find(func(sp otlptest.Span) bool {
		return sp.Service == provider.ServiceName && sp.Kind == tracepb.Span_SPAN_KIND_CLIENT && sp.ParentSpanID == op.SpanID &&
			sp.Attributes["http.request.method"] == "POST"
	})
	if !ok {
		return "no provider client span (POST) under the operation span"
	}
	server, ok := find(func(sp otlptest.Span) bool {
		return sp.Service == "fulcrum-api" && sp.Kind == tracepb.Span_SPAN_KIND_SERVER && sp.ParentSpanID == client.SpanID
	})
	if !ok {
		return "no API server span under the provider's client span"
	}
	if server.Name != "POST /v1/listeners" {
		return fmt.Sprintf("the API server span under the client span is %q, want POST /v1/listeners", server.Name)
	}
	if server.Attributes["fulcrum.tenant_id"] != tenantID {
		return fmt.Sprintf("the API server span has fulcrum.tenant_id %q, want %s", server.Attributes["fulcrum.tenant_id"], tenantID)
	}
	for _, k := range []string{"fulcrum.load_balancer_id", "fulcrum.revision", "fulcrum.token_id"} {
		if server.Attributes[k] == "" {
			return fmt.Sprintf("the API server span has no %s: %v", k, server.Attributes)
		}
	}
	descends := func(sp otlptest.Span, anc string) bool {
		for n := 0; n < 50 && sp.ParentSpanID != ""; n++ {
			if sp.ParentSpanID == anc {
				return true
			}
			sp = byID[sp.ParentSpanID]
		}
		return false
	}
	if _, ok := find(func(sp otlptest.Span) bool {
		return sp.Scope == otelpgxScope && descends(sp, server.SpanID) && strings.Contains(sp.Attributes["db.query.text"], "INSERT INTO revisions")
	}); !ok {
		return "no SQL span recording the revision under the API server span"
	}
	if _, ok := find(func(sp otlptest.Span) bool {
		return sp.Name == "wait active" && sp.ParentSpanID == op.SpanID
	}); !ok {
		return "no \"wait active\" span under the operation span"
	}
	for _, sp := range spans {
		if sp.Name != "agent.apply" {
			continue
		}
		for _, l := range sp.Links {
			if l.TraceID == rootTrace && l.SpanID == server.SpanID {
				return ""
			}
		}
	}
	return "no agent.apply span links to the listener's POST server span"
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
