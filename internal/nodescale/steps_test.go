package nodescale

import (
	"strings"
	"testing"
	"time"

	coltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"

	"github.com/fulcrumlb/fulcrum/internal/telemetry/otlptest"
)

// The per-change steps of the process shape (FULCRUM_SCALE_STEPS=1 without
// FULCRUM_SCALE_INPROCESS=1): `fulcrum api` and `fulcrum agent` export their
// spans with their ordinary OTLP exporter (OTEL_TRACES_EXPORTER=otlp over
// HTTP/protobuf) to a receiver in this process, which hands those of the
// member phase's first run to the step recorder as the in-process shape's
// spans are: the API's request, SQL and stream-feed spans (the feed's
// "stream.feed": notification → view read → frame written), the agent's
// frame ("agent.stream.frame": read → decoded → merged), apply and runtime
// API spans. Span events are recorded as instants ("span ▸ event"). The
// processes share this machine's clock. Their exporters batch (every 5 s by
// default, OTEL_BSP_SCHEDULE_DELAY): the phase waits for the last batch
// before it prints.

// stepExport is how long the processes' exporters may hold a span (their
// batch delay, 5 s by default, and some).
const stepExport = 7 * time.Second

// startStepReceiver starts the OTLP/HTTP trace receiver of r and returns
// the environment that points a `fulcrum` process at it.
func startStepReceiver(t *testing.T, r *stepRecorder) []string {
	t.Helper()
	rcv := otlptest.Forward(t, func(msg *coltrace.ExportTraceServiceRequest) {
		if r.on.Load() {
			r.addExported(msg)
		}
	})
	return []string{"OTEL_TRACES_EXPORTER=otlp", "OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf",
		"OTEL_EXPORTER_OTLP_ENDPOINT=" + rcv.Endpoint, "OTEL_TRACES_SAMPLER=always_on"}
}

// addExported records the spans of an export request.
func (r *stepRecorder) addExported(msg *coltrace.ExportTraceServiceRequest) {
	var out []recorded
	for _, rs := range msg.GetResourceSpans() {
		service := ""
		for _, kv := range rs.GetResource().GetAttributes() {
			if kv.GetKey() == "service.name" {
				service = kv.GetValue().GetStringValue()
			}
		}
		service = strings.TrimPrefix(service, "fulcrum-")
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				start, end := time.Unix(0, int64(s.GetStartTimeUnixNano())), time.Unix(0, int64(s.GetEndTimeUnixNano()))
				out = append(out, recorded{name: s.GetName(), text: spanText(s.GetAttributes()), start: start, end: end, service: service})
				for _, e := range s.GetEvents() {
					at := time.Unix(0, int64(e.GetTimeUnixNano()))
					out = append(out, recorded{name: s.GetName() + " ▸ " + e.GetName(), text: spanText(e.GetAttributes()), start: at, end: at, service: service})
				}
			}
		}
	}
	r.mu.Lock()
	r.spans = append(r.spans, out...)
	r.mu.Unlock()
}

// spanText is what the printout shows of a span's attributes: its SQL
// (shortened), its route, revision and size.
func spanText(kvs []*commonpb.KeyValue) string {
	var parts []string
	for _, kv := range kvs {
		v := kv.GetValue()
		switch kv.GetKey() {
		case "db.query.text", "db.statement":
			text := strings.Join(strings.Fields(v.GetStringValue()), " ")
			parts = append(parts, text[:min(len(text), 70)])
		case "http.route", "url.path":
			parts = append(parts, v.GetStringValue())
		case "fulcrum.revision", "fulcrum.bytes", "fulcrum.runtime.commands":
			parts = append(parts, kv.GetKey()[len("fulcrum."):]+"="+strings.TrimPrefix(v.String(), "int_value:"))
		}
	}
	return strings.Join(parts, " ")
}
