package acceptance

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/fulcrumlb/fulcrum/internal/teststack"
)

// extAgent is `fulcrum agent` run as a separate process on one state dir:
// the lifecycle tests stop, kill and start it again on the same state
// directory, next to the HAProxy it leaves behind.
type extAgent struct {
	t        *testing.T
	bin      string
	args     []string
	StateDir string
	logPath  string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	runs int
}

// newExtAgent prepares an agent named name against s; Start runs it. At the
// end of the test the agent is killed and every HAProxy of its state dir
// stopped.
func newExtAgent(t *testing.T, s *stack, name string) *extAgent {
	t.Helper()
	dir, err := os.MkdirTemp("", "fl-") // short: unix socket paths are limited
	if err != nil {
		t.Fatal(err)
	}
	a := &extAgent{t: t, bin: teststack.FulcrumBinary(t), StateDir: dir, logPath: filepath.Join(dir, "agent-log.txt"),
		args: []string{"agent", "--endpoint", s.Endpoint, "--token", s.NodeToken, "--node-name", name,
			"--state-dir", dir, "--poll-wait", pollWait.String(), "--report-interval", "300ms", "--log-level", "debug",
			// No fixed ports: tests run side by side (and beside `make run`).
			"--metrics-addr=", "--prometheus-addr="}}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("agent log (last 8 KiB):\n%s", a.logTail(8<<10))
		}
		a.Kill()
		for _, pid := range haproxyOf(dir) {
			_ = syscall.Kill(-pid, syscall.SIGKILL)
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		deadline := time.Now().Add(5 * time.Second)
		for len(haproxyOf(dir)) > 0 && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		os.RemoveAll(dir)
	})
	return a
}

// Start runs the agent; it must not be running.
func (a *extAgent) Start() {
	a.t.Helper()
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.cmd != nil {
		a.t.Fatal("agent already running")
	}
	f, err := os.OpenFile(a.logPath, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		a.t.Fatal(err)
	}
	a.runs++
	fmt.Fprintf(f, "=== run %d\n", a.runs)
	cmd := exec.Command(a.bin, a.args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = append(os.Environ(), "OTEL_TRACES_EXPORTER=none", "OTEL_METRICS_EXPORTER=none")
	if err := cmd.Start(); err != nil {
		f.Close()
		a.t.Fatal(err)
	}
	f.Close()
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	a.cmd, a.done = cmd, done
}

// Signal sends sig to the agent and waits (bounded) for it to exit.
func (a *extAgent) Signal(sig syscall.Signal) {
	a.t.Helper()
	a.mu.Lock()
	cmd, done := a.cmd, a.done
	a.cmd = nil
	a.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		a.t.Errorf("agent did not exit within 30s of %v", sig)
	}
}

// Kill is Signal(SIGKILL).
func (a *extAgent) Kill() { a.Signal(syscall.SIGKILL) }

// Exited reports whether the running agent has exited on its own.
func (a *extAgent) Exited() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.done == nil {
		return true
	}
	select {
	case <-a.done:
		return true
	default:
		return false
	}
}

// runLog is what the current run has logged so far.
func (a *extAgent) runLog() string {
	b, _ := os.ReadFile(a.logPath)
	s := string(b)
	if i := strings.LastIndex(s, "=== run "); i >= 0 {
		s = s[i:]
	}
	return s
}

func (a *extAgent) logTail(n int) string {
	b, _ := os.ReadFile(a.logPath)
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// WaitServing waits until the current run has HAProxy up (started or taken
// over) and has registered with the API.
func (a *extAgent) WaitServing() {
	a.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		l := a.runLog()
		if (strings.Contains(l, "took over the running haproxy") || strings.Contains(l, "haproxy master started")) &&
			strings.Contains(l, `"msg":"registered"`) {
			return
		}
		if a.Exited() {
			a.t.Fatalf("agent exited:\n%s", a.logTail(4<<10))
		}
		time.Sleep(20 * time.Millisecond)
	}
	a.t.Fatalf("agent not serving within 30s:\n%s", a.logTail(4<<10))
}

// haproxyOf lists the HAProxy processes whose command line names dir
// (/proc scan), masters and workers alike.
func haproxyOf(dir string) []int {
	var out []int
	for _, p := range scanHAProxy(dir) {
		out = append(out, p[0])
	}
	return out
}

// scanHAProxy returns [pid, ppid] of every haproxy process whose command line
// names dir.
func scanHAProxy(dir string) [][2]int {
	ents, _ := os.ReadDir("/proc")
	var out [][2]int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cl, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil || len(cl) == 0 {
			continue
		}
		args := strings.Split(string(cl), "\x00")
		if !strings.Contains(filepath.Base(args[0]), "haproxy") || !bytes.Contains(cl, []byte(dir+"/")) {
			continue
		}
		st, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		s := string(st)
		i := strings.LastIndexByte(s, ')')
		f := strings.Fields(s[i+2:])
		if f[0] == "Z" || f[0] == "X" {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		out = append(out, [2]int{pid, ppid})
	}
	return out
}

// mastersOf lists the HAProxy masters of dir: its haproxy processes whose
// parent is not one of them.
func mastersOf(dir string) []int {
	procs := scanHAProxy(dir)
	in := map[int]bool{}
	for _, p := range procs {
		in[p[0]] = true
	}
	var out []int
	for _, p := range procs {
		if !in[p[1]] {
			out = append(out, p[0])
		}
	}
	slices.Sort(out)
	return out
}

// masterCLIPid asks the master CLI of dir (`show proc`) for the master's pid.
func masterCLIPid(dir string) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", filepath.Join(dir, "run", "master.sock"))
	if err != nil {
		return 0, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := io.WriteString(c, "show proc\n"); err != nil {
		return 0, err
	}
	_ = c.(*net.UnixConn).CloseWrite() // the master CLI answers once our side is done
	b, err := io.ReadAll(c)
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && f[1] == "master" {
			return strconv.Atoi(f[0])
		}
	}
	return 0, fmt.Errorf("no master in `show proc`: %q", b)
}

// loadLoop sends requests to url from a few clients, each on a fresh
// connection, until Stop. It counts requests and failures and keeps the
// first failures.
type loadLoop struct {
	sent, failed atomic.Int64
	mu           sync.Mutex
	errs         []string
	quit         chan struct{}
	wg           sync.WaitGroup
	started      time.Time
}

func startLoad(url string, clients int) *loadLoop {
	l := &loadLoop{quit: make(chan struct{}), started: time.Now()}
	for i := 0; i < clients; i++ {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
			for {
				select {
				case <-l.quit:
					return
				default:
				}
				l.sent.Add(1)
				if err := getOK(c, url); err != nil {
					l.failed.Add(1)
					l.mu.Lock()
					if len(l.errs) < 5 {
						l.errs = append(l.errs, time.Now().Format("15:04:05.000")+" "+err.Error())
					}
					l.mu.Unlock()
				}
				time.Sleep(5 * time.Millisecond)
			}
		}()
	}
	return l
}

// Stop ends the load and returns requests sent, failed, the first errors and
// how long it ran.
func (l *loadLoop) Stop() (sent, failed int64, errs []string, d time.Duration) {
	close(l.quit)
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.sent.Load(), l.failed.Load(), l.errs, time.Since(l.started)
}

func getOK(c *http.Client, url string) error {
	res, err := c.Get(url)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	_, err = io.Copy(io.Discard, res.Body)
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d", res.StatusCode)
	}
	return err
}

// listenerPIDs lists the pids `ss` shows listening on addr (ip:port).
func listenerPIDs(t *testing.T, addr string) []int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ss", "-Hltnp", "src "+addr).Output()
	if err != nil {
		t.Skipf("ss: %v", err)
	}
	var pids []int
	for _, m := range ssPidRE.FindAllStringSubmatch(string(out), -1) {
		pid, _ := strconv.Atoi(m[1])
		if !slices.Contains(pids, pid) {
			pids = append(pids, pid)
		}
	}
	slices.Sort(pids)
	return pids
}

var ssPidRE = regexp.MustCompile(`pid=(\d+)`)

// ppidOf reads pid's parent from /proc.
func ppidOf(pid int) int {
	st, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	s := string(st)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	ppid, _ := strconv.Atoi(f[1])
	return ppid
}

// diagnose describes the node for a failure on the listener addr (ip:port):
// the HAProxy processes of the state dir (/proc), the master CLI's `show
// proc`, who listens on addr (`ss`), the revision of the state on disk, the
// frontends and binds of haproxy.cfg, and the tails of HAProxy's output and
// of the agent's log.
func (a *extAgent) diagnose(addr string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "haproxy processes of %s [pid ppid]: %v; masters: %v\n", a.StateDir, scanHAProxy(a.StateDir), mastersOf(a.StateDir))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if c, err := (&net.Dialer{}).DialContext(ctx, "unix", filepath.Join(a.StateDir, "run", "master.sock")); err != nil {
		fmt.Fprintf(&b, "master CLI: %v\n", err)
	} else {
		_ = c.SetDeadline(time.Now().Add(2 * time.Second))
		_, _ = io.WriteString(c, "show proc\n")
		_ = c.(*net.UnixConn).CloseWrite()
		out, err := io.ReadAll(c)
		c.Close()
		fmt.Fprintf(&b, "master CLI `show proc` (%v):\n%s\n", err, out)
	}
	out, err := exec.CommandContext(ctx, "ss", "-Hltnp", "src "+addr).CombinedOutput()
	fmt.Fprintf(&b, "ss -ltnp src %s (%v):\n%s\n", addr, err, out)
	if st, err := os.ReadFile(filepath.Join(a.StateDir, "snapshot.json")); err != nil {
		fmt.Fprintf(&b, "snapshot.json: %v\n", err)
	} else if m := regexp.MustCompile(`"revision":(\d+)`).FindSubmatch(st); m != nil {
		fmt.Fprintf(&b, "snapshot.json: revision %s\n", m[1])
	}
	if cfg, err := os.ReadFile(filepath.Join(a.StateDir, "haproxy.cfg")); err != nil {
		fmt.Fprintf(&b, "haproxy.cfg: %v\n", err)
	} else {
		b.WriteString("haproxy.cfg (frontends, binds):\n")
		for _, l := range strings.Split(string(cfg), "\n") {
			if t := strings.TrimSpace(l); strings.HasPrefix(t, "frontend ") || strings.HasPrefix(t, "bind ") {
				b.WriteString(l + "\n")
			}
		}
	}
	hl, _ := os.ReadFile(filepath.Join(a.StateDir, "run", "haproxy.log"))
	if len(hl) > 4<<10 {
		hl = hl[len(hl)-4<<10:]
	}
	fmt.Fprintf(&b, "haproxy output (last 4 KiB):\n%s\n", hl)
	fmt.Fprintf(&b, "agent log (last 16 KiB):\n%s", a.logTail(16<<10))
	return b.String()
}

// serves sends n requests to url (a listener of the agent's node) and counts
// answers per backend; on the first failure it fails the test with what the
// node looked like (diagnose).
func (a *extAgent) serves(c *http.Client, url string, n int) map[string]int {
	a.t.Helper()
	out := map[string]int{}
	for i := 0; i < n; i++ {
		name, err := teststack.Fetch(c, url)
		if err != nil {
			addr := strings.TrimSuffix(strings.TrimPrefix(url, "http://"), "/")
			a.t.Fatalf("request %d to %s: %v\n%s", i, url, err, a.diagnose(addr))
		}
		out[name]++
	}
	return out
}
