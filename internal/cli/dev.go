package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fulcrumlb/fulcrum/api"
	"github.com/fulcrumlb/fulcrum/api/auth"
	"github.com/fulcrumlb/fulcrum/api/store"
	"github.com/fulcrumlb/fulcrum/dataplane/agent"
	"github.com/fulcrumlb/fulcrum/internal/pgcluster"
	"github.com/fulcrumlb/fulcrum/internal/secretbox"
	"github.com/fulcrumlb/fulcrum/internal/telemetry"
)

// Dev-stack defaults.
const (
	devPortDefault     = 54329
	devVIPRangeDefault = "127.77.0.0/16"
)

// runDev runs the whole stack on this machine: a private Postgres cluster under
// the state directory (unless FULCRUM_DATABASE_URL is set), migrations, a dev
// tenant, a node group with a loopback VIP range, tokens in <dir>/env, and the
// API. Ctrl-C stops everything; running it again reuses the data.
func runDev(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("dev", flag.ContinueOnError)
	fs.SetOutput(stderr)
	setUsage(fs, "fulcrum dev [flags]", `Runs the whole stack on this machine, for development: a private Postgres
cluster under the state directory (unless --database-url is given), the
migrations, the API, one agent with its HAProxy, a tenant "dev", a node group
"default" and tokens written to <dir>/env. The access log of listeners with
access_log enabled goes to <dir>/access.log (JSON lines). Ctrl-C stops
everything. Production runs the components separately: fulcrum migrate, api,
agent and admin.
`)
	dir := fs.String("dir", ".fulcrum", "state directory: database, secret key, agent state, env file")
	dbURL := dbFlag(fs)
	addr := fs.String("addr", env("FULCRUM_API_ADDR", api.AddrDefault), "API listen address (env FULCRUM_API_ADDR)")
	pgPort := fs.Int("pg-port", devPortDefault, "port of the private Postgres cluster")
	vipRange := fs.String("vip-range", devVIPRangeDefault, "VIP range of the default node group")
	logLevel := fs.String("log-level", env("FULCRUM_LOG_LEVEL", "info"), "debug, info, warn or error (env FULCRUM_LOG_LEVEL)")
	nodeName := fs.String("node-name", "dev-node-1", "name of the local dataplane node")
	haproxyBin := fs.String("haproxy", env("FULCRUM_HAPROXY", "haproxy"), "haproxy binary: the agent's, and the API's for dry runs (env FULCRUM_HAPROXY)")
	jaegerBin := fs.String("jaeger", env("FULCRUM_JAEGER", "bin/jaeger"),
		"Jaeger v2 binary started as the trace backend unless OTEL_EXPORTER_OTLP_ENDPOINT is set; empty for none (env FULCRUM_JAEGER)")
	agentMetricsAddr := fs.String("agent-metrics-addr", env("FULCRUM_AGENT_METRICS_ADDR", "127.0.0.1:8406"), "the dev agent's own Prometheus metrics; empty for none (env FULCRUM_AGENT_METRICS_ADDR)")
	promAddr := fs.String("prometheus-addr", env("FULCRUM_AGENT_PROMETHEUS_ADDR", "127.0.0.1:8405"), "HAProxy's Prometheus exporter of the dev node; empty for none (env FULCRUM_AGENT_PROMETHEUS_ADDR)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	log := newLogger(stderr, *logLevel)
	abs, err := filepath.Abs(*dir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return err
	}
	// Postgres must be able to enter the state directory when we run as root.
	if err := os.Chmod(abs, 0o755); err != nil {
		return err
	}

	url := *dbURL
	if url == "" {
		cluster, err := pgcluster.Open(filepath.Join(abs, "postgres"), *pgPort)
		if err != nil {
			return err
		}
		if err := cluster.Init(ctx); err != nil {
			return err
		}
		if err := cluster.Start(ctx); err != nil {
			return err
		}
		defer func() {
			if err := cluster.Stop(context.Background()); err != nil {
				log.Error("stop postgres", "err", err)
			} else {
				log.Info("postgres stopped")
			}
		}()
		if err := cluster.CreateDatabase(ctx, "fulcrum"); err != nil {
			return err
		}
		url = cluster.URL("fulcrum")
		log.Info("postgres running", "dir", cluster.Dir, "port", cluster.Port)
	}

	box, err := devSecretBox(filepath.Join(abs, "secret.key"))
	if err != nil {
		return err
	}
	st, err := store.Open(ctx, url)
	if err != nil {
		return err
	}
	defer st.Close()
	if _, err := st.Migrate(ctx); err != nil {
		return err
	}
	endpoint := "http://" + *addr
	envFile := filepath.Join(abs, "env")
	creds, err := devBootstrap(ctx, st, envFile, *vipRange)
	if err != nil {
		return err
	}
	tracing := startDevTracing(ctx, abs, *jaegerBin, log)
	defer tracing.Stop()
	if err := writeEnv(envFile, endpoint, url, creds, tracing.Endpoint); err != nil {
		return err
	}
	if err := writeTerraformRC(filepath.Join(abs, "terraform.tfrc")); err != nil {
		return err
	}

	tel, err := telemetry.Setup(ctx, "fulcrum-api", Version, telemetry.WithLogger(log))
	if err != nil {
		return err
	}
	defer tel.Shutdown(context.WithoutCancel(ctx)) //nolint:errcheck
	// The agent's spans are its own service, as on a real node.
	agentTel, err := telemetry.Setup(ctx, "fulcrum-agent", Version, telemetry.WithoutGlobals())
	if err != nil {
		return err
	}
	defer agentTel.Shutdown(context.WithoutCancel(ctx)) //nolint:errcheck
	srv, err := api.New(api.Config{Addr: *addr, HAProxy: *haproxyBin}, st, box, log, tel)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", *addr, err)
	}
	accessLog, err := os.OpenFile(filepath.Join(abs, "access.log"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	defer accessLog.Close()
	ag, err := agent.New(agent.Config{Endpoint: endpoint, Token: creds.NodeToken, NodeName: *nodeName, StateDir: filepath.Join(abs, "agent"),
		HAProxy: *haproxyBin, Version: Version, Logger: log, PollWait: 30 * time.Second, ReportInterval: 2 * time.Second,
		PrometheusAddr: *promAddr, TracerProvider: agentTel.TracerProvider(), MeterProvider: agentTel.MeterProvider(),
		LoggerProvider: agentTel.LoggerProvider(), AccessLog: accessLog, StopHAProxyOnExit: true}) // Ctrl-C stops everything
	if err != nil {
		return err
	}
	if *agentMetricsAddr != "" {
		stop, err := serveMetrics(*agentMetricsAddr, agentTel.MetricsHandler(), log)
		if err != nil {
			return err
		}
		defer stop()
	}
	agentDone := make(chan error, 1)
	go func() { agentDone <- ag.Run(ctx) }()
	printDevUsage(stdout, endpoint, envFile)
	printDevTracing(stdout, tracing)
	err = srv.Serve(ctx, ln)
	log.Info("API stopped")
	if aerr := <-agentDone; aerr != nil {
		log.Error("agent", "err", aerr)
	}
	log.Info("agent and haproxy stopped")
	return err
}

type devCreds struct {
	TenantToken, AdminToken, NodeToken string
}

// devBootstrap creates (once) the dev tenant, the default node group and the
// tokens, reusing tokens from an earlier env file while they still work.
func devBootstrap(ctx context.Context, st *store.Store, envFile, vipRange string) (devCreds, error) {
	old := readEnv(envFile)
	var c devCreds
	if p, err := auth.Authenticate(ctx, st, "Bearer "+old["FULCRUM_ADMIN_TOKEN"]); err == nil && p.Kind == store.TokenAdmin {
		c.AdminToken = old["FULCRUM_ADMIN_TOKEN"]
	}
	if p, err := auth.Authenticate(ctx, st, "Bearer "+old["FULCRUM_TOKEN"]); err == nil && p.Kind == store.TokenTenant {
		c.TenantToken = old["FULCRUM_TOKEN"]
	}
	if p, err := auth.Authenticate(ctx, st, "Bearer "+old["FULCRUM_NODE_TOKEN"]); err == nil && p.Kind == store.TokenNode {
		c.NodeToken = old["FULCRUM_NODE_TOKEN"]
	}
	err := st.Write(ctx, false, func(tx *store.Tx) error {
		tenantID, err := store.IDGetByName(ctx, tx, store.KindTenant, "dev")
		if errors.Is(err, store.ErrNotFound) {
			t, err := api.CreateTenantTx(ctx, tx, &store.Tenant{Name: "dev", Description: "created by make run", Quotas: store.DefaultQuotas})
			if err != nil {
				return err
			}
			tenantID = t.ID
		} else if err != nil {
			return err
		}
		groupID, err := store.IDGetByName(ctx, tx, store.KindNodeGroup, "default")
		if errors.Is(err, store.ErrNotFound) {
			g, err := api.CreateNodeGroupTx(ctx, tx, "default", "loopback VIPs for local development", nil, vipRange)
			if err != nil {
				return err
			}
			groupID = g.ID
		} else if err != nil {
			return err
		}
		if c.NodeToken == "" {
			_, bearer, err := api.IssueToken(ctx, tx, store.TokenNode, "", groupID, "dev-node", "created by make run", nil)
			if err != nil {
				return err
			}
			c.NodeToken = bearer
		}
		if c.AdminToken == "" {
			_, bearer, err := api.IssueToken(ctx, tx, store.TokenAdmin, "", "", "dev-admin", "created by make run", nil)
			if err != nil {
				return err
			}
			c.AdminToken = bearer
		}
		if c.TenantToken == "" {
			_, bearer, err := api.IssueToken(ctx, tx, store.TokenTenant, tenantID, "", "dev", "created by make run", nil)
			if err != nil {
				return err
			}
			c.TenantToken = bearer
		}
		return nil
	})
	if err != nil {
		return c, explain(err)
	}
	return c, nil
}

func devSecretBox(path string) (*secretbox.Box, error) {
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		key, err := secretbox.GenerateKey()
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(path, []byte(key+"\n"), 0o600); err != nil {
			return nil, err
		}
	}
	return loadSecretBox("", path)
}

func readEnv(path string) map[string]string {
	out := map[string]string{}
	b, err := os.ReadFile(path)
	if err != nil {
		return out
	}
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimPrefix(strings.TrimSpace(line), "export ")
		k, v, ok := strings.Cut(line, "=")
		if ok {
			out[k] = strings.Trim(v, `'"`)
		}
	}
	return out
}

func writeEnv(path, endpoint, dbURL string, c devCreds, otlpEndpoint string) error {
	content := fmt.Sprintf(`# Written by 'make run' (fulcrum dev). Source it: . %s
export FULCRUM_ENDPOINT='%s'
export FULCRUM_TOKEN='%s'
export FULCRUM_ADMIN_TOKEN='%s'
export FULCRUM_NODE_TOKEN='%s'
export FULCRUM_DATABASE_URL='%s'
`, path, endpoint, c.TenantToken, c.AdminToken, c.NodeToken, dbURL)
	if otlpEndpoint != "" {
		content += fmt.Sprintf("export OTEL_EXPORTER_OTLP_ENDPOINT='%s'\n", otlpEndpoint)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// writeTerraformRC points terraform at the provider built next to this binary
// (make build puts both in bin/), so no `terraform init` or registry is needed.
func writeTerraformRC(path string) error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	content := fmt.Sprintf(`# Written by 'make run'. Use: export TF_CLI_CONFIG_FILE=%s
provider_installation {
  dev_overrides {
    "registry.terraform.io/fulcrumlb/fulcrum" = %q
  }
  direct {}
}
`, path, filepath.Dir(exe))
	return os.WriteFile(path, []byte(content), 0o644)
}

func printDevUsage(w io.Writer, endpoint, envFile string) {
	fmt.Fprintf(w, `
Fulcrum is running: API, Postgres, and one agent with HAProxy (node dev-node-1).
  API:        %[1]s   (OpenAPI document: %[1]s/openapi.yaml)
  Tokens:     %[2]s   (FULCRUM_ENDPOINT, FULCRUM_TOKEN = tenant "dev", FULCRUM_ADMIN_TOKEN, FULCRUM_NODE_TOKEN)

Try it from another shell (a backend, then a load balancer in front of it):
  python3 -m http.server 9001 --bind 127.0.0.1 &
  . %[2]s
  H=(-H "Authorization: Bearer $FULCRUM_TOKEN" -H 'Content-Type: application/json')
  LB=$(curl -s "${H[@]}" $FULCRUM_ENDPOINT/v1/load-balancers -d '{"name":"web"}' | jq -r .id)
  POOL=$(curl -s "${H[@]}" $FULCRUM_ENDPOINT/v1/pools -d '{"load_balancer_id":"'$LB'","protocol":"http"}' | jq -r .id)
  curl -s "${H[@]}" $FULCRUM_ENDPOINT/v1/members -d '{"pool_id":"'$POOL'","address":"127.0.0.1","port":9001}' >/dev/null
  curl -s "${H[@]}" $FULCRUM_ENDPOINT/v1/listeners -d '{"load_balancer_id":"'$LB'","protocol":"http","port":8000,"default_pool_id":"'$POOL'"}' >/dev/null
  VIP=$(curl -s "${H[@]}" $FULCRUM_ENDPOINT/v1/load-balancers/$LB | jq -r .vip_address)
  curl -s http://$VIP:8000/            # served by HAProxy on the VIP
  curl -s "${H[@]}" $FULCRUM_ENDPOINT/v1/load-balancers/$LB/status

Or from Terraform (the provider is in bin/, wired up by a dev_overrides CLI config):
  export TF_CLI_CONFIG_FILE=%[3]s
  cd examples/quickstart && terraform apply && curl "$(terraform output -raw url)"

Press Ctrl-C to stop everything; 'make run' again reuses the data.
`, endpoint, envFile, filepath.Join(filepath.Dir(envFile), "terraform.tfrc"))
}
