package provider

import (
	"context"
	"log/slog"
	"os"
	"strings"

	"github.com/hashicorp/terraform-plugin-framework/providerserver"
	"github.com/hashicorp/terraform-plugin-go/tfprotov6"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/fulcrumlb/fulcrum/internal/telemetry"
)

// ServiceName is the provider's service.name in traces.
const ServiceName = "terraform-provider-fulcrum"

// scopeName is the instrumentation scope of the provider's operation spans.
const scopeName = "github.com/fulcrumlb/fulcrum/provider"

// SetupTelemetry configures tracing for the provider plugin from the standard
// OTEL_* variables (see internal/telemetry: nothing is exported unless
// OTEL_TRACES_EXPORTER or OTEL_EXPORTER_OTLP_ENDPOINT says so) and installs
// the tracer provider and the W3C propagator as the otel globals, so the API
// client's requests carry a traceparent. Call shutdown before exiting: it
// flushes the spans. Exporter errors go to logger (the plugin's stderr, which
// terraform shows in its log).
func SetupTelemetry(ctx context.Context, version string, logger *slog.Logger) (tp trace.TracerProvider, shutdown func(context.Context) error, err error) {
	tel, err := telemetry.Setup(ctx, ServiceName, version, telemetry.WithLogger(logger))
	if err != nil {
		return nil, nil, err
	}
	return tel.TracerProvider(), tel.Shutdown, nil
}

// NewServer returns the provider's protocol 6 server with a span around each
// resource and data source operation (create, read, update, delete, import),
// made with tp (nil: no spans). The API client's requests and the waits for
// objects to turn active are children of those spans, so one trace holds
// provider → API → SQL.
//
// An operation whose context carries no span is parented on the trace
// context terraform passes in the TRACEPARENT environment variable (when it
// does), so the provider's spans join terraform's own trace.
func NewServer(version string, tp trace.TracerProvider) func() (tfprotov6.ProviderServer, error) {
	if tp == nil {
		tp = tracenoop.NewTracerProvider()
	}
	return func() (tfprotov6.ProviderServer, error) {
		inner, err := providerserver.NewProtocol6WithError(New(version)())()
		if err != nil {
			return nil, err
		}
		return &tracedServer{ProviderServer: inner, tracer: tp.Tracer(scopeName)}, nil
	}
}

// tracedServer wraps the framework's server with operation spans.
type tracedServer struct {
	tfprotov6.ProviderServer
	tracer trace.Tracer
}

// parent adds the TRACEPARENT of the environment to ctx when ctx has no span.
func parent(ctx context.Context) context.Context {
	if trace.SpanContextFromContext(ctx).IsValid() {
		return ctx
	}
	tp := strings.TrimSpace(os.Getenv("TRACEPARENT"))
	if tp == "" {
		return ctx
	}
	carrier := propagation.MapCarrier{"traceparent": tp}
	if ts := os.Getenv("TRACESTATE"); ts != "" {
		carrier["tracestate"] = ts
	}
	return propagation.TraceContext{}.Extract(ctx, carrier)
}

func (s *tracedServer) start(ctx context.Context, typeName, op string) (context.Context, trace.Span) {
	return s.tracer.Start(parent(ctx), typeName+" "+op, trace.WithSpanKind(trace.SpanKindInternal),
		trace.WithAttributes(attribute.String("terraform.resource_type", typeName), attribute.String("terraform.operation", op)))
}

// end records the operation's error diagnostics on span and ends it.
func end(span trace.Span, err error, diags []*tfprotov6.Diagnostic) {
	defer span.End()
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
		return
	}
	for _, d := range diags {
		if d == nil || d.Severity != tfprotov6.DiagnosticSeverityError {
			continue
		}
		// Summaries and details name attributes and API messages, never
		// the token (the provider never puts it in a diagnostic).
		span.AddEvent("diagnostic", trace.WithAttributes(attribute.String("terraform.diagnostic.summary", d.Summary),
			attribute.String("terraform.diagnostic.detail", d.Detail)))
		span.SetStatus(codes.Error, d.Summary)
	}
}

// isNull reports whether a state value is absent or null (msgpack nil).
func isNull(v *tfprotov6.DynamicValue) bool {
	if v == nil {
		return true
	}
	if len(v.MsgPack) > 0 {
		return len(v.MsgPack) == 1 && v.MsgPack[0] == 0xc0
	}
	return len(v.JSON) == 0 || string(v.JSON) == "null"
}

func (s *tracedServer) ApplyResourceChange(ctx context.Context, req *tfprotov6.ApplyResourceChangeRequest) (*tfprotov6.ApplyResourceChangeResponse, error) {
	op := "update"
	switch {
	case isNull(req.PriorState):
		op = "create"
	case isNull(req.PlannedState):
		op = "delete"
	}
	ctx, span := s.start(ctx, req.TypeName, op)
	resp, err := s.ProviderServer.ApplyResourceChange(ctx, req)
	var diags []*tfprotov6.Diagnostic
	if resp != nil {
		diags = resp.Diagnostics
	}
	end(span, err, diags)
	return resp, err
}

func (s *tracedServer) ReadResource(ctx context.Context, req *tfprotov6.ReadResourceRequest) (*tfprotov6.ReadResourceResponse, error) {
	ctx, span := s.start(ctx, req.TypeName, "read")
	resp, err := s.ProviderServer.ReadResource(ctx, req)
	var diags []*tfprotov6.Diagnostic
	if resp != nil {
		diags = resp.Diagnostics
	}
	end(span, err, diags)
	return resp, err
}

func (s *tracedServer) ImportResourceState(ctx context.Context, req *tfprotov6.ImportResourceStateRequest) (*tfprotov6.ImportResourceStateResponse, error) {
	ctx, span := s.start(ctx, req.TypeName, "import")
	resp, err := s.ProviderServer.ImportResourceState(ctx, req)
	var diags []*tfprotov6.Diagnostic
	if resp != nil {
		diags = resp.Diagnostics
	}
	end(span, err, diags)
	return resp, err
}

func (s *tracedServer) ReadDataSource(ctx context.Context, req *tfprotov6.ReadDataSourceRequest) (*tfprotov6.ReadDataSourceResponse, error) {
	ctx, span := s.start(ctx, req.TypeName, "read")
	resp, err := s.ProviderServer.ReadDataSource(ctx, req)
	var diags []*tfprotov6.Diagnostic
	if resp != nil {
		diags = resp.Diagnostics
	}
	end(span, err, diags)
	return resp, err
}
