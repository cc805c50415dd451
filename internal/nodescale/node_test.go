package nodescale

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/fulcrumlb/fulcrum/dataplane/agent"
	"github.com/fulcrumlb/fulcrum/dataplane/haproxy"
	"github.com/fulcrumlb/fulcrum/internal/secretbox"
	"github.com/fulcrumlb/fulcrum/internal/teststack"
)

// The node under test: the API, the agent and the agent's HAProxy. As
// deployed, the API and the agent are each a process of their own (`fulcrum
// api`, `fulcrum agent`, built from this checkout), and this test process
// holds only the clients, the probe and the two backends: a garbage
// collection of one process no longer stalls the others, and the idle CPU
// is that of the API's and the agent's processes. FULCRUM_SCALE_INPROCESS=1
// runs the API and the agent inside this process instead (internal/teststack,
// the shape of the benchmark until session 9), which FULCRUM_SCALE_PROFILE
// needs; FULCRUM_SCALE_STEPS=1 records their spans in either shape
// (steps_test.go: the processes export them to this one).

// node is the API and the agent of the benchmark, with the operations the
// phases need from them.
type node struct {
	stateDir string
	// In process: the agent (its HAProxy is ag.Process()).
	ag *agent.Agent
	// Processes of their own.
	api, agent *child
	masterSock string
}

// inProcess says whether the API and the agent run in this process.
func (n *node) inProcess() bool { return n.ag != nil }

// shape names the deployment shape, for the printouts.
func (n *node) shape() string {
	if n.inProcess() {
		return "API and agent in this test process (FULCRUM_SCALE_INPROCESS=1)"
	}
	return fmt.Sprintf("API (pid %d) and agent (pid %d) each a process of its own; this process: clients, probe, backends", n.api.pid(), n.agent.pid())
}

// startNode starts the agent named name against s, and with external, moves
// the API out of this process: the in-process API that bootstrapped s (its
// tenant, node group and tokens) stops, and `fulcrum api` serves the same
// database on the same address.
func startNode(t *testing.T, s *teststack.Stack, dbURL, name string, external bool, reportInterval time.Duration, env []string) *node {
	t.Helper()
	if !external {
		ag := s.StartAgent(name)
		return &node{stateDir: ag.StateDir(), ag: ag}
	}
	bin := teststack.FulcrumBinary(t)
	key, err := secretbox.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	s.StopAPI()
	addr := strings.TrimPrefix(s.Endpoint, "http://")
	n := &node{}
	n.api = startChild(t, "api", bin, []string{"api", "--addr", addr, "--haproxy=", "--log-level", "info"},
		append([]string{"FULCRUM_DATABASE_URL=" + dbURL, "FULCRUM_SECRET_KEY=" + key}, env...))
	deadline := time.Now().Add(60 * time.Second)
	for {
		res, err := http.Get(s.Endpoint + "/healthz")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				break
			}
		}
		if n.api.exited() || time.Now().After(deadline) {
			t.Fatalf("fulcrum api not serving on %s: %v\n%s", addr, err, n.api.tail())
		}
		time.Sleep(50 * time.Millisecond)
	}
	dir, err := os.MkdirTemp("", "fulcrum-agent-"+name+"-") // short: unix socket paths are limited
	if err != nil {
		t.Fatal(err)
	}
	n.stateDir, n.masterSock = dir, filepath.Join(dir, "run", "master.sock")
	// The agent as teststack configures it, but for what a deployed agent
	// has: its heartbeat (the node group's unless FULCRUM_SCALE_REPORT_MS),
	// hard-stop-after 30 s, its HTTP client.
	n.agent = startChild(t, "agent", bin, []string{"agent", "--endpoint", s.Endpoint, "--node-name", name, "--state-dir", dir,
		"--poll-wait", "10s", "--report-interval", reportInterval.String(), "--stop-haproxy-on-exit", "--log-level", "info",
		"--metrics-addr=", "--prometheus-addr="}, append([]string{"FULCRUM_NODE_TOKEN=" + s.NodeToken}, env...))
	t.Cleanup(func() {
		pid := n.haproxyPID()
		n.agent.stop(syscall.SIGTERM) // stops HAProxy (--stop-haproxy-on-exit)
		if pid > 0 && syscall.Kill(pid, 0) == nil {
			_ = syscall.Kill(-pid, syscall.SIGKILL) // HAProxy runs in its own process group
		}
		os.RemoveAll(dir)
	})
	for deadline := time.Now().Add(60 * time.Second); n.haproxyPID() == 0; time.Sleep(50 * time.Millisecond) {
		if n.agent.exited() || time.Now().After(deadline) {
			t.Fatalf("fulcrum agent: HAProxy not up within 60 s\n%s", n.agent.tail())
		}
	}
	return n
}

// reload reloads HAProxy through its master CLI and waits until it is
// confirmed as the agent's haproxy.Process.Reload confirms it: the master's
// reload counter moved, no failed reload, a new worker listed and
// answering its CLI (`show proc` every 10 ms).
func (n *node) reload(ctx context.Context) error {
	if n.inProcess() {
		return n.ag.Process().Reload(ctx)
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	before, err := n.showProc(ctx)
	if err != nil {
		return fmt.Errorf("reload: %w", err)
	}
	known := map[int]bool{}
	for _, w := range before.workers {
		known[w.PID] = true
	}
	// The master closes the connection when it re-executes; HAProxy 2.6
	// answers nothing.
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", n.masterSock)
	if err != nil {
		return fmt.Errorf("reload: %w", err)
	}
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	_, err = io.WriteString(c, "reload\n")
	if err == nil {
		_, _ = io.Copy(io.Discard, c)
	}
	c.Close()
	if err != nil {
		return fmt.Errorf("reload: %w", err)
	}
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	last := errors.New("reload not seen yet")
	for {
		select {
		case <-ctx.Done():
			return fmt.Errorf("reload not confirmed: %w (last: %v)", ctx.Err(), last)
		case <-tick.C:
		}
		st, err := n.showProc(ctx)
		switch {
		case err != nil:
			last = err
			continue
		case st.reloads <= before.reloads:
			last = errors.New("master has not reloaded yet")
			continue
		case st.failed > 0:
			return errors.New("reload: the master could not load the configuration")
		}
		fresh := 0
		for _, w := range st.workers {
			if !w.Old && !known[w.PID] {
				fresh = w.PID
				break
			}
		}
		if fresh == 0 {
			last = errors.New("no new worker listed yet")
			continue
		}
		out, err := cliExchange(ctx, n.masterSock, "@!"+strconv.Itoa(fresh)+" show info")
		if err != nil || !strings.Contains(out, "\nPid: "+strconv.Itoa(fresh)+"\n") {
			last = fmt.Errorf("worker %d does not answer yet", fresh)
			continue
		}
		return nil
	}
}

// haproxyPID is the HAProxy master's pid, 0 when none answers.
func (n *node) haproxyPID() int {
	if n.inProcess() {
		return n.ag.Process().PID()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	st, err := n.showProc(ctx)
	if err != nil {
		return 0
	}
	return st.master
}

// workers lists HAProxy's workers (`show proc`).
func (n *node) workers(ctx context.Context) ([]haproxy.Worker, error) {
	if n.inProcess() {
		return n.ag.Process().Workers(ctx)
	}
	st, err := n.showProc(ctx)
	return st.workers, err
}

// serviceCPU is the CPU the API and the agent have used: this process's in
// process (the test's own clients and probe included, as before session 9),
// else the two processes' (the agent's with its reaped children: `haproxy
// -c` checks; HAProxy itself is counted apart).
func (n *node) serviceCPU() time.Duration {
	if n.inProcess() {
		return selfCPU()
	}
	return pidsCPU([]int{n.api.pid()}) + pidsCPU([]int{n.agent.pid()}, true)
}

// changeCPU is the CPU used so far by the API, the agent (0 in process:
// the API's figure is this process) and HAProxy (master hp and workers).
func (n *node) changeCPU(hp int) [3]time.Duration {
	if n.inProcess() {
		return [3]time.Duration{selfCPU(), 0, procCPU(hp)}
	}
	return [3]time.Duration{pidsCPU([]int{n.api.pid()}), pidsCPU([]int{n.agent.pid()}, true), procCPU(hp)}
}

// gcs are the GC cycles completed so far by this process, the API and the
// agent (in process, the first holds all three).
type gcs struct{ self, api, agent uint64 }

func (n *node) gcCycles() gcs {
	g := gcs{self: gcCycles()}
	if !n.inProcess() {
		g.api, g.agent = n.api.gcs.Load(), n.agent.gcs.Load()
	}
	return g
}

func (g gcs) sub(o gcs) gcs { return gcs{g.self - o.self, g.api - o.api, g.agent - o.agent} }

// any counts the cycles that can stall a change: every one in process; of
// the API and the agent otherwise (this process's own, the probe's, are
// counted apart).
func (g gcs) any(n *node) uint64 {
	if n.inProcess() {
		return g.self
	}
	return g.api + g.agent
}

func (g gcs) String() string {
	return fmt.Sprintf("this process %d, API %d, agent %d", g.self, g.api, g.agent)
}

// procStatus is a parsed `show proc` of the master CLI.
type procStatus struct {
	master, reloads, failed int
	workers                 []haproxy.Worker
}

var (
	procMasterRE = regexp.MustCompile(`^(\d+)\s+master\s+(\d+)(?:\s*\[failed:\s*(\d+)\])?`)
	procWorkerRE = regexp.MustCompile(`^(\d+)\s+worker\s+(\d+)`)
)

func (n *node) showProc(ctx context.Context) (procStatus, error) {
	out, err := cliExchange(ctx, n.masterSock, "show proc")
	if err != nil {
		return procStatus{}, err
	}
	return parseShowProc(out)
}

// parseShowProc reads HAProxy 2.6's `show proc`: the master's line, then
// "# workers" and "# old workers".
func parseShowProc(out string) (procStatus, error) {
	var st procStatus
	old := false
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(line, "# old workers"):
			old = true
		case strings.HasPrefix(line, "# programs"):
			old = true
		case strings.HasPrefix(line, "#") || line == "":
		default:
			if m := procMasterRE.FindStringSubmatch(line); m != nil {
				st.master, _ = strconv.Atoi(m[1])
				st.reloads, _ = strconv.Atoi(m[2])
				st.failed, _ = strconv.Atoi(m[3])
			} else if m := procWorkerRE.FindStringSubmatch(line); m != nil {
				pid, _ := strconv.Atoi(m[1])
				reloads, _ := strconv.Atoi(m[2])
				st.workers = append(st.workers, haproxy.Worker{PID: pid, Reloads: reloads, Old: old})
			}
		}
	}
	if st.master == 0 {
		return st, fmt.Errorf("show proc: no master line in %q", out)
	}
	return st, nil
}

// cliExchange sends one command to a CLI socket and reads the answer to EOF.
func cliExchange(ctx context.Context, socket, cmd string) (string, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", socket)
	if err != nil {
		return "", err
	}
	defer c.Close()
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(3 * time.Second)
	}
	_ = c.SetDeadline(deadline)
	if _, err := io.WriteString(c, cmd+"\n"); err != nil {
		return "", err
	}
	_ = c.(*net.UnixConn).CloseWrite()
	b, err := io.ReadAll(c)
	return string(b), err
}

// child is `fulcrum <command>` run as a process of its own, with
// GODEBUG=gctrace=1: its GC cycles are counted from its stderr (the other
// lines, its log, are kept in a file and the last of them in memory).
type child struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	gcs  atomic.Uint64

	mu     sync.Mutex
	lastGC string   // its last gctrace line
	lines  []string // its last log lines
}

var gcLineRE = regexp.MustCompile(`^gc \d+ @`)

func startChild(t *testing.T, name, bin string, args, env []string) *child {
	t.Helper()
	c := &child{name: name, done: make(chan struct{})}
	cmd := exec.Command(bin, args...)
	godebug := "gctrace=1"
	if v := os.Getenv("GODEBUG"); v != "" {
		godebug = v + ",gctrace=1"
	}
	cmd.Env = append(append(os.Environ(), "OTEL_TRACES_EXPORTER=none", "OTEL_METRICS_EXPORTER=none", "OTEL_LOGS_EXPORTER=none",
		"GODEBUG="+godebug), env...)
	logf, err := os.Create(filepath.Join(t.TempDir(), name+".log"))
	if err != nil {
		t.Fatal(err)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout = logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c.cmd = cmd
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			if gcLineRE.MatchString(line) {
				c.gcs.Add(1)
				c.mu.Lock()
				c.lastGC = line
				c.mu.Unlock()
				continue
			}
			fmt.Fprintln(logf, line)
			c.mu.Lock()
			if c.lines = append(c.lines, line); len(c.lines) > 40 {
				c.lines = c.lines[1:]
			}
			c.mu.Unlock()
		}
	}()
	go func() { <-scanned; _ = cmd.Wait(); logf.Close(); close(c.done) }()
	t.Cleanup(func() {
		c.stop(syscall.SIGTERM)
		if t.Failed() {
			t.Logf("fulcrum %s, last lines:\n%s", name, c.tail())
		}
	})
	return c
}

func (c *child) pid() int { return c.cmd.Process.Pid }

func (c *child) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// stop signals the process and waits (30 s at most, then SIGKILL).
func (c *child) stop(sig syscall.Signal) {
	if c.exited() {
		return
	}
	_ = c.cmd.Process.Signal(sig)
	select {
	case <-c.done:
	case <-time.After(30 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.done
	}
}

func (c *child) tail() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return strings.Join(c.lines, "\n")
}

// lastGCLine is the process's last gctrace line ("" before its first GC).
func (c *child) lastGCLine() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lastGC
}
