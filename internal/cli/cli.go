// Package cli implements the fulcrum command's subcommands; cmd/fulcrum only
// calls Main. Configuration comes from flags, each defaulting to a FULCRUM_*
// environment variable.
//
// Imports: it wires the API and the agent together, so nothing but
// cmd/fulcrum imports it (internal/importrules enforces this).
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/fulcrumlb/fulcrum/api"
	"github.com/fulcrumlb/fulcrum/api/store"
	"github.com/fulcrumlb/fulcrum/internal/secretbox"
	"github.com/fulcrumlb/fulcrum/internal/telemetry"
)

// Version is set at build time with -ldflags.
var Version = "dev"

const usage = `fulcrum — a self-hosted, cloud-style load balancer service.

Usage:
  fulcrum api       serve the HTTP API (migrates the database first)
  fulcrum agent     run a dataplane agent (HAProxy) on this node
  fulcrum migrate   apply pending database migrations
  fulcrum admin     manage tenants, tokens and node groups without SQL
  fulcrum dev       run the whole stack locally (what 'make run' does)
  fulcrum version   print the version

Run 'fulcrum <command> -h' for a command's flags.
`

// Main runs the command line and returns the process exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch args[0] {
	case "api":
		err = runAPI(ctx, args[1:], stderr)
	case "agent":
		err = runAgent(ctx, args[1:], stderr)
	case "migrate":
		err = runMigrate(ctx, args[1:], stdout, stderr)
	case "admin":
		err = runAdmin(ctx, args[1:], stdout, stderr)
	case "dev":
		err = runDev(ctx, args[1:], stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, Version)
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage)
	default:
		fmt.Fprintf(stderr, "fulcrum: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "fulcrum %s: %v\n", args[0], err)
		return 1
	}
	return 0
}

func env(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// dbFlag registers --database-url (FULCRUM_DATABASE_URL).
func dbFlag(fs *flag.FlagSet) *string {
	return secretFlag(fs, "database-url", "FULCRUM_DATABASE_URL",
		"Postgres URL, e.g. postgres://fulcrum:PASSWORD@db.example:5432/fulcrum?sslmode=require")
}

// secretFlag registers a string flag defaulting to the environment variable
// envName whose value -h never prints (flag.PrintDefaults shows a flag's
// default, which would be the secret).
func secretFlag(fs *flag.FlagSet, name, envName, usage string) *string {
	p := fs.String(name, "", usage+" (env "+envName+"; its value is not shown here)")
	*p = os.Getenv(envName)
	return p
}

// setUsage makes -h print a synopsis and what the command does before its flags.
func setUsage(fs *flag.FlagSet, synopsis, about string) {
	fs.Usage = func() {
		out := fs.Output()
		fmt.Fprintf(out, "Usage: %s\n\n%s\nFlags (a flag given overrides its environment variable):\n", synopsis, about)
		fs.PrintDefaults()
	}
}

func openStore(ctx context.Context, url string) (*store.Store, error) {
	if url == "" {
		return nil, errors.New("no database: set FULCRUM_DATABASE_URL or --database-url")
	}
	return store.Open(ctx, url)
}

func newLogger(w io.Writer, level string) *slog.Logger {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		l = slog.LevelInfo
	}
	return telemetry.NewLogger(w, l)
}

// loadSecretBox reads the key that encrypts private keys at rest, from
// FULCRUM_SECRET_KEY (base64) or a file.
func loadSecretBox(key, file string) (*secretbox.Box, error) {
	if key == "" && file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("read secret key file: %w", err)
		}
		key = strings.TrimSpace(string(b))
	}
	if key == "" {
		return nil, errors.New("no secret key: set FULCRUM_SECRET_KEY (base64 of 32 bytes; `openssl rand -base64 32`) or FULCRUM_SECRET_KEY_FILE")
	}
	raw, err := secretbox.LoadKey(key)
	if err != nil {
		return nil, fmt.Errorf("secret key: %w", err)
	}
	return secretbox.New(raw)
}

func runMigrate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("migrate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	setUsage(fs, "fulcrum migrate [flags]", `Applies the pending database migrations and prints the schema version. Safe to
run while API replicas are up (an advisory lock serializes migrations); 'fulcrum
api' also migrates at start.
`)
	dbURL := dbFlag(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	st, err := openStore(ctx, *dbURL)
	if err != nil {
		return err
	}
	defer st.Close()
	v, err := st.Migrate(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "database at schema version %d\n", v)
	return nil
}

func runAPI(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("api", flag.ContinueOnError)
	fs.SetOutput(stderr)
	setUsage(fs, "fulcrum api [flags]", `Serves the HTTP API (OpenAPI document at /openapi.yaml; /healthz, /readyz and
/metrics need no token). Migrates the database first. Stateless: run as many
replicas as needed against one database, all with the same secret key (a
certificate's private key written through one replica is read by the others).
OTEL_EXPORTER_OTLP_ENDPOINT and the other OTEL_* variables export traces.
`)
	dbURL := dbFlag(fs)
	addr := fs.String("addr", env("FULCRUM_API_ADDR", api.AddrDefault), "listen address (env FULCRUM_API_ADDR)")
	key := secretFlag(fs, "secret-key", "FULCRUM_SECRET_KEY",
		"base64 of 32 bytes encrypting private keys at rest (openssl rand -base64 32); the same on every replica")
	keyFile := fs.String("secret-key-file", env("FULCRUM_SECRET_KEY_FILE", ""), "file holding the secret key (env FULCRUM_SECRET_KEY_FILE)")
	logLevel := fs.String("log-level", env("FULCRUM_LOG_LEVEL", "info"), "debug, info, warn or error (env FULCRUM_LOG_LEVEL)")
	haproxyBin := fs.String("haproxy", env("FULCRUM_HAPROXY", "haproxy"),
		"haproxy binary dry runs check the affected load balancer with; empty or not found: that check is skipped (env FULCRUM_HAPROXY)")
	reqTimeout := fs.String("request-timeout", env("FULCRUM_API_REQUEST_TIMEOUT", api.RequestTimeoutDefault.String()),
		"deadline of every request; one not answered by then gets 503 with Retry-After (snapshot long-polls get their wait on top) (env FULCRUM_API_REQUEST_TIMEOUT)")
	stmtTimeout := fs.String("db-statement-timeout", env("FULCRUM_DB_STATEMENT_TIMEOUT", store.StatementTimeoutDefault.String()),
		"Postgres statement_timeout of the API's connections (env FULCRUM_DB_STATEMENT_TIMEOUT)")
	lockTimeout := fs.String("db-lock-timeout", env("FULCRUM_DB_LOCK_TIMEOUT", store.LockTimeoutDefault.String()),
		"Postgres lock_timeout of the API's connections (env FULCRUM_DB_LOCK_TIMEOUT)")
	rateTenant := fs.String("rate-limit-tenant", env("FULCRUM_RATE_LIMIT_TENANT", api.RateLimitTenantDefault.String()),
		"requests a second and burst each tenant token may make, per API replica, as <rate>:<burst>; 0: no limit (env FULCRUM_RATE_LIMIT_TENANT)")
	rateNode := fs.String("rate-limit-node", env("FULCRUM_RATE_LIMIT_NODE", api.RateLimitNodeDefault.String()),
		"the same for each node token (env FULCRUM_RATE_LIMIT_NODE)")
	rateAdmin := fs.String("rate-limit-admin", env("FULCRUM_RATE_LIMIT_ADMIN", api.RateLimitAdminDefault.String()),
		"the same for each admin token (env FULCRUM_RATE_LIMIT_ADMIN)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var cfg api.Config
	var opts store.Options
	var errs []error
	for _, d := range []struct {
		name string
		in   string
		out  *time.Duration
	}{{"request-timeout", *reqTimeout, &cfg.RequestTimeout}, {"db-statement-timeout", *stmtTimeout, &opts.StatementTimeout}, {"db-lock-timeout", *lockTimeout, &opts.LockTimeout}} {
		v, err := time.ParseDuration(d.in)
		if err != nil || v <= 0 {
			errs = append(errs, fmt.Errorf("--%s %q: want a positive duration such as 10s", d.name, d.in))
			continue
		}
		*d.out = v
	}
	cfg.RateLimits = map[string]api.RateLimit{}
	for kind, in := range map[string]string{store.TokenTenant: *rateTenant, store.TokenNode: *rateNode, store.TokenAdmin: *rateAdmin} {
		l, err := api.ParseRateLimit(in)
		if err != nil {
			errs = append(errs, fmt.Errorf("--rate-limit-%s: %w", kind, err))
			continue
		}
		cfg.RateLimits[kind] = l
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	log := newLogger(stderr, *logLevel)
	box, err := loadSecretBox(*key, *keyFile)
	if err != nil {
		return err
	}
	tel, err := telemetry.Setup(ctx, "fulcrum-api", Version, telemetry.WithLogger(log))
	if err != nil {
		return fmt.Errorf("telemetry: %w", err)
	}
	defer tel.Shutdown(context.WithoutCancel(ctx)) //nolint:errcheck
	log = tel.Logger(log)
	if *dbURL == "" {
		return errors.New("no database: set FULCRUM_DATABASE_URL or --database-url")
	}
	st, err := store.OpenWith(ctx, *dbURL, opts)
	if err != nil {
		return err
	}
	defer st.Close()
	v, err := st.Migrate(ctx)
	if err != nil {
		return err
	}
	log.Info("database migrated", "schema_version", v)
	cfg.Addr, cfg.HAProxy = *addr, *haproxyBin
	srv, err := api.New(cfg, st, box, log, tel)
	if err != nil {
		return err
	}
	return srv.ListenAndServe(ctx)
}
