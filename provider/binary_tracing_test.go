package provider_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/fulcrumlb/fulcrum/internal/telemetry"
	"github.com/fulcrumlb/fulcrum/internal/telemetry/otlptest"
	"github.com/fulcrumlb/fulcrum/internal/teststack"
	"github.com/fulcrumlb/fulcrum/provider"
	"github.com/fulcrumlb/fulcrum/provider/internal/acctest"
)

// TestAccTraceProviderBinary runs the real plugin binary under a real
// `terraform apply` (a dev_overrides CLI config, as `make run` writes) with
// OTEL_EXPORTER_OTLP_ENDPOINT set for terraform only: the plugin process
// exports its operation spans before terraform stops it, and the API's
// server span of its request is their child.
func TestAccTraceProviderBinary(t *testing.T) {
	acctest.SkipUnlessAcc(t)
	acctest.PreCheck(t)
	ctx := context.Background()
	rcv := otlptest.Start(t)

	dir := t.TempDir()
	_, file, _, _ := runtime.Caller(0)
	build := exec.Command("go", "build", "-o", filepath.Join(dir, "bin", "terraform-provider-fulcrum"), "./cmd/terraform-provider-fulcrum")
	build.Dir = filepath.Join(filepath.Dir(file), "..")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the provider: %v\n%s", err, out)
	}

	// The API exports to the receiver too (explicitly: the environment of
	// this process stays as it is).
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", rcv.Endpoint)
	apiTel, err := telemetry.Setup(ctx, "fulcrum-api", "test")
	os.Unsetenv("OTEL_EXPORTER_OTLP_ENDPOINT")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		otel.SetTracerProvider(tracenoop.NewTracerProvider())
		otel.SetMeterProvider(metricnoop.NewMeterProvider())
		otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator())
		_ = apiTel.Shutdown(context.Background())
	})
	s := teststack.Start(t, teststack.Options{Telemetry: apiTel})
	s.StartAgent("node-1")

	rc := filepath.Join(dir, "terraform.tfrc")
	if err := os.WriteFile(rc, fmt.Appendf(nil, "provider_installation {\n  dev_overrides {\n    %q = %q\n  }\n  direct {}\n}\n",
		provider.Address, filepath.Join(dir, "bin")), 0o644); err != nil {
		t.Fatal(err)
	}
	work := filepath.Join(dir, "work")
	cfg := acctest.ProviderBlock(s, s.TenantToken) + `
terraform {
  required_providers {
    fulcrum = { source = "fulcrumlb/fulcrum" }
  }
}

resource "fulcrum_load_balancer" "web" {
  name = "binary"
}
`
	if err := os.MkdirAll(work, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(work, "main.tf"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	apply := exec.Command(os.Getenv("TF_ACC_TERRAFORM_PATH"), "apply", "-auto-approve", "-input=false", "-no-color")
	apply.Dir = work
	apply.Env = append(os.Environ(), "TF_CLI_CONFIG_FILE="+rc, "OTEL_EXPORTER_OTLP_ENDPOINT="+rcv.Endpoint,
		"OTEL_BSP_SCHEDULE_DELAY=100", "CHECKPOINT_DISABLE=1", "TF_IN_AUTOMATION=1")
	if out, err := apply.CombinedOutput(); err != nil {
		t.Fatalf("terraform apply: %v\n%s", err, out)
	}

	var op, server *otlptest.Span
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline) && (op == nil || server == nil); time.Sleep(200 * time.Millisecond) {
		_ = apiTel.TracerProvider().ForceFlush(ctx)
		spans := rcv.Spans()
		op, server = nil, nil
		for i := range spans {
			if spans[i].Service == provider.ServiceName && spans[i].Name == "fulcrum_load_balancer create" {
				op = &spans[i]
			}
		}
		if op == nil {
			continue
		}
		clients := map[string]bool{}
		for _, sp := range spans {
			if sp.TraceID == op.TraceID && sp.ParentSpanID == op.SpanID && sp.Kind == tracepb.Span_SPAN_KIND_CLIENT {
				clients[sp.SpanID] = true
			}
		}
		for i := range spans {
			if spans[i].Service == "fulcrum-api" && spans[i].Name == "POST /v1/load-balancers" && clients[spans[i].ParentSpanID] {
				server = &spans[i]
			}
		}
	}
	if op == nil {
		var names []string
		for _, sp := range rcv.Spans() {
			names = append(names, sp.Service+":"+sp.Name)
		}
		t.Fatalf("the plugin process exported no \"fulcrum_load_balancer create\" span; spans: %s", strings.Join(names, ", "))
	}
	if server == nil {
		t.Fatalf("no API server span POST /v1/load-balancers under the plugin's client span in trace %s", op.TraceID)
	}
}
