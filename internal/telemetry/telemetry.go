package telemetry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/contrib/bridges/otelslog"
	"go.opentelemetry.io/contrib/exporters/autoexport"
	"go.opentelemetry.io/otel"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	otellog "go.opentelemetry.io/otel/log"
	"go.opentelemetry.io/otel/log/global"
	lognoop "go.opentelemetry.io/otel/log/noop"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	sdklog "go.opentelemetry.io/otel/sdk/log"
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
	envMetricsExporter     = "OTEL_METRICS_EXPORTER"
	envLogsExporter        = "OTEL_LOGS_EXPORTER"
	envOTLPEndpoint        = "OTEL_EXPORTER_OTLP_ENDPOINT"
	envOTLPTracesEndpoint  = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
	envOTLPProtocol        = "OTEL_EXPORTER_OTLP_PROTOCOL"
	envOTLPTracesProtocol  = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
	tracesExporterNone     = "none"
	traceparentHeader      = "Traceparent"
	traceparentCarrierKey  = "traceparent"
	requestIDMaxLen        = 128
	requestIDGeneratedSize = 16 // random bytes, hex encoded
)

// Telemetry owns the tracer and meter providers created by Setup.
type Telemetry struct {
	tp         *sdktrace.TracerProvider
	mp         *sdkmetric.MeterProvider
	lp         *sdklog.LoggerProvider // nil unless OTEL_LOGS_EXPORTER names one
	logger     *slog.Logger           // WithLogger's: OTel errors, audit lines
	service    string
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
	logger       *slog.Logger
}

// WithLogger sends OpenTelemetry's own errors (an exporter that cannot reach
// its collector, a dropped batch) to logger as structured records instead of
// the SDK's plain-text default (unless WithoutGlobals is given, this is
// installed as the otel global error handler), and makes EchoMiddleware log
// an audit line for every mutating request and a line for every denied one.
func WithLogger(logger *slog.Logger) Option {
	return func(c *config) { c.logger = logger }
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

	if cfg.logger != nil && !cfg.noGlobals {
		logger := cfg.logger
		otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
			logger.Error("opentelemetry", "err", err)
		}))
		otel.SetLogger(logr.FromSlogHandler(logger.Handler()))
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

	reader, err := metricReaderFromEnv(ctx)
	if err != nil {
		return nil, errors.Join(err, tp.Shutdown(ctx))
	}
	mp, metricsHandler, err := newMeterProvider(res, reader)
	if err != nil {
		return nil, errors.Join(err, tp.Shutdown(ctx))
	}
	logExp, err := logExporterFromEnv(ctx)
	if err != nil {
		return nil, errors.Join(err, tp.Shutdown(ctx), mp.Shutdown(ctx))
	}
	var lp *sdklog.LoggerProvider
	if logExp != nil {
		lp = sdklog.NewLoggerProvider(sdklog.WithResource(res), sdklog.WithProcessor(sdklog.NewBatchProcessor(logExp)))
	}

	t := &Telemetry{
		tp:      tp,
		mp:      mp,
		lp:      lp,
		logger:  cfg.logger,
		service: service,
		propagator: propagation.NewCompositeTextMapPropagator(
			propagation.TraceContext{}, propagation.Baggage{},
		),
		metrics: metricsHandler,
	}
	if !cfg.noGlobals {
		otel.SetTracerProvider(tp)
		otel.SetMeterProvider(mp)
		otel.SetTextMapPropagator(t.propagator)
		if lp != nil {
			global.SetLoggerProvider(lp)
		}
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

// tracesEnabled reports, from the environment read through getenv, whether
// spans are exported: OTEL_TRACES_EXPORTER names an exporter other than
// "none", or it is unset and an OTLP endpoint is configured.
func tracesEnabled(getenv func(string) string) bool {
	selected := strings.TrimSpace(getenv(envTracesExporter))
	if selected == "" {
		return strings.TrimSpace(getenv(envOTLPEndpoint)) != "" ||
			strings.TrimSpace(getenv(envOTLPTracesEndpoint)) != ""
	}
	return selected != tracesExporterNone
}

// spanExporterFromEnv returns the exporter selected by the environment
// through autoexport (otlp over http/protobuf or grpc, console, none), or nil
// when traces should not be exported. The OTLP exporters read endpoint,
// headers, TLS, timeout and compression settings from the environment
// themselves; creating them does not connect.
func spanExporterFromEnv(ctx context.Context) (sdktrace.SpanExporter, error) {
	if !tracesEnabled(os.Getenv) {
		return nil, nil
	}
	exp, err := autoexport.NewSpanExporter(ctx)
	if err != nil {
		return nil, fmt.Errorf("telemetry: %s: %w", envTracesExporter, err)
	}
	if autoexport.IsNoneSpanExporter(exp) {
		return nil, nil
	}
	return exp, nil
}

// metricReaderFromEnv returns the push (or extra pull) metric reader named by
// OTEL_METRICS_EXPORTER (otlp, console, prometheus), or nil when it is unset
// or "none": the Prometheus handler of MetricsHandler always works.
func metricReaderFromEnv(ctx context.Context) (sdkmetric.Reader, error) {
	if v := strings.TrimSpace(os.Getenv(envMetricsExporter)); v == "" || v == tracesExporterNone {
		return nil, nil
	}
	r, err := autoexport.NewMetricReader(ctx)
	if err != nil {
		return nil, fmt.Errorf("telemetry: %s: %w", envMetricsExporter, err)
	}
	if autoexport.IsNoneMetricReader(r) {
		return nil, nil
	}
	return r, nil
}

// logExporterFromEnv returns the log exporter named by OTEL_LOGS_EXPORTER
// (otlp, console), or nil when it is unset or "none".
func logExporterFromEnv(ctx context.Context) (sdklog.Exporter, error) {
	if v := strings.TrimSpace(os.Getenv(envLogsExporter)); v == "" || v == tracesExporterNone {
		return nil, nil
	}
	exp, err := autoexport.NewLogExporter(ctx)
	if err != nil {
		return nil, fmt.Errorf("telemetry: %s: %w", envLogsExporter, err)
	}
	if autoexport.IsNoneLogExporter(exp) {
		return nil, nil
	}
	return exp, nil
}

func newMeterProvider(res *resource.Resource, extra sdkmetric.Reader) (*sdkmetric.MeterProvider, http.Handler, error) {
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
	opts := []sdkmetric.Option{sdkmetric.WithResource(res), sdkmetric.WithReader(exp)}
	if extra != nil {
		opts = append(opts, sdkmetric.WithReader(extra))
	}
	mp := sdkmetric.NewMeterProvider(opts...)
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

// LoggerProvider returns the OTel logger provider of the exporter named by
// OTEL_LOGS_EXPORTER, or a no-op one when there is none (the agent's access
// log records go there).
func (t *Telemetry) LoggerProvider() otellog.LoggerProvider {
	if t.lp == nil {
		return lognoop.NewLoggerProvider()
	}
	return t.lp
}

// LogHandler returns a slog handler that sends records to the OTel logs
// exporter named by OTEL_LOGS_EXPORTER, or nil when there is none. Combine it
// with the JSON handler through Telemetry.Logger.
func (t *Telemetry) LogHandler() slog.Handler {
	if t.lp == nil {
		return nil
	}
	return otelslog.NewHandler(t.service, otelslog.WithLoggerProvider(t.lp))
}

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
		var lerr error
		if t.lp != nil {
			lerr = t.lp.Shutdown(ctx)
		}
		t.shutdownErr = errors.Join(t.tp.Shutdown(ctx), t.mp.Shutdown(ctx), lerr)
	})
	return t.shutdownErr
}
