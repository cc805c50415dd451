// Package cli implements the fulcrum command's subcommands; cmd/fulcrum only
// calls Main. Configuration comes from flags, each defaulting to a FULCRUM_*
// environment variable.
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
	return fs.String("database-url", env("FULCRUM_DATABASE_URL", ""), "Postgres URL (env FULCRUM_DATABASE_URL)")
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
	dbURL := dbFlag(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	st, err := openStore(ctx, *dbURL)
	if err != nil {
		return err
	}
	defer st.Close()
	v, err := store.Migrate(ctx, st.Pool)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "database at schema version %d\n", v)
	return nil
}

func runAPI(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("api", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dbURL := dbFlag(fs)
	addr := fs.String("addr", env("FULCRUM_API_ADDR", api.AddrDefault), "listen address (env FULCRUM_API_ADDR)")
	key := fs.String("secret-key", env("FULCRUM_SECRET_KEY", ""), "base64 key encrypting private keys at rest (env FULCRUM_SECRET_KEY)")
	keyFile := fs.String("secret-key-file", env("FULCRUM_SECRET_KEY_FILE", ""), "file holding the secret key (env FULCRUM_SECRET_KEY_FILE)")
	logLevel := fs.String("log-level", env("FULCRUM_LOG_LEVEL", "info"), "debug, info, warn or error (env FULCRUM_LOG_LEVEL)")
	haproxyBin := fs.String("haproxy", env("FULCRUM_HAPROXY", "haproxy"),
		"haproxy binary dry runs check the affected load balancer with; empty or not found: that check is skipped (env FULCRUM_HAPROXY)")
	if err := fs.Parse(args); err != nil {
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
	st, err := openStore(ctx, *dbURL)
	if err != nil {
		return err
	}
	defer st.Close()
	v, err := store.Migrate(ctx, st.Pool)
	if err != nil {
		return err
	}
	log.Info("database migrated", "schema_version", v)
	srv, err := api.New(api.Config{Addr: *addr, HAProxy: *haproxyBin}, st, box, log, tel)
	if err != nil {
		return err
	}
	return srv.ListenAndServe(ctx)
}
