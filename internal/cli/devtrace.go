package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// The dev stack's Jaeger listens on loopback only.
const (
	devJaegerOTLP  = "http://127.0.0.1:4318"
	devJaegerQuery = "http://127.0.0.1:16686"
)

// devJaegerConfig is Jaeger v2's all-in-one setup (in-memory storage, OTLP
// in, query API out) bound to loopback.
const devJaegerConfig = `service:
  extensions: [jaeger_storage, jaeger_query, healthcheckv2]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    resource:
      service.name: jaeger
    metrics:
      level: none
    logs:
      level: warn

extensions:
  healthcheckv2:
    use_v2: true
    http:
      endpoint: 127.0.0.1:13133
  jaeger_query:
    storage:
      traces: memstore
    http:
      endpoint: 127.0.0.1:16686
    grpc:
      endpoint: 127.0.0.1:16685
  jaeger_storage:
    backends:
      memstore:
        memory:
          max_traces: 100000

receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:4317
      http:
        endpoint: 127.0.0.1:4318

processors:
  batch:

exporters:
  jaeger_storage_exporter:
    trace_storage: memstore
`

// devTracing is where the dev stack's traces go.
type devTracing struct {
	// Endpoint is the OTLP endpoint every program exports to ("" for none).
	Endpoint string
	// Query is the Jaeger query API started by the dev stack ("" when the
	// user brought their own endpoint or none runs).
	Query string
	stop  func()
}

// Stop stops the Jaeger the dev stack started, if any.
func (t devTracing) Stop() {
	if t.stop != nil {
		t.stop()
	}
}

// startDevTracing decides where traces go: the user's
// OTEL_EXPORTER_OTLP_ENDPOINT when set (nothing is started), else a Jaeger v2
// started from bin (when it exists) with its state under dir. Without one it
// warns and traces are not exported. It sets OTEL_EXPORTER_OTLP_ENDPOINT for
// this process, so the API and the agent export there.
func startDevTracing(ctx context.Context, dir, bin string, log *slog.Logger) devTracing {
	if ep := os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT"); ep != "" {
		log.Info("exporting traces to OTEL_EXPORTER_OTLP_ENDPOINT", "endpoint", ep)
		return devTracing{Endpoint: ep}
	}
	if bin == "" {
		return devTracing{}
	}
	if _, err := os.Stat(bin); err != nil {
		log.Warn("no Jaeger: traces are not exported; build it with 'make jaeger' (or set OTEL_EXPORTER_OTLP_ENDPOINT)", "binary", bin)
		return devTracing{}
	}
	cfg := filepath.Join(dir, "jaeger.yaml")
	if err := os.WriteFile(cfg, []byte(devJaegerConfig), 0o644); err != nil {
		log.Warn("no Jaeger: writing its config", "err", err)
		return devTracing{}
	}
	logFile, err := os.Create(filepath.Join(dir, "jaeger.log"))
	if err != nil {
		log.Warn("no Jaeger: creating its log", "err", err)
		return devTracing{}
	}
	cmd := exec.Command(bin, "--config", cfg)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		log.Warn("no Jaeger: starting it", "err", err)
		return devTracing{}
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait(); logFile.Close() }()
	stop := func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	}
	if err := waitHTTP(ctx, devJaegerQuery+"/api/services", done); err != nil {
		stop()
		log.Warn("no Jaeger: it did not come up; see its log", "log", logFile.Name(), "err", err)
		return devTracing{}
	}
	os.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", devJaegerOTLP)
	log.Info("Jaeger running", "otlp", devJaegerOTLP, "query", devJaegerQuery, "pid", cmd.Process.Pid)
	return devTracing{Endpoint: devJaegerOTLP, Query: devJaegerQuery, stop: stop}
}

// waitHTTP polls url until it answers 200, for up to 30s.
func waitHTTP(ctx context.Context, url string, exited <-chan error) error {
	c := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-exited:
			return fmt.Errorf("exited: %v", err)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
		if res, err := c.Get(url); err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return nil
			}
		}
	}
	return errors.New("no answer within 30s")
}

// printDevTracing tells how to send terraform's traces along and look one up.
func printDevTracing(w io.Writer, t devTracing) {
	switch {
	case t.Query != "":
		fmt.Fprintf(w, `
Traces go to Jaeger (OTLP %[1]s; the env file exports OTEL_EXPORTER_OTLP_ENDPOINT for terraform's provider too).
After 'terraform apply', list its traces and fetch one (the trace id is in the first column):
  curl -s '%[2]s/api/traces?service=terraform-provider-fulcrum&limit=5' | jq -r '.data[] | [.traceID, (.spans|length), ([.spans[].operationName]|unique|join(", "))] | @tsv'
  curl -s %[2]s/api/traces/TRACE_ID | jq '.data[0].spans[] | {operationName, references}'
  Agent applies (linked to the writes they apply): curl -s '%[2]s/api/traces?service=fulcrum-agent&operation=agent.apply&limit=5'
`, t.Endpoint, t.Query)
	case t.Endpoint != "":
		fmt.Fprintf(w, "\nTraces go to %s (OTEL_EXPORTER_OTLP_ENDPOINT); export it for terraform too.\n", t.Endpoint)
	default:
		fmt.Fprintf(w, "\nTraces are not exported: run 'make jaeger' (then 'make run' again) or set OTEL_EXPORTER_OTLP_ENDPOINT.\n")
	}
}
