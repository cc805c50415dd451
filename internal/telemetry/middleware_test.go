package telemetry

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

const lbRoute = "/v1/load-balancers/:id"

// handlerSeen records what a handler observed in its request context.
type handlerSeen struct {
	requestID string
	span      trace.SpanContext
}

func newTestTelemetry(t *testing.T) (*Telemetry, *tracetest.InMemoryExporter) {
	t.Helper()
	exp := tracetest.NewInMemoryExporter()
	tel, err := Setup(context.Background(), "fulcrum-test", "v1.2.3", WithSpanExporter(exp), WithoutGlobals())
	if err != nil {
		t.Fatalf("Setup: %v", err)
	}
	t.Cleanup(func() {
		if err := tel.Shutdown(context.Background()); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
	return tel, exp
}

func newTestEcho(tel *Telemetry, seen *handlerSeen, pre bool) *echo.Echo {
	e := echo.New()
	if pre {
		e.Pre(tel.EchoMiddleware())
	} else {
		e.Use(tel.EchoMiddleware())
	}
	e.GET(lbRoute, func(c echo.Context) error {
		ctx := c.Request().Context()
		if seen != nil {
			seen.requestID = RequestIDFrom(ctx)
			seen.span = trace.SpanContextFromContext(ctx)
		}
		return c.JSON(http.StatusOK, map[string]string{"id": c.Param("id")})
	})
	e.GET("/v1/boom", func(echo.Context) error {
		return errors.New("database on fire")
	})
	e.GET("/v1/teapot", func(echo.Context) error {
		return echo.NewHTTPError(http.StatusTeapot)
	})
	return e
}

func serve(e *echo.Echo, req *http.Request) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	e.ServeHTTP(rec, req)
	return rec
}

func endedSpans(t *testing.T, tel *Telemetry, exp *tracetest.InMemoryExporter) tracetest.SpanStubs {
	t.Helper()
	if err := tel.TracerProvider().ForceFlush(context.Background()); err != nil {
		t.Fatalf("ForceFlush: %v", err)
	}
	return exp.GetSpans()
}

func attrValue(attrs []attribute.KeyValue, key attribute.Key) (attribute.Value, bool) {
	for _, kv := range attrs {
		if kv.Key == key {
			return kv.Value, true
		}
	}
	return attribute.Value{}, false
}

func responseSpanContext(t *testing.T, rec *httptest.ResponseRecorder) trace.SpanContext {
	t.Helper()
	tp := rec.Header().Get("Traceparent")
	if tp == "" {
		t.Fatalf("no Traceparent response header; headers: %v", rec.Header())
	}
	ctx := propagation.TraceContext{}.Extract(context.Background(), propagation.HeaderCarrier(rec.Header()))
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		t.Fatalf("Traceparent %q does not parse", tp)
	}
	return sc
}

func TestMiddlewareServerSpan(t *testing.T) {
	for _, tc := range []struct {
		name string
		pre  bool
	}{{"Use", false}, {"Pre", true}} {
		t.Run(tc.name, func(t *testing.T) {
			tel, exp := newTestTelemetry(t)
			var seen handlerSeen
			e := newTestEcho(tel, &seen, tc.pre)

			rec := serve(e, httptest.NewRequest(http.MethodGet, "/v1/load-balancers/lb-42", nil))
			if rec.Code != http.StatusOK {
				t.Fatalf("status = %d, want 200", rec.Code)
			}

			spans := endedSpans(t, tel, exp)
			if len(spans) != 1 {
				t.Fatalf("got %d spans, want 1: %+v", len(spans), spans)
			}
			s := spans[0]
			if want := "GET " + lbRoute; s.Name != want {
				t.Errorf("span name = %q, want %q", s.Name, want)
			}
			if s.SpanKind != trace.SpanKindServer {
				t.Errorf("span kind = %v, want server", s.SpanKind)
			}
			if s.Parent.IsValid() {
				t.Errorf("span has parent %v, want root", s.Parent)
			}
			if v, ok := attrValue(s.Attributes, "http.response.status_code"); !ok || v.AsInt64() != 200 {
				t.Errorf("http.response.status_code = %v (present %v), want 200", v.Emit(), ok)
			}
			if v, _ := attrValue(s.Attributes, "http.route"); v.AsString() != lbRoute {
				t.Errorf("http.route = %q, want %q", v.AsString(), lbRoute)
			}
			if v, _ := attrValue(s.Attributes, "http.request.method"); v.AsString() != http.MethodGet {
				t.Errorf("http.request.method = %q, want GET", v.AsString())
			}
			if v, _ := attrValue(s.Attributes, "client.address"); v.AsString() == "" {
				t.Errorf("client.address missing")
			}
			if s.Status.Code == codes.Error {
				t.Errorf("span status = %v, want unset", s.Status)
			}

			// Traceparent response header names the server span.
			sc := responseSpanContext(t, rec)
			if sc.TraceID() != s.SpanContext.TraceID() || sc.SpanID() != s.SpanContext.SpanID() {
				t.Errorf("Traceparent %s/%s, span %s/%s", sc.TraceID(), sc.SpanID(),
					s.SpanContext.TraceID(), s.SpanContext.SpanID())
			}
			// The handler's request context carries the span.
			if seen.span.SpanID() != s.SpanContext.SpanID() {
				t.Errorf("handler saw span %s, want %s", seen.span.SpanID(), s.SpanContext.SpanID())
			}
		})
	}
}

func TestMiddlewareIncomingTraceparent(t *testing.T) {
	tel, exp := newTestTelemetry(t)
	e := newTestEcho(tel, nil, false)

	const (
		traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
		spanID  = "00f067aa0ba902b7"
	)
	req := httptest.NewRequest(http.MethodGet, "/v1/load-balancers/lb-1", nil)
	req.Header.Set("traceparent", "00-"+traceID+"-"+spanID+"-01")
	rec := serve(e, req)

	spans := endedSpans(t, tel, exp)
	if len(spans) != 1 {
		t.Fatalf("got %d spans, want 1", len(spans))
	}
	s := spans[0]
	if got := s.SpanContext.TraceID().String(); got != traceID {
		t.Errorf("trace id = %s, want %s", got, traceID)
	}
	if got := s.Parent.SpanID().String(); got != spanID || !s.Parent.IsRemote() {
		t.Errorf("parent = %s (remote %v), want remote %s", got, s.Parent.IsRemote(), spanID)
	}
	sc := responseSpanContext(t, rec)
	if sc.TraceID().String() != traceID {
		t.Errorf("Traceparent trace id = %s, want %s", sc.TraceID(), traceID)
	}
	if sc.SpanID() != s.SpanContext.SpanID() {
		t.Errorf("Traceparent span id = %s, want server span %s", sc.SpanID(), s.SpanContext.SpanID())
	}
}

func TestMiddlewareRequestID(t *testing.T) {
	generated := regexp.MustCompile(`^[0-9a-f]{32}$`)
	for _, tc := range []struct {
		name, incoming string
		echoed         bool
	}{
		{"absent", "", false},
		{"valid", "abc-123_x.Y", true},
		{"uuid", "0b6f1c2e-58f4-4a53-9d3f-8a9b2a7e1f00", true},
		{"max length", strings.Repeat("a", 128), true},
		{"too long", strings.Repeat("a", 129), false},
		{"space", "bad id", false},
		{"header injection", "x\r\nSet-Cookie: a=b", false},
		{"unicode", "idé", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tel, _ := newTestTelemetry(t)
			var seen handlerSeen
			e := newTestEcho(tel, &seen, false)

			req := httptest.NewRequest(http.MethodGet, "/v1/load-balancers/lb-1", nil)
			if tc.incoming != "" {
				req.Header[HeaderRequestID] = []string{tc.incoming}
			}
			rec := serve(e, req)
			got := rec.Header().Get(HeaderRequestID)
			if tc.echoed {
				if got != tc.incoming {
					t.Errorf("X-Request-Id = %q, want echoed %q", got, tc.incoming)
				}
			} else if !generated.MatchString(got) {
				t.Errorf("X-Request-Id = %q, want a generated id", got)
			}
			if seen.requestID != got {
				t.Errorf("RequestIDFrom in handler = %q, want %q", seen.requestID, got)
			}
		})
	}

	t.Run("unique", func(t *testing.T) {
		tel, _ := newTestTelemetry(t)
		e := newTestEcho(tel, nil, false)
		a := serve(e, httptest.NewRequest(http.MethodGet, "/v1/load-balancers/1", nil)).Header().Get(HeaderRequestID)
		b := serve(e, httptest.NewRequest(http.MethodGet, "/v1/load-balancers/1", nil)).Header().Get(HeaderRequestID)
		if a == b {
			t.Errorf("generated ids collide: %q", a)
		}
	})
}

func TestMiddlewareErrors(t *testing.T) {
	tel, exp := newTestTelemetry(t)
	e := newTestEcho(tel, nil, false)

	rec := serve(e, httptest.NewRequest(http.MethodGet, "/v1/boom", nil))
	if rec.Code != http.StatusInternalServerError {
		t.Fatalf("status = %d, want 500", rec.Code)
	}
	if rec.Header().Get(HeaderRequestID) == "" || rec.Header().Get("Traceparent") == "" {
		t.Errorf("headers missing on error response: %v", rec.Header())
	}
	rec = serve(e, httptest.NewRequest(http.MethodGet, "/v1/teapot", nil))
	if rec.Code != http.StatusTeapot {
		t.Fatalf("status = %d, want 418", rec.Code)
	}

	spans := endedSpans(t, tel, exp)
	if len(spans) != 2 {
		t.Fatalf("got %d spans, want 2", len(spans))
	}
	byName := map[string]sdktrace.ReadOnlySpan{}
	for _, s := range spans.Snapshots() {
		byName[s.Name()] = s
	}
	boom := byName["GET /v1/boom"]
	if boom == nil {
		t.Fatalf("no span GET /v1/boom in %v", byName)
	}
	if boom.Status().Code != codes.Error {
		t.Errorf("5xx span status = %v, want Error", boom.Status())
	}
	if v, _ := attrValue(boom.Attributes(), "http.response.status_code"); v.AsInt64() != 500 {
		t.Errorf("5xx status attribute = %v", v.Emit())
	}
	if v, _ := attrValue(boom.Attributes(), "error.type"); v.AsString() != "500" {
		t.Errorf("error.type = %q, want 500", v.AsString())
	}
	teapot := byName["GET /v1/teapot"]
	if teapot == nil {
		t.Fatalf("no span GET /v1/teapot in %v", byName)
	}
	if teapot.Status().Code == codes.Error {
		t.Errorf("4xx span status = %v, want unset", teapot.Status())
	}
	if v, _ := attrValue(teapot.Attributes(), "http.response.status_code"); v.AsInt64() != 418 {
		t.Errorf("4xx status attribute = %v", v.Emit())
	}
}

func TestMiddlewarePanic(t *testing.T) {
	tel, exp := newTestTelemetry(t)
	e := echo.New()
	e.Use(tel.EchoMiddleware())
	e.GET("/v1/panic", func(echo.Context) error { panic("kaboom") })

	func() {
		defer func() {
			if r := recover(); r != "kaboom" {
				t.Errorf("recovered %v, want the original panic", r)
			}
		}()
		serve(e, httptest.NewRequest(http.MethodGet, "/v1/panic", nil))
	}()

	spans := endedSpans(t, tel, exp)
	if len(spans) != 1 || spans[0].Status.Code != codes.Error {
		t.Fatalf("spans = %+v, want one error span", spans)
	}
	body := scrapeMetrics(t, tel)
	if !regexp.MustCompile(`http_server_active_requests\{[^}]*http_route="/v1/panic"[^}]*\} 0`).MatchString(body) {
		t.Errorf("active requests not decremented after panic:\n%s", grepLines(body, "http_server_active_requests"))
	}
}

func TestMiddlewareUnknownMethod(t *testing.T) {
	tel, exp := newTestTelemetry(t)
	e := echo.New()
	e.Use(tel.EchoMiddleware())
	e.Add("PURGE", "/v1/cache", func(c echo.Context) error { return c.NoContent(http.StatusNoContent) })

	serve(e, httptest.NewRequest("PURGE", "/v1/cache", nil))
	spans := endedSpans(t, tel, exp)
	if len(spans) != 1 {
		t.Fatalf("got %d spans, want 1", len(spans))
	}
	s := spans[0]
	if s.Name != "HTTP /v1/cache" {
		t.Errorf("span name = %q, want %q", s.Name, "HTTP /v1/cache")
	}
	if v, _ := attrValue(s.Attributes, "http.request.method"); v.AsString() != "_OTHER" {
		t.Errorf("http.request.method = %q, want _OTHER", v.AsString())
	}
	if v, _ := attrValue(s.Attributes, "http.request.method_original"); v.AsString() != "PURGE" {
		t.Errorf("http.request.method_original = %q, want PURGE", v.AsString())
	}
}

func scrapeMetrics(t *testing.T, tel *Telemetry) string {
	t.Helper()
	srv := httptest.NewServer(tel.MetricsHandler())
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatalf("GET metrics: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading metrics: %v", err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("metrics status %d: %s", resp.StatusCode, body)
	}
	return string(body)
}

func grepLines(s, substr string) string {
	var out []string
	for line := range strings.Lines(s) {
		if strings.Contains(line, substr) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "")
}

func TestMiddlewareMetrics(t *testing.T) {
	tel, _ := newTestTelemetry(t)
	e := newTestEcho(tel, nil, false)
	serve(e, httptest.NewRequest(http.MethodGet, "/v1/load-balancers/a", nil))
	serve(e, httptest.NewRequest(http.MethodGet, "/v1/load-balancers/b", nil))
	serve(e, httptest.NewRequest(http.MethodGet, "/v1/boom", nil))

	body := scrapeMetrics(t, tel)
	for _, re := range []string{
		`# TYPE http_server_request_duration_seconds histogram`,
		`http_server_request_duration_seconds_count\{[^}]*http_request_method="GET"[^}]*http_response_status_code="200"[^}]*http_route="/v1/load-balancers/:id"[^}]*\} 2`,
		`http_server_request_duration_seconds_count\{[^}]*error_type="500"[^}]*http_response_status_code="500"[^}]*http_route="/v1/boom"[^}]*\} 1`,
		`http_server_active_requests\{[^}]*http_route="/v1/load-balancers/:id"[^}]*\} 0`,
		`go_goroutines`,
		`target_info\{[^}]*service_name="fulcrum-test"[^}]*service_version="v1.2.3"`,
	} {
		if !regexp.MustCompile(re).MatchString(body) {
			t.Errorf("metrics output does not match %s\n%s", re, grepLines(body, "http_server"))
		}
	}
}

// Probes, scrapes and agents' heartbeats are not traced, nor is anything
// under them (their SQL); a heartbeat that carries a sampled trace context is.
func TestMiddlewareSamplesAwayNoise(t *testing.T) {
	tel, exp := newTestTelemetry(t)
	e := echo.New()
	e.Use(tel.EchoMiddleware())
	ok := func(c echo.Context) error {
		_, child := tel.Tracer("sql").Start(c.Request().Context(), "SELECT")
		child.End()
		return c.NoContent(http.StatusOK)
	}
	e.GET("/healthz", ok)
	e.GET("/readyz", ok)
	e.GET("/metrics", ok)
	e.POST("/v1/nodes/:id/reports", ok)
	e.GET("/v1/nodes/:id/snapshot", ok)
	e.POST("/v1/load-balancers", ok)
	for _, r := range [][2]string{{"GET", "/healthz"}, {"GET", "/readyz"}, {"GET", "/metrics"},
		{"POST", "/v1/nodes/n1/reports"}, {"GET", "/v1/nodes/n1/snapshot?after=3"}} {
		rec := serve(e, httptest.NewRequest(r[0], r[1], nil))
		if rec.Code != http.StatusOK || rec.Header().Get(HeaderRequestID) == "" {
			t.Errorf("%s %s: %d, request id %q", r[0], r[1], rec.Code, rec.Header().Get(HeaderRequestID))
		}
	}
	if spans := endedSpans(t, tel, exp); len(spans) != 0 {
		t.Errorf("noise produced %d spans: %v", len(spans), spans[0].Name)
	}

	req := httptest.NewRequest("POST", "/v1/nodes/n1/reports", nil)
	req.Header.Set("Traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
	serve(e, req)
	serve(e, httptest.NewRequest("POST", "/v1/load-balancers", nil))
	spans := endedSpans(t, tel, exp)
	var names []string
	for _, s := range spans {
		names = append(names, s.Name)
	}
	if len(spans) != 4 {
		t.Errorf("a traced heartbeat and a write: spans %v, want 2 server spans and their 2 children", names)
	}
}

// A mutating request gets an audit line naming who changed what, with its
// trace and request ids; a denied read gets a warning; a read nothing.
func TestMiddlewareAuditLog(t *testing.T) {
	var buf strings.Builder
	logger := NewLogger(&buf, slog.LevelInfo)
	tel, err := Setup(context.Background(), "fulcrum-test", "v1", WithSpanExporter(tracetest.NewInMemoryExporter()), WithoutGlobals(), WithLogger(logger))
	if err != nil {
		t.Fatal(err)
	}
	defer tel.Shutdown(context.Background())
	e := echo.New()
	e.Use(tel.EchoMiddleware())
	e.PATCH("/v1/pools/:id", func(c echo.Context) error {
		NoteActor(c.Request().Context(), "ten_1", "tok_9", "tenant")
		NoteResource(c.Request().Context(), c.Param("id"), "lb_7")
		return c.NoContent(http.StatusOK)
	})
	e.GET("/v1/pools/:id", func(c echo.Context) error { return echo.NewHTTPError(http.StatusUnauthorized) })
	// An agent's heartbeats (reports, registration) are not audited.
	e.POST("/v1/nodes/:id/reports", func(c echo.Context) error { return c.NoContent(http.StatusNoContent) })
	e.PUT("/v1/nodes/:id", func(c echo.Context) error { return c.NoContent(http.StatusOK) })
	req := httptest.NewRequest(http.MethodPatch, "/v1/pools/pool_3", nil)
	req.Header.Set("Authorization", "Bearer tok_9.sekret")
	serve(e, req)
	serve(e, httptest.NewRequest(http.MethodPost, "/v1/nodes/n1/reports", nil))
	serve(e, httptest.NewRequest(http.MethodPut, "/v1/nodes/n1", nil))
	serve(e, httptest.NewRequest(http.MethodGet, "/v1/pools/pool_3", nil))

	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("log lines: %q, want an audit line and a denied line", lines)
	}
	var audit, denied map[string]any
	_ = json.Unmarshal([]byte(lines[0]), &audit)
	_ = json.Unmarshal([]byte(lines[1]), &denied)
	for k, v := range map[string]any{"msg": "audit", "method": "PATCH", "path": "/v1/pools/pool_3", "status": float64(200), "result": "ok",
		"tenant_id": "ten_1", "token_id": "tok_9", "resource_id": "pool_3", "load_balancer_id": "lb_7"} {
		if audit[k] != v {
			t.Errorf("audit %s = %v, want %v (%s)", k, audit[k], v, lines[0])
		}
	}
	if audit["trace_id"] == nil || audit["request_id"] == nil {
		t.Errorf("audit line without trace or request id: %s", lines[0])
	}
	if denied["msg"] != "request denied" || denied["result"] != "denied" {
		t.Errorf("denied line: %s", lines[1])
	}
	if strings.Contains(buf.String(), "sekret") {
		t.Errorf("a token secret was logged")
	}
}
