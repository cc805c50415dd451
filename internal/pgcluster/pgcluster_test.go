package pgcluster

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// testBase makes a directory for test clusters that the postgres user can
// traverse (os.MkdirTemp and t.TempDir make mode 0700 directories), and
// removes it, stopping any cluster left inside, at the end of the test.
func testBase(t *testing.T, parent string) string {
	t.Helper()
	base, err := os.MkdirTemp(parent, "pgcluster-test-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	return base
}

func stopOnCleanup(t *testing.T, c *Cluster) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := c.Stop(ctx); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
}

func selectOne(t *testing.T, url string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("connect %s: %v", url, err)
	}
	defer conn.Close(ctx)
	var n int
	if err := conn.QueryRow(ctx, "SELECT 1").Scan(&n); err != nil || n != 1 {
		t.Fatalf("SELECT 1 on %s: %d, %v", url, n, err)
	}
}

func TestBinDir(t *testing.T) {
	dir, err := BinDir()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"pg_ctl", "initdb", "postgres"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Errorf("BinDir() = %s: %v", dir, err)
		}
	}
}

func TestURL(t *testing.T) {
	c := &Cluster{Port: 5433}
	if got, want := c.URL("app"), "postgres://postgres@127.0.0.1:5433/app?sslmode=disable"; got != want {
		t.Errorf("URL = %q, want %q", got, want)
	}
}

func TestOpenRejectsShellCharacters(t *testing.T) {
	if _, err := Open("/tmp/a$b", 5432); err == nil {
		t.Error("Open accepted a data directory with $")
	}
}

// TestLifecycle exercises Init, Start, reuse, CreateDatabase, Stop and a
// failed start. The data directory is deeper than a Unix socket path allows,
// so the server runs without a socket, and it has missing parents that Init
// must create.
func TestLifecycle(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	base := testBase(t, "")
	long := "a-directory-name-long-enough-to-push-the-socket-path-past-107-bytes with spaces"
	dir := filepath.Join(base, long, "pg", "data")
	if len(dir) <= maxSocketDir {
		t.Fatalf("test directory %s too short", dir)
	}
	c, err := Open(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	c.Fast = true
	if err := c.Init(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Init(ctx); err != nil { // already initialized: no-op
		t.Fatalf("second Init: %v", err)
	}
	if os.Geteuid() == 0 {
		for _, p := range []string{filepath.Join(base, long), filepath.Join(base, long, "pg"), dir} {
			fi, err := os.Stat(p)
			if err != nil {
				t.Fatal(err)
			}
			if uid := fi.Sys().(*syscall.Stat_t).Uid; int(uid) != c.uid {
				t.Errorf("%s owned by uid %d, want postgres (%d)", p, uid, c.uid)
			}
		}
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("data directory mode: %v, %v", fi.Mode(), err)
	}

	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	stopOnCleanup(t, c)
	if c.Port == 0 {
		t.Fatal("Start left Port 0")
	}
	selectOne(t, c.URL("postgres"))

	// Start on a running cluster reuses it, adopting its port.
	again, err := Open(dir, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := again.Start(ctx); err != nil {
		t.Fatalf("Start of a running cluster: %v", err)
	}
	if again.Port != c.Port {
		t.Errorf("reused cluster: Port = %d, want %d", again.Port, c.Port)
	}

	for range 2 {
		if err := c.CreateDatabase(ctx, "My-App"); err != nil {
			t.Fatal(err)
		}
	}
	selectOne(t, c.URL("My-App"))

	if err := c.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Stop(ctx); err != nil {
		t.Fatalf("Stop of a stopped cluster: %v", err)
	}

	// A start that fails reports the end of the server log.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := c.Port
	c.Port = l.Addr().(*net.TCPAddr).Port
	err = c.Start(ctx)
	if err == nil {
		t.Fatal("Start on a busy port succeeded")
	}
	if !strings.Contains(err.Error(), "could not bind") || !strings.Contains(err.Error(), strconv.Itoa(c.Port)) {
		t.Errorf("Start error lacks the log tail: %v", err)
	}
	t.Logf("expected start failure: %v", err)

	c.Port = port
	if err := c.Start(ctx); err != nil {
		t.Fatalf("restart: %v", err)
	}
	selectOne(t, c.URL("My-App"))
}

// TestInRepository puts a cluster inside the source tree, as a developer's
// .fulcrum/ directory would be: the checkout's parents must be traversable
// by the postgres user (CI clones under /tmp or /work with mode 755). If
// they are not, the error must say so.
func TestInRepository(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	base := testBase(t, ".")
	c, err := Open(filepath.Join(base, ".fulcrum", "pg"), 0)
	if err != nil {
		t.Fatal(err)
	}
	c.Fast = true
	err = c.Init(ctx)
	if errors.Is(err, ErrNotTraversable) {
		t.Skipf("checkout not traversable by postgres, and the error says so: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	stopOnCleanup(t, c)
	if _, err := os.Stat(filepath.Join(c.Dir, ".s.PGSQL."+strconv.Itoa(c.Port))); err != nil && len(c.Dir) <= maxSocketDir {
		t.Errorf("no Unix socket in the data directory: %v", err)
	}
	selectOne(t, c.URL("postgres"))
}

func TestNotTraversable(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("only root runs PostgreSQL as another user")
	}
	t.Parallel()
	base := testBase(t, "")
	closed := filepath.Join(base, "closed")
	if err := os.Mkdir(closed, 0o700); err != nil {
		t.Fatal(err)
	}
	c, err := Open(filepath.Join(closed, "data"), 0)
	if err != nil {
		t.Fatal(err)
	}
	err = c.Init(context.Background())
	if !errors.Is(err, ErrNotTraversable) || !strings.Contains(err.Error(), closed) {
		t.Fatalf("Init under a 0700 root directory: %v", err)
	}
	if _, err := os.Lstat(filepath.Join(closed, "data")); err == nil {
		t.Error("Init created the data directory although postgres cannot reach it")
	}
	t.Log(err)
}

// TestFreezeRestart: a frozen cluster accepts no query until thawed, and
// Restart brings it back on the same port with its data.
func TestFreezeRestart(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c, err := Open(filepath.Join(testBase(t, ""), "data"), 0)
	if err != nil {
		t.Fatal(err)
	}
	c.Fast = true
	if err := c.Init(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	stopOnCleanup(t, c)
	if err := c.CreateDatabase(ctx, "kept"); err != nil {
		t.Fatal(err)
	}

	pids, err := c.PIDs()
	if err != nil || len(pids) < 2 {
		t.Fatalf("PIDs = %v, %v; want the postmaster and its children", pids, err)
	}
	thaw, err := c.Freeze()
	if err != nil {
		t.Fatal(err)
	}
	qctx, qcancel := context.WithTimeout(ctx, time.Second)
	_, err = pgx.Connect(qctx, c.URL("postgres"))
	qcancel()
	if err == nil {
		t.Error("connected to a frozen cluster")
	}
	if err := thaw(); err != nil {
		t.Fatal(err)
	}
	selectOne(t, c.URL("postgres"))

	port := c.Port
	if err := c.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	if c.Port != port {
		t.Errorf("port %d after restart, want %d", c.Port, port)
	}
	selectOne(t, c.URL("kept"))
	after, err := c.PIDs()
	if err != nil || after[0] == pids[0] {
		t.Errorf("postmaster %v after restart, was %d (%v)", after, pids[0], err)
	}
}
