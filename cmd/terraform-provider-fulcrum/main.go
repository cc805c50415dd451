// Command terraform-provider-fulcrum is Fulcrum's Terraform provider plugin.
//
// With OTEL_EXPORTER_OTLP_ENDPOINT (or OTEL_TRACES_EXPORTER) set for
// terraform, the plugin exports a span per resource operation, with the API
// requests under it, and joins terraform's trace when terraform passes one in
// TRACEPARENT.
package main

import (
	"context"
	"flag"
	"log"
	"log/slog"
	"os"
	"time"

	"github.com/hashicorp/terraform-plugin-go/tfprotov6"
	"github.com/hashicorp/terraform-plugin-go/tfprotov6/tf6server"

	"github.com/fulcrumlb/fulcrum/provider"
)

// version is set at build time with -ldflags.
var version = "dev"

func main() {
	debug := flag.Bool("debug", false, "run with support for debuggers like delve")
	flag.Parse()
	ctx := context.Background()
	logger := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	tp, shutdown, err := provider.SetupTelemetry(ctx, version, logger)
	if err != nil {
		log.Fatal(err)
	}
	server, err := provider.NewServer(version, tp)()
	if err != nil {
		log.Fatal(err)
	}
	var opts []tf6server.ServeOpt
	if *debug {
		opts = append(opts, tf6server.WithManagedDebug())
	}
	err = tf6server.Serve(provider.Address, func() tfprotov6.ProviderServer { return server }, opts...)
	// terraform waits 2s for a plugin to exit once it is done with it: flush
	// the spans within that.
	sctx, cancel := context.WithTimeout(ctx, 1500*time.Millisecond)
	defer cancel()
	if serr := shutdown(sctx); serr != nil {
		logger.Warn("flushing traces", "err", serr)
	}
	if err != nil {
		log.Fatal(err)
	}
}
