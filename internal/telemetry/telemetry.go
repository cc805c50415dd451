package telemetry

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// scopeName is the instrumentation scope used by this package's own
// instruments (the echo middleware).
const scopeName = "github.com/fulcrumlb/fulcrum/internal/telemetry"

// Standard OpenTelemetry environment variables consulted by Setup.
const (
	envTracesExporter      = "OTEL_TRACES_EXPORTER"
	envOTLPEndpoint        = "OTEL_EXPORTER_OTLP_ENDPOINT"
	envOTLPTracesEndpoint  = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
	envOTLPProtocol        = "OTEL_EXPORTER_OTLP_PROTOCOL"
	envOTLPTracesProtocol  = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
	protocolHTTPProtobuf   = "http/protobuf"
	protocolGRPC           = "grpc"
	tracesExporterNone     = "none"
	tracesExporterOTLP     = "otlp"
	defaultTracesProtocol  = protocolHTTPProtobuf
	traceparentHeader      = "Traceparent"
	traceparentCarrierKey  = "traceparent"
	requestIDMaxLen        = 128
	requestIDGeneratedSize = 16 // random bytes, hex encoded
)

// Telemetry owns the tracer and meter providers created by Setup.
type Telemetry struct {
	tp         *sdktrace.TracerProvider
	mp         *sdkmetric.MeterProvider
	propagator propagation.TextMapPropagator
	metrics    http.Handler

	shutdownOnce sync.Once
	shutdownErr  error
}

// Option customises Setup.
type Option func(*config)

type config struct {
	spanExporter sdktrace.SpanExporter
	noGlobals    bool
}

// WithSpanExporter makes Setup export spans to exp (through a batch span
// processor) instead of choosing an exporter from the environment. Intended
// for tests, e.g. with tracetest.NewInMemoryExporter. A nil exporter is
// ignored.
func WithSpanExporter(exp sdktrace.SpanExporter) Option {
	return func(c *config) { c.spanExporter = exp }
}

// WithoutGlobals stops Setup from installing its providers and propagator as
// the otel globals.
func WithoutGlobals() Option {
	return func(c *config) { c.noGlobals = true }
}

// Setup creates the tracer and meter providers for service at version (see
// the package documentation for the environment variables honoured) and,
// unless WithoutGlobals is given, installs them and a W3C TraceContext +
// Baggage propagator as the otel globals. Call Shutdown on exit to flush.
func Setup(ctx context.Context, service, version string, opts ...Option) (*Telemetry, error) {
	var cfg config
	for _, o := range opts {
		if o != nil {
			o(&cfg)
		}
	}

	res, err := newResource(ctx, service, version)
	if err != nil {
		return nil, err
	}

	exp := cfg.spanExporter
	if exp == nil {
		exp, err = spanExporterFromEnv(ctx)
		if err != nil {
			return nil, err
		}
	}
	tpOpts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res)}
	if exp != nil {
		tpOpts = append(tpOpts, sdktrace.WithBatcher(exp))
	}
	tp := sdktrace.NewTracerProvider(tpOpts...)

	mp, metricsHandler, err := newMeterProvider(res)
	if err != nil {
		return nil, errors.Join(err, tp.Shutdown(ctx))
	}

	t := &Telemetry{
		tp: tp,
		mp: mp,
		propagator: propagation.NewCompositeTextMapPropagator(
			propagation.TraceContext{}, propagation.Baggage{},
		),
		metrics: metricsHandler,
	}
	if !cfg.noGlobals {
		otel.SetTracerProvider(tp)
		otel.SetMeterProvider(mp)
		otel.SetTextMapPropagator(t.propagator)
	}
	return t, nil
}

func newResource(ctx context.Context, service, version string) (*resource.Resource, error) {
	var attrs []resource.Option
	if service != "" {
		attrs = append(attrs, resource.WithAttributes(semconv.ServiceName(service)))
	}
	if version != "" {
		attrs = append(attrs, resource.WithAttributes(semconv.ServiceVersion(version)))
	}
	// Later detectors win: OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME
	// (WithFromEnv) override the arguments.
	opts := append([]resource.Option{
		resource.WithSchemaURL(semconv.SchemaURL),
		resource.WithTelemetrySDK(),
		resource.WithHost(),
	}, attrs...)
	opts = append(opts, resource.WithFromEnv())
	res, err := resource.New(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("telemetry: building resource: %w", err)
	}
	return res, nil
}

// tracesProtocol decides, from the environment read through getenv, which
// OTLP protocol to export traces with; "" means no exporter.
func tracesProtocol(getenv func(string) string) (string, error) {
	selected := strings.TrimSpace(getenv(envTracesExporter))
	if selected == "" {
		if strings.TrimSpace(getenv(envOTLPEndpoint)) == "" &&
			strings.TrimSpace(getenv(envOTLPTracesEndpoint)) == "" {
			return "", nil
		}
		selected = tracesExporterOTLP
	}
	otlp := false
	for name := range strings.SplitSeq(selected, ",") {
		switch strings.ToLower(strings.TrimSpace(name)) {
		case tracesExporterNone:
			return "", nil
		case tracesExporterOTLP:
			otlp = true
		case "":
		default:
			return "", fmt.Errorf("telemetry: unsupported %s value %q (supported: otlp, none)", envTracesExporter, name)
		}
	}
	if !otlp {
		return "", nil
	}

	protocol := strings.TrimSpace(getenv(envOTLPTracesProtocol))
	if protocol == "" {
		protocol = strings.TrimSpace(getenv(envOTLPProtocol))
	}
	switch protocol {
	case "":
		return defaultTracesProtocol, nil
	case protocolHTTPProtobuf, protocolGRPC:
		return protocol, nil
	default:
		return "", fmt.Errorf("telemetry: unsupported OTLP traces protocol %q (supported: %s, %s)", protocol, protocolHTTPProtobuf, protocolGRPC)
	}
}

// spanExporterFromEnv returns the exporter selected by the environment, or
// nil when traces should not be exported. The OTLP exporters read endpoint,
// headers, TLS, timeout and compression settings from the environment
// themselves; creating them does not connect.
func spanExporterFromEnv(ctx context.Context) (sdktrace.SpanExporter, error) {
	protocol, err := tracesProtocol(os.Getenv)
	if err != nil {
		return nil, err
	}
	var exp sdktrace.SpanExporter
	switch protocol {
	case "":
		return nil, nil
	case protocolGRPC:
		exp, err = otlptracegrpc.New(ctx)
	default:
		exp, err = otlptracehttp.New(ctx)
	}
	if err != nil {
		return nil, fmt.Errorf("telemetry: creating OTLP %s trace exporter: %w", protocol, err)
	}
	return exp, nil
}

func newMeterProvider(res *resource.Resource) (*sdkmetric.MeterProvider, http.Handler, error) {
	reg := prometheus.NewRegistry()
	if err := reg.Register(collectors.NewGoCollector()); err != nil {
		return nil, nil, fmt.Errorf("telemetry: registering go collector: %w", err)
	}
	if err := reg.Register(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})); err != nil {
		return nil, nil, fmt.Errorf("telemetry: registering process collector: %w", err)
	}
	exp, err := otelprom.New(otelprom.WithRegisterer(reg))
	if err != nil {
		return nil, nil, fmt.Errorf("telemetry: creating prometheus exporter: %w", err)
	}
	mp := sdkmetric.NewMeterProvider(
		sdkmetric.WithResource(res),
		sdkmetric.WithReader(exp),
	)
	h := promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		Registry:          reg, // promhttp_metric_handler_errors_total
		ErrorHandling:     promhttp.ContinueOnError,
		EnableOpenMetrics: true, // exemplars carry trace ids
	})
	return mp, h, nil
}

// Tracer returns a tracer from the Telemetry's TracerProvider.
func (t *Telemetry) Tracer(name string, opts ...trace.TracerOption) trace.Tracer {
	return t.tp.Tracer(name, opts...)
}

// Meter returns a meter from the Telemetry's MeterProvider.
func (t *Telemetry) Meter(name string, opts ...metric.MeterOption) metric.Meter {
	return t.mp.Meter(name, opts...)
}

// TracerProvider returns the SDK tracer provider built by Setup.
func (t *Telemetry) TracerProvider() *sdktrace.TracerProvider { return t.tp }

// MeterProvider returns the SDK meter provider built by Setup.
func (t *Telemetry) MeterProvider() *sdkmetric.MeterProvider { return t.mp }

// Propagator returns the W3C TraceContext + Baggage propagator used by the
// middleware (and installed globally unless WithoutGlobals was given).
func (t *Telemetry) Propagator() propagation.TextMapPropagator { return t.propagator }

// MetricsHandler serves the metrics of the MeterProvider (plus Go runtime and
// process collectors) in Prometheus/OpenMetrics exposition format.
func (t *Telemetry) MetricsHandler() http.Handler { return t.metrics }

// Shutdown flushes pending spans and stops both providers. It is safe to call
// more than once; later calls return the first call's result.
func (t *Telemetry) Shutdown(ctx context.Context) error {
	t.shutdownOnce.Do(func() {
		t.shutdownErr = errors.Join(t.tp.Shutdown(ctx), t.mp.Shutdown(ctx))
	})
	return t.shutdownErr
}
