package cli

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/fulcrumlb/fulcrum/internal/telemetry"
)

// TestDevJaeger starts the dev stack's Jaeger from bin/jaeger (skipped when
// `make jaeger` has not built it), exports a span to it the way the API
// does and finds it through the query API, as the README says.
func TestDevJaeger(t *testing.T) {
	_, file, _, _ := runtime.Caller(0)
	bin := filepath.Join(filepath.Dir(file), "..", "..", "bin", "jaeger")
	if _, err := os.Stat(bin); err != nil {
		t.Skip("no bin/jaeger: run `make jaeger`")
	}
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "")
	os.Unsetenv("OTEL_EXPORTER_OTLP_ENDPOINT")
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	tr := startDevTracing(ctx, t.TempDir(), bin, log)
	defer tr.Stop()
	if tr.Query == "" {
		t.Fatal("Jaeger did not start")
	}
	tel, err := telemetry.Setup(ctx, "fulcrum-devtest", "test", telemetry.WithoutGlobals())
	if err != nil {
		t.Fatal(err)
	}
	_, write := tel.Tracer("test").Start(ctx, "write")
	write.End()
	_, span := tel.Tracer("test").Start(ctx, "dev-span", trace.WithLinks(trace.Link{SpanContext: write.SpanContext()}))
	span.End()
	if err := tel.Shutdown(ctx); err != nil {
		t.Fatalf("export to Jaeger: %v", err)
	}
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		res, err := http.Get(tr.Query + "/api/traces?service=fulcrum-devtest&operation=dev-span")
		if err != nil {
			continue
		}
		var out struct {
			Data []struct {
				Spans []struct {
					OperationName string
					References    []struct{ RefType, TraceID, SpanID string }
				}
			}
		}
		_ = json.NewDecoder(res.Body).Decode(&out)
		res.Body.Close()
		if len(out.Data) > 0 && len(out.Data[0].Spans) > 0 && out.Data[0].Spans[0].OperationName == "dev-span" {
			// A link is a FOLLOWS_FROM reference (what the README's
			// query for agent applies looks for).
			for _, r := range out.Data[0].Spans[0].References {
				if r.RefType == "FOLLOWS_FROM" && r.SpanID == write.SpanContext().SpanID().String() {
					return
				}
			}
			t.Fatalf("the link is not a FOLLOWS_FROM reference: %+v", out.Data[0].Spans[0].References)
		}
	}
	t.Fatal("the span never showed up in Jaeger's query API")
}
