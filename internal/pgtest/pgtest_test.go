package pgtest

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func TestMain(m *testing.M) { Main(m) }

func TestNewDatabaseIndependent(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	urls := []string{NewDatabase(t), NewDatabase(t)}
	if urls[0] == urls[1] {
		t.Fatalf("two NewDatabase calls returned the same database %s", urls[0])
	}
	conns := make([]*pgx.Conn, len(urls))
	for i, u := range urls {
		conn, err := pgx.Connect(ctx, u)
		if err != nil {
			t.Fatalf("connect %s: %v", u, err)
		}
		defer conn.Close(ctx)
		conns[i] = conn
		var one int
		if err := conn.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil || one != 1 {
			t.Fatalf("SELECT 1: %d, %v", one, err)
		}
		var tables int
		if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").Scan(&tables); err != nil || tables != 0 {
			t.Fatalf("new database has %d tables (%v), want none", tables, err)
		}
	}

	// The same table name in both databases holds different rows.
	for i, conn := range conns {
		if _, err := conn.Exec(ctx, "CREATE TABLE t (n int)"); err != nil {
			t.Fatalf("CREATE TABLE in database %d: %v", i, err)
		}
		if _, err := conn.Exec(ctx, "INSERT INTO t VALUES ($1)", i); err != nil {
			t.Fatal(err)
		}
	}
	for i, conn := range conns {
		var n, count int
		if err := conn.QueryRow(ctx, "SELECT min(n), count(*) FROM t").Scan(&n, &count); err != nil {
			t.Fatal(err)
		}
		if n != i || count != 1 {
			t.Errorf("database %d sees n=%d count=%d, want n=%d count=1", i, n, count, i)
		}
	}
}

// TestNewDatabaseDropped checks that a subtest's database is gone after the
// subtest, even with a session still open on it.
func TestNewDatabaseDropped(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	var name string
	t.Run("sub", func(t *testing.T) {
		u := NewDatabase(t)
		conn, err := pgx.Connect(ctx, u)
		if err != nil {
			t.Fatal(err)
		}
		name = conn.Config().Database
		// Left open on purpose: DROP ... WITH (FORCE) must end it.
	})

	conn, err := pgx.Connect(ctx, srv.admin)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT FROM pg_database WHERE datname = $1)", name).Scan(&exists); err != nil {
		t.Fatal(err)
	}
	if exists {
		t.Errorf("database %s still exists after its test", name)
	}
}

func TestExternalURL(t *testing.T) {
	s, err := external("postgres://u:p@db.example:5433/postgres?sslmode=require")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := s.dbURL("fulcrum_test_x"), "postgres://u:p@db.example:5433/fulcrum_test_x?sslmode=require"; got != want {
		t.Errorf("dbURL = %q, want %q", got, want)
	}
	s, err = external("host=db.example user=u dbname=postgres")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := pgx.ParseConfig(s.dbURL("fulcrum_test_x"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Database != "fulcrum_test_x" || cfg.Host != "db.example" || cfg.User != "u" {
		t.Errorf("keyword/value dbURL: database %q host %q user %q", cfg.Database, cfg.Host, cfg.User)
	}
}

func TestReapStale(t *testing.T) {
	base := t.TempDir()
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	mk := func(pid int) string {
		dir, err := os.MkdirTemp(base, dirPrefix)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, ownerFile), []byte(strconv.Itoa(pid)+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	stale, live := mk(dead.Process.Pid), mk(os.Getpid())
	reapStale(base)
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("stale directory survived: %v", err)
	}
	if _, err := os.Stat(live); err != nil {
		t.Errorf("live directory removed: %v", err)
	}
}
