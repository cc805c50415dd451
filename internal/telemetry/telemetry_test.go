package telemetry

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
)

func TestTracesEnabled(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  map[string]string
		want bool
	}{
		{name: "nothing set", want: false},
		{name: "exporter none", env: map[string]string{
			envTracesExporter: "none", envOTLPEndpoint: "http://collector:4318"}, want: false},
		{name: "endpoint only", env: map[string]string{envOTLPEndpoint: "http://collector:4318"}, want: true},
		{name: "traces endpoint only", env: map[string]string{envOTLPTracesEndpoint: "http://collector:4318/v1/traces"}, want: true},
		{name: "exporter otlp without endpoint", env: map[string]string{envTracesExporter: "otlp"}, want: true},
		{name: "console", env: map[string]string{envTracesExporter: "console"}, want: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tracesEnabled(func(k string) string { return tc.env[k] }); got != tc.want {
				t.Errorf("tracesEnabled = %v, want %v", got, tc.want)
			}
		})
	}
}

func clearOTelEnv(t *testing.T) {
	for _, k := range []string{envTracesExporter, envMetricsExporter, envLogsExporter, envOTLPEndpoint, envOTLPTracesEndpoint, envOTLPProtocol,
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
	for _, protocol := range []string{"http/protobuf", "grpc"} {
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

// The exporters autoexport knows start: console traces (which once stopped
// the API from starting), OTLP and console metrics and logs.
func TestSetupAutoexportExporters(t *testing.T) {
	for name, env := range map[string]map[string]string{
		"console traces":  {envTracesExporter: "console"},
		"otlp metrics":    {envMetricsExporter: "otlp", envOTLPEndpoint: "http://127.0.0.1:1"},
		"console metrics": {envMetricsExporter: "console"},
		"otlp logs":       {envLogsExporter: "otlp", envOTLPEndpoint: "http://127.0.0.1:1"},
		"console logs":    {envLogsExporter: "console"},
		"all none":        {envTracesExporter: "none", envMetricsExporter: "none", envLogsExporter: "none"},
	} {
		t.Run(name, func(t *testing.T) {
			clearOTelEnv(t)
			for k, v := range env {
				t.Setenv(k, v)
			}
			tel, err := Setup(context.Background(), "fulcrum-api", "dev", WithoutGlobals())
			if err != nil {
				t.Fatalf("Setup: %v", err)
			}
			if (env[envLogsExporter] != "" && env[envLogsExporter] != "none") != (tel.LogHandler() != nil) {
				t.Errorf("LogHandler() = %v with %s=%q", tel.LogHandler(), envLogsExporter, env[envLogsExporter])
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = tel.Shutdown(ctx) // the OTLP exporters cannot reach 127.0.0.1:1
		})
	}
	t.Run("unknown", func(t *testing.T) {
		clearOTelEnv(t)
		t.Setenv(envTracesExporter, "zipkin")
		if _, err := Setup(context.Background(), "fulcrum-api", "dev", WithoutGlobals()); err == nil {
			t.Errorf("Setup accepted OTEL_TRACES_EXPORTER=zipkin")
		}
	})
}

// An exporter's errors reach the slog logger as structured records.
func TestExporterErrorsGoThroughSlog(t *testing.T) {
	clearOTelEnv(t)
	t.Setenv(envTracesExporter, "otlp")
	t.Setenv(envOTLPEndpoint, "http://127.0.0.1:1")
	t.Setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "200")
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
	var buf syncBuffer
	logger := slog.New(slog.NewJSONHandler(&buf, nil))
	tel, err := Setup(context.Background(), "fulcrum-api", "dev", WithLogger(logger))
	if err != nil {
		t.Fatalf("Setup: %v", err)
	}
	t.Cleanup(func() {
		otel.SetErrorHandler(otel.ErrorHandlerFunc(func(error) {}))
		otel.SetTracerProvider(tracenoop.NewTracerProvider())
	})
	defer tel.Shutdown(context.Background()) //nolint:errcheck
	_, span := tel.Tracer("test").Start(context.Background(), "op")
	span.End()
	// The batch processor exports in the background and hands the failure
	// to the global error handler.
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		var rec map[string]any
		for line := range strings.SplitSeq(strings.TrimSpace(buf.String()), "\n") {
			if err := json.Unmarshal([]byte(line), &rec); err == nil && rec["msg"] == "opentelemetry" && rec["err"] != nil {
				return
			}
		}
	}
	t.Errorf("no structured opentelemetry error record in the log: %q", buf.String())
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
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
