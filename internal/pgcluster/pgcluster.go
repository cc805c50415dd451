// Package pgcluster manages a private PostgreSQL cluster (a data directory
// plus the postmaster serving it) using the server binaries installed on the
// machine: Debian's /usr/lib/postgresql/<version>/bin, or pg_ctl on PATH.
//
// A cluster listens on 127.0.0.1 only, trusts every local connection, and has
// a single superuser named "postgres":
//
//	c, err := pgcluster.Open(".fulcrum/pg", 55432)
//	if err != nil { ... }
//	if err := c.Init(ctx); err != nil { ... }  // initdb, only if needed
//	if err := c.Start(ctx); err != nil { ... } // reuses a running postmaster
//	defer c.Stop(ctx)
//	pool, err := pgxpool.New(ctx, c.URL("postgres"))
//
// PostgreSQL refuses to run as root. When the calling process is root, every
// PostgreSQL binary is run as the "postgres" system user through
// `runuser -u postgres --`; the data directory (and every parent directory
// this package creates for it) is then owned by postgres, and the postgres
// user must be able to traverse (search, "x") every parent of the data
// directory. If it cannot — a parent made by os.MkdirTemp or t.TempDir (mode
// 0700), or /root — Init and Start fail with an error wrapping
// ErrNotTraversable that names the offending directory. When not root, the
// binaries run directly as the calling user.
//
// The postmaster logs to <Dir>/log; Start includes the tail of that log in
// its error when the server does not come up.
//
// Imports: nothing of Fulcrum's (internal/importrules enforces it).
package pgcluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// ErrNotFound is returned (wrapped) by BinDir and Open when no PostgreSQL
// server binaries can be found.
var ErrNotFound = errors.New("no PostgreSQL server binaries found (looked in /usr/lib/postgresql/*/bin and for pg_ctl on PATH); install postgresql: apt-get install postgresql")

// ErrNotTraversable is returned (wrapped) by Init and Start, when running as
// root, if the postgres user cannot reach the data directory because one of
// its parents lacks search permission for it.
var ErrNotTraversable = errors.New("data directory not reachable by the postgres user")

// debianRoot is where Debian installs one directory per PostgreSQL major version.
const debianRoot = "/usr/lib/postgresql"

// preferredMajor is used when several Debian versions are installed.
const preferredMajor = 15

// maxSocketDir is the longest directory that can hold the Unix socket
// "<dir>/.s.PGSQL.<port>" within the 107 usable bytes of sun_path.
const maxSocketDir = 107 - len("/.s.PGSQL.65535")

// Cluster is a PostgreSQL cluster in a private data directory.
//
// The zero value is not usable; call Open.
type Cluster struct {
	// Dir is the absolute path of the data directory.
	Dir string
	// Port is the TCP port the postmaster listens on (127.0.0.1 only). Start
	// picks a free port when it is 0, and replaces it with the port of the
	// running postmaster when it reuses one.
	Port int
	// Fast trades durability for speed (fsync=off, synchronous_commit=off,
	// full_page_writes=off, initdb --no-sync). For tests and throwaway
	// clusters only: a crash of the machine can corrupt the cluster.
	Fast bool

	bin        string // directory holding pg_ctl, initdb, postgres
	asPostgres bool   // run binaries via runuser -u postgres
	runuser    string // path of runuser when asPostgres
	uid, gid   int    // postgres user's ids when asPostgres
}

// BinDir returns the directory holding the PostgreSQL server binaries
// (pg_ctl, initdb, postgres): /usr/lib/postgresql/15/bin if present, else the
// highest /usr/lib/postgresql/<major>/bin, else the directory of pg_ctl found
// on PATH. The error wraps ErrNotFound when there is none.
func BinDir() (string, error) {
	if dirs, _ := filepath.Glob(filepath.Join(debianRoot, "*", "bin")); len(dirs) > 0 {
		type cand struct {
			major int
			dir   string
		}
		var cands []cand
		for _, d := range dirs {
			major, err := strconv.Atoi(filepath.Base(filepath.Dir(d)))
			if err != nil || !hasServerBinaries(d) {
				continue
			}
			cands = append(cands, cand{major, d})
		}
		sort.Slice(cands, func(i, j int) bool { return cands[i].major > cands[j].major })
		for _, c := range cands {
			if c.major == preferredMajor {
				return c.dir, nil
			}
		}
		if len(cands) > 0 {
			return cands[0].dir, nil
		}
	}
	if p, err := exec.LookPath("pg_ctl"); err == nil {
		if p, err = filepath.Abs(p); err == nil {
			d := filepath.Dir(p)
			if hasServerBinaries(d) {
				return d, nil
			}
			// pg_ctl may be a symlink into the real installation (Homebrew, Nix).
			if r, err := filepath.EvalSymlinks(p); err == nil && hasServerBinaries(filepath.Dir(r)) {
				return filepath.Dir(r), nil
			}
		}
	}
	return "", fmt.Errorf("pgcluster: %w", ErrNotFound)
}

func hasServerBinaries(dir string) bool {
	for _, name := range []string{"pg_ctl", "initdb", "postgres"} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil || fi.IsDir() || fi.Mode().Perm()&0o111 == 0 {
			return false
		}
	}
	return true
}

// Open returns a Cluster for the data directory dir (made absolute) serving
// on port (0: pick a free port at Start). It looks up the PostgreSQL binaries
// and, when running as root, the postgres user and runuser, but touches
// nothing on disk.
func Open(dir string, port int) (*Cluster, error) {
	if dir == "" {
		return nil, errors.New("pgcluster: empty data directory")
	}
	if port < 0 || port > 65535 {
		return nil, fmt.Errorf("pgcluster: invalid port %d", port)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("pgcluster: %w", err)
	}
	// pg_ctl hands the data directory and the -o options to /bin/sh, and the
	// server reads unix_socket_directories as a comma-separated list.
	if i := strings.IndexAny(abs, "\"$`\\,'\n"); i >= 0 {
		return nil, fmt.Errorf("pgcluster: data directory %q: unsupported character %q", abs, abs[i])
	}
	bin, err := BinDir()
	if err != nil {
		return nil, err
	}
	c := &Cluster{Dir: abs, Port: port, bin: bin}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, fmt.Errorf("pgcluster: running as root, so PostgreSQL must run as the postgres user, but: %w (install postgresql: apt-get install postgresql)", err)
		}
		c.uid, _ = strconv.Atoi(u.Uid)
		c.gid, _ = strconv.Atoi(u.Gid)
		if c.runuser, err = lookSbin("runuser"); err != nil {
			return nil, fmt.Errorf("pgcluster: running as root, so PostgreSQL must run as the postgres user via runuser (util-linux), but: %w", err)
		}
		c.asPostgres = true
	}
	return c, nil
}

// lookSbin finds name on PATH or in the sbin directories a root PATH may lack.
func lookSbin(name string) (string, error) {
	p, err := exec.LookPath(name)
	if err == nil {
		return p, nil
	}
	for _, d := range []string{"/usr/sbin", "/sbin"} {
		if q, err2 := exec.LookPath(filepath.Join(d, name)); err2 == nil {
			return q, nil
		}
	}
	return "", err
}

// URL returns the connection URL of database db as the postgres superuser
// over TCP.
func (c *Cluster) URL(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", c.Port, url.PathEscape(db))
}

// Init creates the cluster with initdb (trust authentication, superuser
// postgres, UTF8, locale C) unless Dir/PG_VERSION already exists. Missing
// parent directories are created (owned by postgres when running as root).
func (c *Cluster) Init(ctx context.Context) error {
	initialized, err := c.initialized()
	if err != nil {
		return err
	}
	if err := c.checkAccess(ctx); err != nil {
		return err
	}
	if initialized {
		return nil
	}
	if err := c.prepareDir(); err != nil {
		return err
	}
	args := []string{"-D", c.Dir, "--auth=trust", "-U", "postgres", "--encoding=UTF8", "--locale=C"}
	if c.Fast {
		args = append(args, "--no-sync")
	}
	if out, err := c.run(ctx, "initdb", args...); err != nil {
		return fmt.Errorf("pgcluster: initdb %s: %w\n%s", c.Dir, err, indent(out))
	}
	return nil
}

// Start starts the postmaster with pg_ctl and waits until it accepts
// connections. If a postmaster is already running for Dir, it is reused and
// Port is set to the port it listens on. The Unix socket goes into Dir, or is
// disabled when Dir is too long for a socket path (TCP still works).
func (c *Cluster) Start(ctx context.Context) error {
	initialized, err := c.initialized()
	if err != nil {
		return err
	}
	if !initialized {
		return fmt.Errorf("pgcluster: %s is not a PostgreSQL data directory (no PG_VERSION); call Init first", c.Dir)
	}
	if err := c.checkAccess(ctx); err != nil {
		return err
	}
	running, err := c.running(ctx)
	if err != nil {
		return err
	}
	if running {
		if port, err := c.runningPort(); err == nil {
			c.Port = port
		}
		return nil
	}
	if c.Port == 0 {
		if c.Port, err = FreePort(); err != nil {
			return err
		}
	}
	opts := []string{"-p", strconv.Itoa(c.Port)}
	if len(c.Dir) <= maxSocketDir {
		opts = append(opts, "-k", shellQuote(c.Dir))
	} else {
		opts = append(opts, "-c", "unix_socket_directories=''")
	}
	opts = append(opts, "-c", "listen_addresses=127.0.0.1")
	if c.Fast {
		opts = append(opts, "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off")
	}
	logFile := filepath.Join(c.Dir, "log")
	out, err := c.run(ctx, "pg_ctl", "-D", c.Dir, "-o", strings.Join(opts, " "), "-l", logFile, "-w", "start")
	if err != nil {
		return fmt.Errorf("pgcluster: start %s on port %d: %w\n%s\nlast lines of %s:\n%s",
			c.Dir, c.Port, err, indent(out), logFile, indent(tail(logFile, 4096)))
	}
	return nil
}

// Stop stops the postmaster (fast shutdown: open sessions are disconnected)
// and waits for it to exit. It does nothing if no postmaster is running.
func (c *Cluster) Stop(ctx context.Context) error {
	running, err := c.running(ctx)
	if err != nil || !running {
		return err
	}
	if out, err := c.run(ctx, "pg_ctl", "-D", c.Dir, "-m", "fast", "-w", "stop"); err != nil {
		return fmt.Errorf("pgcluster: stop %s: %w\n%s", c.Dir, err, indent(out))
	}
	return nil
}

// Restart restarts the postmaster (pg_ctl restart -m fast: open sessions are
// disconnected, committed work is kept) on the same port and waits until it
// accepts connections again.
func (c *Cluster) Restart(ctx context.Context) error {
	opts := []string{"-p", strconv.Itoa(c.Port)}
	if len(c.Dir) <= maxSocketDir {
		opts = append(opts, "-k", shellQuote(c.Dir))
	} else {
		opts = append(opts, "-c", "unix_socket_directories=''")
	}
	opts = append(opts, "-c", "listen_addresses=127.0.0.1")
	if c.Fast {
		opts = append(opts, "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off")
	}
	logFile := filepath.Join(c.Dir, "log")
	out, err := c.run(ctx, "pg_ctl", "-D", c.Dir, "-o", strings.Join(opts, " "), "-l", logFile, "-m", "fast", "-w", "restart")
	if err != nil {
		return fmt.Errorf("pgcluster: restart %s: %w\n%s\nlast lines of %s:\n%s", c.Dir, err, indent(out), logFile, indent(tail(logFile, 4096)))
	}
	return nil
}

// PIDs returns the process ids of the running postmaster of Dir (first) and
// of its children (backends and auxiliary processes), read from
// postmaster.pid and /proc. Linux only.
func (c *Cluster) PIDs() ([]int, error) {
	b, err := os.ReadFile(filepath.Join(c.Dir, "postmaster.pid"))
	if err != nil {
		return nil, fmt.Errorf("pgcluster: %w", err)
	}
	first, _, _ := strings.Cut(string(b), "\n")
	postmaster, err := strconv.Atoi(strings.TrimSpace(first))
	if err != nil || postmaster <= 0 {
		return nil, fmt.Errorf("pgcluster: bad postmaster.pid in %s", c.Dir)
	}
	pids := []int{postmaster}
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, f := range stats {
		b, err := os.ReadFile(f)
		if err != nil {
			continue // exited meanwhile
		}
		// pid (comm) state ppid ...; comm may hold spaces and parentheses.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		fields := strings.Fields(string(b[i+1:]))
		if len(fields) < 2 {
			continue
		}
		if ppid, err := strconv.Atoi(fields[1]); err == nil && ppid == postmaster {
			if pid, err := strconv.Atoi(filepath.Base(filepath.Dir(f))); err == nil {
				pids = append(pids, pid)
			}
		}
	}
	return pids, nil
}

// Freeze stops (SIGSTOP) the postmaster and every process it has started, so
// the server accepts TCP connections but answers nothing, as a hung host
// would. It returns a function that continues (SIGCONT) exactly those
// processes; call it, once, before Stop.
func (c *Cluster) Freeze() (thaw func() error, err error) {
	// The postmaster first, so it forks nothing new meanwhile.
	pids, err := c.PIDs()
	if err != nil {
		return nil, err
	}
	var stopped []int
	thaw = func() error {
		var errs []error
		for _, pid := range stopped {
			if err := syscall.Kill(pid, syscall.SIGCONT); err != nil && !errors.Is(err, syscall.ESRCH) {
				errs = append(errs, fmt.Errorf("pgcluster: continue %d: %w", pid, err))
			}
		}
		return errors.Join(errs...)
	}
	stop := func(pid int) error {
		if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
			if errors.Is(err, syscall.ESRCH) {
				return nil
			}
			return errors.Join(fmt.Errorf("pgcluster: stop %d: %w", pid, err), thaw())
		}
		stopped = append(stopped, pid)
		return nil
	}
	if err := stop(pids[0]); err != nil {
		return nil, err
	}
	// Now that the postmaster forks no more, its children are final.
	if pids, err = c.PIDs(); err != nil {
		return nil, errors.Join(err, thaw())
	}
	for _, pid := range pids[1:] {
		if err := stop(pid); err != nil {
			return nil, err
		}
	}
	return thaw, nil
}

// CreateDatabase creates database name; it is not an error if it exists.
func (c *Cluster) CreateDatabase(ctx context.Context, name string) error {
	conn, err := pgx.Connect(ctx, c.URL("postgres"))
	if err != nil {
		return fmt.Errorf("pgcluster: create database %s: %w", name, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	_, err = conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42P04" { // duplicate_database
		return nil
	}
	if err != nil {
		return fmt.Errorf("pgcluster: create database %s: %w", name, err)
	}
	return nil
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("pgcluster: free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func (c *Cluster) initialized() (bool, error) {
	_, err := os.Stat(filepath.Join(c.Dir, "PG_VERSION"))
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	default:
		return false, fmt.Errorf("pgcluster: %w", err)
	}
}

// prepareDir creates Dir and its missing parents, hands those to the
// postgres user when root, and makes Dir mode 0700.
func (c *Cluster) prepareDir() error {
	var created []string
	for p := c.Dir; ; p = filepath.Dir(p) {
		if _, err := os.Lstat(p); err == nil {
			break
		} else if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("pgcluster: %w", err)
		}
		created = append(created, p)
		if filepath.Dir(p) == p {
			break
		}
	}
	if err := os.MkdirAll(c.Dir, 0o755); err != nil {
		return fmt.Errorf("pgcluster: %w", err)
	}
	if c.asPostgres {
		for _, p := range created {
			if err := os.Chown(p, c.uid, c.gid); err != nil {
				return fmt.Errorf("pgcluster: %w", err)
			}
		}
		fi, err := os.Stat(c.Dir)
		if err != nil {
			return fmt.Errorf("pgcluster: %w", err)
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != c.uid {
			entries, err := os.ReadDir(c.Dir)
			if err != nil {
				return fmt.Errorf("pgcluster: %w", err)
			}
			if len(entries) > 0 {
				return fmt.Errorf("pgcluster: data directory %s is not empty and not owned by the postgres user (uid %d)", c.Dir, st.Uid)
			}
			if err := os.Chown(c.Dir, c.uid, c.gid); err != nil {
				return fmt.Errorf("pgcluster: %w", err)
			}
		}
	}
	if err := os.Chmod(c.Dir, 0o700); err != nil {
		return fmt.Errorf("pgcluster: %w", err)
	}
	return nil
}

// checkAccess verifies, when running as root, that the postgres user can
// search every existing directory down to Dir. (Those that prepareDir creates
// belong to postgres.)
func (c *Cluster) checkAccess(ctx context.Context) error {
	if !c.asPostgres {
		return nil
	}
	var chain []string
	for p := c.Dir; ; p = filepath.Dir(p) {
		if _, err := os.Lstat(p); err == nil {
			chain = append(chain, p)
		}
		if filepath.Dir(p) == p {
			break
		}
	}
	args := []string{"-u", "postgres", "--", "/bin/sh", "-c",
		`for d; do test -x "$d" || { printf '%s' "$d"; exit 1; }; done`, "sh"}
	for i := len(chain) - 1; i >= 0; i-- {
		args = append(args, chain[i])
	}
	cmd := exec.CommandContext(ctx, c.runuser, args...)
	cmd.Dir = "/"
	out, err := cmd.Output()
	if err == nil {
		return nil
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) || len(out) == 0 {
		return fmt.Errorf("pgcluster: checking that the postgres user can reach %s: %w", c.Dir, err)
	}
	bad := string(out)
	desc := ""
	if fi, err := os.Stat(bad); err == nil {
		desc = fmt.Sprintf(" (mode %s", fi.Mode())
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			owner := strconv.Itoa(int(st.Uid))
			if u, err := user.LookupId(owner); err == nil {
				owner = u.Username
			}
			desc += ", owner " + owner
		}
		desc += ")"
	}
	return fmt.Errorf("pgcluster: %w: PostgreSQL runs as the postgres user (we are root), which cannot enter %s%s on the way to %s; "+
		"put the data directory somewhere the postgres user can traverse (e.g. under /tmp, or a repository checked out with mode 755), "+
		"or grant it access (chmod o+x %s)", ErrNotTraversable, bad, desc, c.Dir, bad)
}

// running reports whether a postmaster is running for Dir (pg_ctl status).
func (c *Cluster) running(ctx context.Context) (bool, error) {
	out, err := c.run(ctx, "pg_ctl", "-D", c.Dir, "status")
	if err == nil {
		return true, nil
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.ExitCode() == 3 { // no server running
		return false, nil
	}
	return false, fmt.Errorf("pgcluster: pg_ctl status %s: %w\n%s", c.Dir, err, indent(out))
}

// runningPort reads the port of the running postmaster from postmaster.pid.
func (c *Cluster) runningPort() (int, error) {
	b, err := os.ReadFile(filepath.Join(c.Dir, "postmaster.pid"))
	if err != nil {
		return 0, err
	}
	lines := strings.Split(string(b), "\n")
	if len(lines) < 4 {
		return 0, errors.New("short postmaster.pid")
	}
	return strconv.Atoi(strings.TrimSpace(lines[3]))
}

// run runs a PostgreSQL binary (as postgres when root) and returns its
// combined output.
func (c *Cluster) run(ctx context.Context, name string, args ...string) ([]byte, error) {
	path := filepath.Join(c.bin, name)
	var cmd *exec.Cmd
	if c.asPostgres {
		cmd = exec.CommandContext(ctx, c.runuser, append([]string{"-u", "postgres", "--", path}, args...)...)
	} else {
		cmd = exec.CommandContext(ctx, path, args...)
	}
	cmd.Dir = "/" // the caller's directory may be closed to postgres
	cmd.Env = cleanEnv()
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	var buf bytes.Buffer
	cmd.Stdout = &buf
	cmd.Stderr = &buf
	err := cmd.Run()
	return buf.Bytes(), err
}

// cleanEnv drops libpq/server variables (PGDATA, PGPORT, PGOPTIONS, ...) that
// would change what the binaries do, and pins the locale of messages.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "PG") || strings.HasPrefix(kv, "LC_") || strings.HasPrefix(kv, "LANG=") || strings.HasPrefix(kv, "LANGUAGE=") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "LC_ALL=C")
}

// shellQuote quotes s for /bin/sh (pg_ctl passes -o through a shell).
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// tail returns about the last n bytes of file, starting at a line boundary.
func tail(file string, n int64) string {
	f, err := os.Open(file)
	if err != nil {
		return fmt.Sprintf("(cannot read log: %v)", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Sprintf("(cannot read log: %v)", err)
	}
	off := fi.Size() - n
	if off < 0 {
		off = 0
	}
	b, err := io.ReadAll(io.NewSectionReader(f, off, fi.Size()-off))
	if err != nil {
		return fmt.Sprintf("(cannot read log: %v)", err)
	}
	if off > 0 {
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			b = b[i+1:]
		}
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return "(log is empty)"
	}
	return string(b)
}

func indent[T ~string | ~[]byte](b T) string {
	s := strings.TrimRight(string(b), "\n")
	if s == "" {
		return ""
	}
	return "    " + strings.ReplaceAll(s, "\n", "\n    ")
}
