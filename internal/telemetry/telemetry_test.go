package telemetry

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

func TestTracesProtocol(t *testing.T) {
	for _, tc := range []struct {
		name    string
		env     map[string]string
		want    string
		wantErr bool
	}{
		{name: "nothing set", want: ""},
		{name: "exporter none", env: map[string]string{
			envTracesExporter: "none", envOTLPEndpoint: "http://collector:4318"}, want: ""},
		{name: "endpoint only", env: map[string]string{envOTLPEndpoint: "http://collector:4318"}, want: protocolHTTPProtobuf},
		{name: "traces endpoint only", env: map[string]string{envOTLPTracesEndpoint: "http://collector:4318/v1/traces"}, want: protocolHTTPProtobuf},
		{name: "exporter otlp without endpoint", env: map[string]string{envTracesExporter: "otlp"}, want: protocolHTTPProtobuf},
		{name: "generic grpc", env: map[string]string{envOTLPEndpoint: "http://c:4317", envOTLPProtocol: "grpc"}, want: protocolGRPC},
		{name: "traces protocol wins", env: map[string]string{
			envOTLPEndpoint: "http://c:4317", envOTLPProtocol: "http/protobuf", envOTLPTracesProtocol: "grpc"}, want: protocolGRPC},
		{name: "list with none", env: map[string]string{envTracesExporter: "otlp, none"}, want: ""},
		{name: "http/json unsupported", env: map[string]string{envOTLPEndpoint: "http://c", envOTLPProtocol: "http/json"}, wantErr: true},
		{name: "unknown exporter", env: map[string]string{envTracesExporter: "zipkin"}, wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tracesProtocol(func(k string) string { return tc.env[k] })
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Errorf("tracesProtocol = %q, %v; want %q, error %v", got, err, tc.want, tc.wantErr)
			}
		})
	}
}

func clearOTelEnv(t *testing.T) {
	for _, k := range []string{envTracesExporter, envOTLPEndpoint, envOTLPTracesEndpoint, envOTLPProtocol,
		envOTLPTracesProtocol, "OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES", "OTEL_TRACES_SAMPLER"} {
		t.Setenv(k, "")
	}
}

func TestSetupWithoutExporterStillCreatesSpans(t *testing.T) {
	clearOTelEnv(t)
	ctx := context.Background()
	tel, err := Setup(ctx, "fulcrum-api", "dev")
	if err != nil {
		t.Fatalf("Setup: %v", err)
	}
	_, span := tel.Tracer("test").Start(ctx, "op")
	sc := span.SpanContext()
	span.End()
	if !sc.TraceID().IsValid() || !sc.SpanID().IsValid() {
		t.Errorf("span context %v is not valid", sc)
	}
	// Globals are installed.
	if otel.GetTracerProvider() != tel.TracerProvider() {
		t.Errorf("global TracerProvider not set")
	}
	if fields := otel.GetTextMapPropagator().Fields(); !strings.Contains(strings.Join(fields, ","), "traceparent") ||
		!strings.Contains(strings.Join(fields, ","), "baggage") {
		t.Errorf("global propagator fields = %v", fields)
	}
	if err := tel.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	if err := tel.Shutdown(ctx); err != nil {
		t.Errorf("second Shutdown: %v", err)
	}
}

func TestSetupOTLPExporterFromEnv(t *testing.T) {
	for _, protocol := range []string{protocolHTTPProtobuf, protocolGRPC} {
		t.Run(protocol, func(t *testing.T) {
			clearOTelEnv(t)
			// Nothing listens here; creating the exporter must not connect
			// and Shutdown must not hang on the (empty) batch.
			t.Setenv(envOTLPEndpoint, "http://127.0.0.1:1")
			t.Setenv(envOTLPProtocol, protocol)
			ctx := context.Background()
			tel, err := Setup(ctx, "fulcrum-api", "dev", WithoutGlobals())
			if err != nil {
				t.Fatalf("Setup: %v", err)
			}
			if err := tel.Shutdown(ctx); err != nil {
				t.Errorf("Shutdown: %v", err)
			}
		})
	}
	t.Run("bad protocol", func(t *testing.T) {
		clearOTelEnv(t)
		t.Setenv(envOTLPEndpoint, "http://127.0.0.1:1")
		t.Setenv(envOTLPTracesProtocol, "http/json")
		if _, err := Setup(context.Background(), "fulcrum-api", "dev", WithoutGlobals()); err == nil {
			t.Errorf("Setup accepted http/json")
		}
	})
}

func TestResourceServiceNameFromEnv(t *testing.T) {
	clearOTelEnv(t)
	t.Setenv("OTEL_SERVICE_NAME", "fulcrum-override")
	exp := tracetest.NewInMemoryExporter()
	tel, err := Setup(context.Background(), "fulcrum-api", "v9", WithSpanExporter(exp), WithoutGlobals())
	if err != nil {
		t.Fatalf("Setup: %v", err)
	}
	defer tel.Shutdown(context.Background())
	_, span := tel.Tracer("test").Start(context.Background(), "op")
	span.End()
	spans := endedSpans(t, tel, exp)
	if len(spans) != 1 {
		t.Fatalf("got %d spans", len(spans))
	}
	res := spans[0].Resource
	if v, _ := res.Set().Value("service.name"); v.AsString() != "fulcrum-override" {
		t.Errorf("service.name = %q, want OTEL_SERVICE_NAME", v.AsString())
	}
	if v, _ := res.Set().Value(attribute.Key("service.version")); v.AsString() != "v9" {
		t.Errorf("service.version = %q, want v9", v.AsString())
	}
}

func TestMetricsUseOwnRegistry(t *testing.T) {
	tel, _ := newTestTelemetry(t)
	counter, err := tel.Meter("test").Int64Counter("fulcrum.test.widgets")
	if err != nil {
		t.Fatal(err)
	}
	counter.Add(context.Background(), 3)

	rec := httptest.NewRecorder()
	tel.MetricsHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if !strings.Contains(rec.Body.String(), "fulcrum_test_widgets_total") {
		t.Errorf("metrics output lacks fulcrum_test_widgets_total:\n%s", rec.Body.String())
	}

	families, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if strings.HasPrefix(f.GetName(), "fulcrum_test_widgets") {
			t.Errorf("metric %s leaked into the default registry", f.GetName())
		}
	}
}
