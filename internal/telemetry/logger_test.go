package telemetry

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
)

func decodeLines(t *testing.T, buf *bytes.Buffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	for line := range strings.Lines(buf.String()) {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line %q is not JSON: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}

func TestLoggerAddsTraceContext(t *testing.T) {
	tel, _ := newTestTelemetry(t)
	ctx, span := tel.Tracer("test").Start(context.Background(), "op")
	defer span.End()
	ctx = ContextWithRequestID(ctx, "req-1")
	traceID := span.SpanContext().TraceID().String()
	spanID := span.SpanContext().SpanID().String()

	var buf bytes.Buffer
	logger := NewLogger(&buf, slog.LevelInfo)

	logger.InfoContext(ctx, "with ctx", "k", "v")
	logger.Info("without ctx")
	logger.DebugContext(ctx, "filtered")
	logger.With("a", 1).WithGroup("g").With("b", 2).InfoContext(ctx, "grouped", "c", 3)

	lines := decodeLines(t, &buf)
	if len(lines) != 3 {
		t.Fatalf("got %d lines, want 3:\n%s", len(lines), buf.String())
	}

	first := lines[0]
	if first["msg"] != "with ctx" || first["k"] != "v" {
		t.Errorf("unexpected record %v", first)
	}
	if first[LogKeyTraceID] != traceID || first[LogKeySpanID] != spanID || first[LogKeyRequestID] != "req-1" {
		t.Errorf("record %v: want trace_id %s span_id %s request_id req-1", first, traceID, spanID)
	}

	if _, ok := lines[1][LogKeyTraceID]; ok {
		t.Errorf("record without context has trace_id: %v", lines[1])
	}

	grouped := lines[2]
	if grouped[LogKeyTraceID] != traceID || grouped[LogKeySpanID] != spanID {
		t.Errorf("grouped record %v: want top-level trace_id/span_id", grouped)
	}
	g, _ := grouped["g"].(map[string]any)
	if grouped["a"] != float64(1) || g["b"] != float64(2) || g["c"] != float64(3) {
		t.Errorf("grouped record lost attributes: %v", grouped)
	}
}

func TestLoggerNoSpan(t *testing.T) {
	var buf bytes.Buffer
	NewLogger(&buf, slog.LevelDebug).WithGroup("g").DebugContext(context.Background(), "plain", "x", "y")
	lines := decodeLines(t, &buf)
	if len(lines) != 1 {
		t.Fatalf("got %d lines", len(lines))
	}
	if _, ok := lines[0][LogKeyTraceID]; ok {
		t.Errorf("trace_id without a span: %v", lines[0])
	}
	if g, _ := lines[0]["g"].(map[string]any); g["x"] != "y" {
		t.Errorf("record %v", lines[0])
	}
}
