package otlptest

import (
	"bytes"
	"net/http"
	"sync"
	"testing"

	coltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
)

func export(t *testing.T, endpoint string, name string) {
	t.Helper()
	req := &coltrace.ExportTraceServiceRequest{ResourceSpans: []*tracepb.ResourceSpans{{
		ScopeSpans: []*tracepb.ScopeSpans{{Spans: []*tracepb.Span{{Name: name, TraceId: make([]byte, 16), SpanId: make([]byte, 8)}}}},
	}}}
	raw, err := proto.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post(endpoint+"/v1/traces", "application/x-protobuf", bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("export: %s", resp.Status)
	}
}

// TestStartKeepsForwardHands: Start keeps what it receives; Forward hands
// each trace export over and keeps nothing.
func TestStartKeepsForwardHands(t *testing.T) {
	kept := Start(t)
	export(t, kept.Endpoint, "kept")
	if s := kept.Spans(); len(s) != 1 || s[0].Name != "kept" {
		t.Fatalf("Start kept %+v, want the span \"kept\"", s)
	}

	var mu sync.Mutex
	var got []string
	fwd := Forward(t, func(r *coltrace.ExportTraceServiceRequest) {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, r.GetResourceSpans()[0].GetScopeSpans()[0].GetSpans()[0].GetName())
	})
	export(t, fwd.Endpoint, "handed")
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 1 || got[0] != "handed" {
		t.Fatalf("Forward handed %q, want [handed]", got)
	}
	if s, text := fwd.Spans(), fwd.Text(); len(s) != 0 || text != "" {
		t.Fatalf("Forward kept spans %+v, text %q; want nothing", s, text)
	}
}
