// Package otlptest is an in-process OTLP/HTTP receiver for tests: it speaks
// the real protocol (protobuf ExportTraceServiceRequest, …, on /v1/traces,
// /v1/metrics and /v1/logs), so programs under test export to it with their
// ordinary OTLP exporters, pointed at it by OTEL_EXPORTER_OTLP_ENDPOINT.
package otlptest

import (
	"compress/gzip"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	collogs "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	colmetrics "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	coltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"
)

// Span is a received span, flattened.
type Span struct {
	Service      string // the resource's service.name
	Scope        string // the instrumentation scope
	TraceID      string // hex
	SpanID       string // hex
	ParentSpanID string // hex, "" for a root
	Name         string
	Kind         tracepb.Span_SpanKind
	Attributes   map[string]string // values as text
	Links        []Link
	Events       []Event
	StatusCode   tracepb.Status_StatusCode
	StatusMsg    string
}

// Link is a span's link.
type Link struct{ TraceID, SpanID string }

// Event is a span's event.
type Event struct {
	Name       string
	Attributes map[string]string
}

// Receiver collects what is exported to it.
type Receiver struct {
	// Endpoint is the base URL for OTEL_EXPORTER_OTLP_ENDPOINT.
	Endpoint string

	mu    sync.Mutex
	spans []Span
	text  strings.Builder // every request, as protobuf text, for searches

	// forward, when set, gets every trace export instead of the receiver
	// keeping it (Forward).
	forward func(*coltrace.ExportTraceServiceRequest)
}

// Start runs a receiver until the test ends.
func Start(tb testing.TB) *Receiver {
	r := &Receiver{}
	srv := httptest.NewServer(r)
	tb.Cleanup(srv.Close)
	r.Endpoint = srv.URL
	return r
}

// Forward runs a receiver until the test ends that hands every trace export
// to fn (from the server's goroutines) and keeps nothing: for long runs, where
// keeping and formatting every export would cost the test memory and CPU.
// Metrics and logs are acknowledged and dropped.
func Forward(tb testing.TB, fn func(*coltrace.ExportTraceServiceRequest)) *Receiver {
	r := &Receiver{forward: fn}
	srv := httptest.NewServer(r)
	tb.Cleanup(srv.Close)
	r.Endpoint = srv.URL
	return r
}

func (r *Receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	var body io.Reader = req.Body
	if req.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(req.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		body = zr
	}
	raw, err := io.ReadAll(body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var msg, resp proto.Message
	switch req.URL.Path {
	case "/v1/traces":
		msg, resp = &coltrace.ExportTraceServiceRequest{}, &coltrace.ExportTraceServiceResponse{}
	case "/v1/metrics":
		msg, resp = &colmetrics.ExportMetricsServiceRequest{}, &colmetrics.ExportMetricsServiceResponse{}
	case "/v1/logs":
		msg, resp = &collogs.ExportLogsServiceRequest{}, &collogs.ExportLogsServiceResponse{}
	default:
		http.NotFound(w, req)
		return
	}
	if err := proto.Unmarshal(raw, msg); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	switch tr, isTrace := msg.(*coltrace.ExportTraceServiceRequest); {
	case r.forward == nil:
		r.keep(msg)
	case isTrace:
		r.forward(tr)
	}
	out, _ := proto.Marshal(resp)
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(out)
}

// keep records msg.
func (r *Receiver) keep(msg proto.Message) {
	r.mu.Lock()
	r.text.WriteString(prototext.Format(msg))
	if tr, ok := msg.(*coltrace.ExportTraceServiceRequest); ok {
		r.spans = append(r.spans, flatten(tr)...)
	}
	r.mu.Unlock()
}

// Spans returns the spans received so far.
func (r *Receiver) Spans() []Span {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Span(nil), r.spans...)
}

// Text is everything received (spans, metrics, logs) as protobuf text, for
// searching for what must never be exported.
func (r *Receiver) Text() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.text.String()
}

func flatten(req *coltrace.ExportTraceServiceRequest) []Span {
	var out []Span
	for _, rs := range req.GetResourceSpans() {
		service := attrs(rs.GetResource().GetAttributes())["service.name"]
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				sp := Span{Service: service, Scope: ss.GetScope().GetName(), TraceID: hex.EncodeToString(s.GetTraceId()),
					SpanID: hex.EncodeToString(s.GetSpanId()), Name: s.GetName(), Kind: s.GetKind(),
					Attributes: attrs(s.GetAttributes()), StatusCode: s.GetStatus().GetCode(), StatusMsg: s.GetStatus().GetMessage()}
				if p := s.GetParentSpanId(); len(p) > 0 {
					sp.ParentSpanID = hex.EncodeToString(p)
				}
				for _, l := range s.GetLinks() {
					sp.Links = append(sp.Links, Link{TraceID: hex.EncodeToString(l.GetTraceId()), SpanID: hex.EncodeToString(l.GetSpanId())})
				}
				for _, e := range s.GetEvents() {
					sp.Events = append(sp.Events, Event{Name: e.GetName(), Attributes: attrs(e.GetAttributes())})
				}
				out = append(out, sp)
			}
		}
	}
	return out
}

func attrs(kvs []*commonpb.KeyValue) map[string]string {
	m := make(map[string]string, len(kvs))
	for _, kv := range kvs {
		m[kv.GetKey()] = valueText(kv.GetValue())
	}
	return m
}

func valueText(v *commonpb.AnyValue) string {
	switch x := v.GetValue().(type) {
	case *commonpb.AnyValue_StringValue:
		return x.StringValue
	case *commonpb.AnyValue_IntValue:
		return fmt.Sprint(x.IntValue)
	case *commonpb.AnyValue_BoolValue:
		return fmt.Sprint(x.BoolValue)
	case *commonpb.AnyValue_DoubleValue:
		return fmt.Sprint(x.DoubleValue)
	case *commonpb.AnyValue_ArrayValue:
		var parts []string
		for _, e := range x.ArrayValue.GetValues() {
			parts = append(parts, valueText(e))
		}
		return strings.Join(parts, ",")
	}
	return v.String()
}
