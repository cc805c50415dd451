package telemetry

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/semconv/v1.43.0/httpconv"
	"go.opentelemetry.io/otel/trace"
)

// HeaderRequestID is the request/response header carrying the request id.
const HeaderRequestID = echo.HeaderXRequestID // "X-Request-Id"

type requestIDKey struct{}

// ContextWithRequestID returns a copy of ctx carrying the request id id.
func ContextWithRequestID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, requestIDKey{}, id)
}

// RequestIDFrom returns the request id stored in ctx by EchoMiddleware (or
// ContextWithRequestID), or "" if there is none.
func RequestIDFrom(ctx context.Context) string {
	if ctx == nil {
		return ""
	}
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}

// validRequestID reports whether id is a sane client-supplied request id:
// 1 to 128 characters of [A-Za-z0-9._-].
func validRequestID(id string) bool {
	if id == "" || len(id) > requestIDMaxLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		switch c := id[i]; {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9',
			c == '.', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}

// newRequestID returns 32 random hex characters.
func newRequestID() string {
	var b [requestIDGeneratedSize]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never returns an error
	return hex.EncodeToString(b[:])
}

// EchoMiddleware returns echo middleware that, for every request:
//
//   - extracts the incoming W3C trace context and baggage and starts a server
//     span named "<METHOD> <route>" (echo's route template, e.g.
//     "GET /v1/load-balancers/:id") with HTTP semantic-convention attributes;
//     5xx responses mark the span as an error;
//   - reuses the incoming X-Request-Id when it is 1-128 characters of
//     [A-Za-z0-9._-], else generates one, sets it on the response and stores
//     it in the request context (RequestIDFrom);
//   - sets the Traceparent response header to the server span's context;
//   - records http.server.request.duration and http.server.active_requests;
//   - replaces the request's context with one carrying the span, the request
//     id and baggage, so handlers and database calls join the trace.
//
// Register it first (outermost) with e.Use, before middleware.Recover.
// Errors returned by the handler chain are passed to c.Error so the status
// code chosen by the HTTPErrorHandler is recorded, and are then returned as
// echo's own middleware does (echo's default error handler ignores an error
// whose response is already committed; a custom one should do the same).
func (t *Telemetry) EchoMiddleware() echo.MiddlewareFunc {
	tracer := t.tp.Tracer(scopeName)
	meter := t.mp.Meter(scopeName)
	duration, err := httpconv.NewServerRequestDuration(meter)
	if err != nil {
		otel.Handle(err)
	}
	active, err := httpconv.NewServerActiveRequests(meter)
	if err != nil {
		otel.Handle(err)
	}
	m := &httpMetrics{duration: duration.Inst(), active: active.Inst()}

	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) (err error) {
			start := time.Now()
			req := c.Request()
			ctx := t.propagator.Extract(req.Context(), propagation.HeaderCarrier(req.Header))

			method, methodOriginal := normalizeMethod(req.Method)
			scheme := "http"
			if c.Scheme() == "https" {
				scheme = "https"
			}
			// With e.Use the router has already run and c.Path() is the route
			// template; with e.Pre it is only known after next returns.
			startRoute := c.Path()

			attrs := make([]attribute.KeyValue, 0, 12)
			attrs = append(attrs,
				semconv.HTTPRequestMethodKey.String(method),
				semconv.URLScheme(scheme),
				semconv.URLPath(req.URL.Path),
				semconv.ClientAddress(c.RealIP()),
			)
			if methodOriginal != "" {
				attrs = append(attrs, semconv.HTTPRequestMethodOriginal(methodOriginal))
			}
			if startRoute != "" {
				attrs = append(attrs, semconv.HTTPRoute(startRoute))
			}
			if host, port := splitHostPort(req.Host); host != "" {
				attrs = append(attrs, semconv.ServerAddress(host))
				if port > 0 {
					attrs = append(attrs, semconv.ServerPort(port))
				}
			}
			if peer, port := splitHostPort(req.RemoteAddr); peer != "" {
				attrs = append(attrs, semconv.NetworkPeerAddress(peer))
				if port > 0 {
					attrs = append(attrs, semconv.NetworkPeerPort(port))
				}
			}
			if ua := req.UserAgent(); ua != "" {
				attrs = append(attrs, semconv.UserAgentOriginal(ua))
			}
			if req.ProtoMajor > 0 {
				attrs = append(attrs, semconv.NetworkProtocolVersion(protocolVersion(req)))
			}

			if untraced(req.URL.Path, startRoute, ctx) {
				// An unsampled parent: the (parent-based) sampler drops this
				// span and everything under it, SQL included.
				ctx = trace.ContextWithRemoteSpanContext(ctx, unsampledSpanContext())
			}
			ctx, span := tracer.Start(ctx, spanName(method, startRoute),
				trace.WithSpanKind(trace.SpanKindServer),
				trace.WithAttributes(attrs...),
			)

			requestID := req.Header.Get(HeaderRequestID)
			if !validRequestID(requestID) {
				requestID = newRequestID()
			}
			ctx = ContextWithRequestID(ctx, requestID)
			ctx, note := withAuditNote(ctx)
			span.SetAttributes(attribute.StringSlice("http.response.header.x-request-id", []string{requestID}))

			// Set before next so they are in place whenever the response
			// is committed (by the handler or the error handler).
			h := c.Response().Header()
			h.Set(HeaderRequestID, requestID)
			if tp := traceparent(span.SpanContext()); tp != "" {
				h.Set(traceparentHeader, tp)
			}
			c.SetRequest(req.WithContext(ctx))

			activeAttrs := []attribute.KeyValue{
				semconv.HTTPRequestMethodKey.String(method),
				semconv.URLScheme(scheme),
			}
			if startRoute != "" {
				activeAttrs = append(activeAttrs, semconv.HTTPRoute(startRoute))
			}
			activeOpt := metric.WithAttributeSet(attribute.NewSet(activeAttrs...))
			m.active.Add(ctx, 1, activeOpt)

			done := false
			defer func() {
				if done {
					return
				}
				// The handler chain panicked (no Recover middleware inside)
				// or called runtime.Goexit (rec == nil): close the span and
				// the active-request count, then keep unwinding.
				rec := recover()
				var perr error
				if rec != nil {
					perr = fmt.Errorf("panic: %v", rec)
				}
				m.finish(ctx, span, start, method, scheme, c.Path(), http.StatusInternalServerError, perr, activeOpt)
				if rec != nil {
					panic(rec)
				}
			}()

			err = next(c)
			if err != nil {
				// Let the error handler pick and write the status code now,
				// so that it is what gets recorded.
				c.Error(err)
			}
			done = true
			logRequest(ctx, t.logger, note, req.Method, req.URL.Path, c.Path(), c.Response().Status, start)
			m.finish(ctx, span, start, method, scheme, c.Path(), c.Response().Status, err, activeOpt)
			return err
		}
	}
}

// Requests that are not traced unless the caller sends a sampled trace
// context: probes and scrapes, and the agents' heartbeats (reports every few
// seconds, snapshot long-polls). An agent's apply span links to the writes it
// applies instead.
var (
	untracedPaths  = map[string]bool{"/healthz": true, "/readyz": true, "/livez": true, "/metrics": true}
	heartbeatRoute = map[string]bool{"/v1/nodes/:id/reports": true, "/v1/nodes/:id/snapshot": true}
)

// untraced reports whether a request to path (route: echo's template) is
// sampled away; ctx carries the incoming trace context.
func untraced(path, route string, ctx context.Context) bool {
	if untracedPaths[path] {
		return true
	}
	return heartbeatRoute[route] && !trace.SpanContextFromContext(ctx).IsSampled()
}

// unsampledSpanContext is a fresh, valid span context that is not sampled.
func unsampledSpanContext() trace.SpanContext {
	var tid trace.TraceID
	var sid trace.SpanID
	_, _ = rand.Read(tid[:])
	_, _ = rand.Read(sid[:])
	return trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, Remote: true})
}

type httpMetrics struct {
	duration metric.Float64Histogram
	active   metric.Int64UpDownCounter
}

// finish completes the span and records the request metrics.
func (m *httpMetrics) finish(ctx context.Context, span trace.Span, start time.Time,
	method, scheme, route string, status int, err error, activeOpt metric.AddOption,
) {
	defer span.End()
	defer m.active.Add(ctx, -1, activeOpt)

	if route != "" {
		span.SetName(spanName(method, route))
		span.SetAttributes(semconv.HTTPRoute(route))
	}
	span.SetAttributes(semconv.HTTPResponseStatusCode(status))
	if err != nil {
		span.RecordError(err)
	}
	attrs := make([]attribute.KeyValue, 0, 5)
	attrs = append(attrs,
		semconv.HTTPRequestMethodKey.String(method),
		semconv.URLScheme(scheme),
		semconv.HTTPResponseStatusCode(status),
	)
	if route != "" {
		attrs = append(attrs, semconv.HTTPRoute(route))
	}
	if status >= http.StatusInternalServerError {
		errType := semconv.ErrorTypeKey.String(strconv.Itoa(status))
		span.SetAttributes(errType)
		attrs = append(attrs, errType)
		desc := http.StatusText(status)
		if err != nil {
			desc = err.Error()
		}
		span.SetStatus(codes.Error, desc)
	}
	m.duration.Record(ctx, time.Since(start).Seconds(),
		metric.WithAttributeSet(attribute.NewSet(attrs...)))
}

// knownMethods are the methods reported as-is; others become "_OTHER" so that
// arbitrary client input cannot blow up metric cardinality.
var knownMethods = map[string]bool{
	http.MethodGet: true, http.MethodHead: true, http.MethodPost: true,
	http.MethodPut: true, http.MethodPatch: true, http.MethodDelete: true,
	http.MethodConnect: true, http.MethodOptions: true, http.MethodTrace: true,
}

// normalizeMethod returns the semconv http.request.method value and, when it
// differs from the request's method, the original method.
func normalizeMethod(m string) (method, original string) {
	if knownMethods[m] {
		return m, ""
	}
	return "_OTHER", m
}

// spanName follows the HTTP semconv: "<METHOD> <route>", "<METHOD>" when the
// route is unknown, and "HTTP" instead of "_OTHER".
func spanName(method, route string) string {
	if method == "_OTHER" {
		method = "HTTP"
	}
	if route == "" {
		return method
	}
	return method + " " + route
}

// traceparent formats sc as a W3C traceparent header value.
func traceparent(sc trace.SpanContext) string {
	carrier := propagation.MapCarrier{}
	propagation.TraceContext{}.Inject(trace.ContextWithSpanContext(context.Background(), sc), carrier)
	return carrier.Get(traceparentCarrierKey)
}

func splitHostPort(hostport string) (string, int) {
	if hostport == "" {
		return "", 0
	}
	host, portStr, err := net.SplitHostPort(hostport)
	if err != nil {
		return hostport, 0
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port <= 0 || port > 65535 {
		port = 0
	}
	return host, port
}

func protocolVersion(r *http.Request) string {
	switch {
	case r.ProtoMajor == 1 && r.ProtoMinor == 1:
		return "1.1"
	case r.ProtoMajor == 1 && r.ProtoMinor == 0:
		return "1.0"
	case r.ProtoMajor == 2 && r.ProtoMinor == 0:
		return "2"
	case r.ProtoMajor == 3 && r.ProtoMinor == 0:
		return "3"
	default:
		return strconv.Itoa(r.ProtoMajor) + "." + strconv.Itoa(r.ProtoMinor)
	}
}
