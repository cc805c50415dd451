// Package pgtest gives tests real, empty PostgreSQL databases.
//
// A package whose tests need a database calls Main from its TestMain:
//
//	func TestMain(m *testing.M) { pgtest.Main(m) }
//
// and each test asks for its own database:
//
//	pool, err := pgxpool.New(ctx, pgtest.NewDatabase(t))
//
// If FULCRUM_TEST_DATABASE_URL is set (a URL or keyword/value connection
// string whose role may create databases), databases are created on that
// server. Otherwise the first NewDatabase of the test process starts a
// private, throwaway cluster (package pgcluster, fsync off) in a fresh
// directory under /tmp, on a free port; Main stops it and deletes the
// directory when the tests are done. A later test process also removes
// clusters left behind by test processes that died (panic, timeout, kill).
//
// When PostgreSQL is not installed and no URL is given, NewDatabase fails
// the test: these tests never skip.
//
// Imports: of Fulcrum's, internal/pgcluster only; only tests import it
// (internal/importrules enforces both).
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/fulcrumlb/fulcrum/internal/pgcluster"
)

// EnvURL names the environment variable pointing at an existing server.
const EnvURL = "FULCRUM_TEST_DATABASE_URL"

// dirPrefix starts the names of private cluster directories.
const dirPrefix = "fulcrum-pgtest-"

// ownerFile, in a private cluster's directory, holds the test process's pid.
const ownerFile = "owner.pid"

type server struct {
	admin string                   // connection string for CREATE/DROP DATABASE
	dbURL func(name string) string // connection string of database name
}

var (
	once     sync.Once
	srv      *server
	setupErr error

	// The private cluster, if one was started.
	cluster    *pgcluster.Cluster
	clusterDir string
)

// Main runs the tests, stops the private cluster if one was started, and
// exits with the tests' status. Call it from TestMain.
func Main(m *testing.M) {
	code := m.Run()
	if err := shutdown(); err != nil {
		fmt.Fprintln(os.Stderr, "pgtest:", err)
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}

// NewDatabase creates a new, empty database and returns its connection
// string; the database is dropped (WITH (FORCE), closing leftover sessions)
// when the test and its subtests finish.
func NewDatabase(tb testing.TB) string {
	tb.Helper()
	once.Do(func() { srv, setupErr = setup() })
	if setupErr != nil {
		tb.Fatalf("pgtest: no PostgreSQL for tests: %v", setupErr)
	}

	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		tb.Fatalf("pgtest: %v", err)
	}
	name := "fulcrum_test_" + hex.EncodeToString(b[:])
	ident := pgx.Identifier{name}.Sanitize()

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := adminExec(ctx, srv.admin, "CREATE DATABASE "+ident); err != nil {
		tb.Fatalf("pgtest: create database %s: %v", name, err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := adminExec(ctx, srv.admin, "DROP DATABASE IF EXISTS "+ident+" WITH (FORCE)"); err != nil {
			tb.Errorf("pgtest: drop database %s: %v", name, err)
		}
	})
	return srv.dbURL(name)
}

func adminExec(ctx context.Context, connString, sql string) error {
	conn, err := pgx.Connect(ctx, connString)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	_, err = conn.Exec(ctx, sql)
	return err
}

func setup() (*server, error) {
	if s := os.Getenv(EnvURL); s != "" {
		return external(s)
	}
	return private()
}

// external uses the server at connString, giving each database the same
// host and credentials.
func external(connString string) (*server, error) {
	if _, err := pgx.ParseConfig(connString); err != nil {
		return nil, fmt.Errorf("%s: %w", EnvURL, err)
	}
	if strings.HasPrefix(connString, "postgres://") || strings.HasPrefix(connString, "postgresql://") {
		u, err := url.Parse(connString)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", EnvURL, err)
		}
		return &server{admin: connString, dbURL: func(name string) string {
			v := *u
			v.Path, v.RawPath = "/"+name, ""
			return v.String()
		}}, nil
	}
	// keyword/value form: a later dbname overrides an earlier one.
	return &server{admin: connString, dbURL: func(name string) string {
		return connString + " dbname=" + name
	}}, nil
}

// NewCluster starts a private, throwaway cluster (fsync off) for one test
// alone — for tests that stop, restart or freeze their database — and returns
// it running; it is stopped and its directory removed when the test ends.
// Unlike NewDatabase it never uses FULCRUM_TEST_DATABASE_URL: a test may
// only ever disturb a server it started itself.
func NewCluster(tb testing.TB) *pgcluster.Cluster {
	tb.Helper()
	c, dir, err := startCluster()
	if err != nil {
		tb.Fatalf("pgtest: no PostgreSQL cluster for the test: %v", err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := c.Stop(ctx); err != nil {
			tb.Errorf("pgtest: %v", err)
			return
		}
		os.RemoveAll(dir)
	})
	return c
}

// private starts the shared throwaway cluster under /tmp.
func private() (*server, error) {
	c, dir, err := startCluster()
	if err != nil {
		return nil, err
	}
	cluster, clusterDir = c, dir
	return &server{admin: c.URL("postgres"), dbURL: c.URL}, nil
}

// startCluster starts a throwaway cluster in a new directory under /tmp.
func startCluster() (*pgcluster.Cluster, string, error) {
	if _, err := pgcluster.BinDir(); err != nil {
		return nil, "", fmt.Errorf("%w (or set %s to a server where the role may CREATE DATABASE)", err, EnvURL)
	}
	base := os.TempDir()
	if os.Geteuid() == 0 {
		// PostgreSQL then runs as postgres, which must traverse the parents;
		// $TMPDIR might be private to root.
		base = "/tmp"
	}
	reapStale(base)

	dir, err := os.MkdirTemp(base, dirPrefix)
	if err != nil {
		return nil, "", err
	}
	// MkdirTemp makes mode 0700; the postgres user must enter it when we are root.
	err = os.Chmod(dir, 0o755)
	if err == nil {
		err = os.WriteFile(filepath.Join(dir, ownerFile), []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644)
	}
	if err != nil {
		os.RemoveAll(dir)
		return nil, "", err
	}

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c, err := pgcluster.Open(filepath.Join(dir, "data"), 0)
	if err == nil {
		c.Fast = true
		err = c.Init(ctx)
	}
	// FreePort races with other test processes; retry on a taken port.
	for attempt := 1; err == nil; attempt++ {
		if c.Port, err = pgcluster.FreePort(); err != nil {
			break
		}
		err = c.Start(ctx)
		if err != nil && attempt < 3 && strings.Contains(err.Error(), "Address already in use") {
			err = nil // try another port
			continue
		}
		break
	}
	if err != nil {
		if c != nil {
			c.Stop(ctx)
		}
		os.RemoveAll(dir)
		return nil, "", err
	}
	return c, dir, nil
}

// shutdown stops the private cluster, if any, and removes its directory.
func shutdown() error {
	if cluster == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := cluster.Stop(ctx)
	if err == nil {
		err = os.RemoveAll(clusterDir)
	}
	cluster = nil
	return err
}

// reapStale stops and removes private clusters under base whose test
// process no longer exists. Directories without an owner file (still being
// set up) or of other users are left alone.
func reapStale(base string) {
	owners, _ := filepath.Glob(filepath.Join(base, dirPrefix+"*", ownerFile))
	for _, f := range owners {
		dir := filepath.Dir(f)
		if fi, err := os.Stat(dir); err != nil || int(fi.Sys().(*syscall.Stat_t).Uid) != os.Geteuid() {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || pid <= 0 || !errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		c, err := pgcluster.Open(filepath.Join(dir, "data"), 0)
		if err == nil {
			err = c.Stop(ctx)
		}
		cancel()
		if _, statErr := os.Stat(filepath.Join(dir, "data", "postmaster.pid")); err != nil && statErr == nil {
			continue // a postmaster may still be running there
		}
		os.RemoveAll(dir)
	}
}
