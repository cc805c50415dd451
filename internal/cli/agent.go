package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/fulcrumlb/fulcrum/dataplane/agent"
	"github.com/fulcrumlb/fulcrum/internal/telemetry"
)

func runAgent(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("agent", flag.ContinueOnError)
	fs.SetOutput(stderr)
	setUsage(fs, "fulcrum agent [flags]", `Runs the dataplane agent of this node: registers the node with the API,
long-polls its snapshots and realizes them with its own HAProxy, reports what
it applied, member health and counters. Keeps serving what it last applied
while the API is unreachable, and serves it at start before the API answers.
Needs a node token: fulcrum admin token create --kind node [--node-group GROUP].
`)
	host, _ := os.Hostname()
	cfg := agent.Config{Version: Version}
	fs.StringVar(&cfg.Endpoint, "endpoint", env("FULCRUM_ENDPOINT", "http://127.0.0.1:8080"), "API base URL (env FULCRUM_ENDPOINT)")
	fs.StringVar(&cfg.Token, "token", "", "node token (env FULCRUM_NODE_TOKEN; its value is not shown here)")
	cfg.Token = os.Getenv("FULCRUM_NODE_TOKEN")
	fs.StringVar(&cfg.NodeName, "node-name", env("FULCRUM_NODE_NAME", host), "this node's name (env FULCRUM_NODE_NAME)")
	fs.StringVar(&cfg.NodeGroupID, "node-group", env("FULCRUM_NODE_GROUP", ""),
		"node group id a new node registers in; required when the token is not bound to a group (env FULCRUM_NODE_GROUP)")
	fs.StringVar(&cfg.StateDir, "state-dir", env("FULCRUM_AGENT_STATE_DIR", "/var/lib/fulcrum-agent"), "state directory (env FULCRUM_AGENT_STATE_DIR)")
	fs.StringVar(&cfg.HAProxy, "haproxy", env("FULCRUM_HAPROXY", "haproxy"), "haproxy binary (env FULCRUM_HAPROXY)")
	fs.StringVar(&cfg.PrometheusAddr, "prometheus-addr", env("FULCRUM_AGENT_PROMETHEUS_ADDR", "127.0.0.1:8405"),
		"serve HAProxy's Prometheus exporter here; --prometheus-addr= for none (env FULCRUM_AGENT_PROMETHEUS_ADDR)")
	fs.DurationVar(&cfg.PollWait, "poll-wait", 30*time.Second, "long-poll wait")
	fs.DurationVar(&cfg.ReportInterval, "report-interval", 0, "health and counters report interval (0: the node group's heartbeat interval)")
	fs.BoolVar(&cfg.StopHAProxyOnExit, "stop-haproxy-on-exit", env("FULCRUM_AGENT_STOP_HAPROXY_ON_EXIT", "") == "true",
		"stop HAProxy when the agent exits (default: leave it serving; the next agent takes it over) (env FULCRUM_AGENT_STOP_HAPROXY_ON_EXIT=true)")
	fs.StringVar(&cfg.PeerAddress, "peer-address", env("FULCRUM_AGENT_PEER_ADDRESS", ""),
		"ip:port on this node's LAN address where HAProxy shares stick tables with the group's other nodes (HAProxy peers); empty: none (env FULCRUM_AGENT_PEER_ADDRESS)")
	logLevel := fs.String("log-level", env("FULCRUM_LOG_LEVEL", "info"), "debug, info, warn or error (env FULCRUM_LOG_LEVEL)")
	metricsAddr := fs.String("metrics-addr", env("FULCRUM_AGENT_METRICS_ADDR", "127.0.0.1:8406"),
		"serve the agent's own Prometheus metrics (/metrics) here; --metrics-addr= for none (env FULCRUM_AGENT_METRICS_ADDR)")
	accessLog := fs.String("access-log", env("FULCRUM_AGENT_ACCESS_LOG", ""),
		"write the access log of listeners with access_log.enabled here as JSON lines: a file (appended to) or - for stdout; "+
			"empty for none (the records still go to OTEL_LOGS_EXPORTER) (env FULCRUM_AGENT_ACCESS_LOG)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if cfg.Token == "" {
		return fmt.Errorf("no node token: set FULCRUM_NODE_TOKEN (fulcrum admin token create --kind node)")
	}
	cfg.Logger = newLogger(stderr, *logLevel)
	switch *accessLog {
	case "":
	case "-":
		cfg.AccessLog = os.Stdout
	default:
		f, err := os.OpenFile(*accessLog, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
		if err != nil {
			return fmt.Errorf("--access-log: %w", err)
		}
		defer f.Close()
		cfg.AccessLog = f
	}
	tel, err := telemetry.Setup(ctx, "fulcrum-agent", Version, telemetry.WithLogger(cfg.Logger))
	if err != nil {
		return err
	}
	defer tel.Shutdown(context.WithoutCancel(ctx)) //nolint:errcheck
	cfg.Logger = tel.Logger(cfg.Logger)
	cfg.TracerProvider = tel.TracerProvider()
	cfg.MeterProvider = tel.MeterProvider()
	cfg.LoggerProvider = tel.LoggerProvider()
	if *metricsAddr != "" {
		// Metrics are not worth a node that does not serve: a taken address
		// is logged, and the agent runs without them.
		if stop, err := serveMetrics(*metricsAddr, tel.MetricsHandler(), cfg.Logger); err != nil {
			cfg.Logger.Error("agent metrics not served", "err", err)
		} else {
			defer stop()
		}
	}
	a, err := agent.New(cfg)
	if err != nil {
		return err
	}
	// SIGTERM or SIGINT (Main's ctx) ends Run, which leaves HAProxy serving
	// unless --stop-haproxy-on-exit: HAProxy runs in its own process group, so
	// a Ctrl-C in this terminal does not reach it, and the systemd unit's
	// KillMode=process keeps systemd from killing it.
	return a.Run(ctx)
}

// serveMetrics serves h at addr/metrics until stop is called.
func serveMetrics(addr string, h http.Handler, log *slog.Logger) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics address %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", h)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server", "err", err)
		}
	}()
	log.Info("serving metrics", "addr", ln.Addr().String())
	return func() { _ = srv.Close() }, nil
}
