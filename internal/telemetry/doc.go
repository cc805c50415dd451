// Package telemetry wires OpenTelemetry tracing and metrics, structured
// logging and HTTP request instrumentation for Fulcrum services.
//
// [Setup] builds a [Telemetry] holding a TracerProvider and a MeterProvider.
// The providers are returned to the caller (and, unless [WithoutGlobals] is
// given, also installed as the otel globals together with a W3C TraceContext +
// Baggage propagator, because libraries such as otelpgx read the globals).
//
// Traces are exported according to the standard OpenTelemetry environment
// variables:
//
//   - OTEL_TRACES_EXPORTER=none, or no OTEL_TRACES_EXPORTER and neither
//     OTEL_EXPORTER_OTLP_ENDPOINT nor OTEL_EXPORTER_OTLP_TRACES_ENDPOINT set:
//     spans are created (with real trace and span IDs, so request correlation
//     and traceparent headers work) but nothing is exported.
//   - Otherwise spans are exported over OTLP through a batch span processor.
//     OTEL_EXPORTER_OTLP_TRACES_PROTOCOL / OTEL_EXPORTER_OTLP_PROTOCOL select
//     "http/protobuf" (default) or "grpc"; every other OTEL_EXPORTER_OTLP_*
//     variable is read by the exporters themselves, OTEL_TRACES_SAMPLER* by
//     the SDK and OTEL_BSP_* by the batch processor.
//
// The resource carries service.name and service.version from the Setup
// arguments, overridden by OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES.
//
// Metrics are exposed in Prometheus format: the MeterProvider's reader is the
// OTel Prometheus exporter registered on a private prometheus.Registry (never
// the process-wide default registry), served by [Telemetry.MetricsHandler].
//
// [Telemetry.EchoMiddleware] instruments an echo server: a server span per
// request named "<METHOD> <route>", X-Request-Id handling (see
// [RequestIDFrom]), a Traceparent response header and the
// http.server.request.duration / http.server.active_requests metrics.
//
// [NewLogger] returns a JSON slog.Logger that adds trace_id, span_id and
// request_id to records logged with a context (logger.InfoContext(ctx, ...)).
//
// Imports: nothing of Fulcrum's (internal/importrules enforces it).
package telemetry
