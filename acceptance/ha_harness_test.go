package acceptance

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fulcrumlb/fulcrum/internal/testenv"
	"github.com/fulcrumlb/fulcrum/internal/teststack"
)

// The network-namespace harness: a bridge in the root namespace carrying a
// private /24 that exists only there and in the test's namespaces (never
// routed anywhere), three dataplane nodes (each its own namespace with an
// `fulcrum agent` process, its HAProxy and keepalived), a client namespace and
// a backend namespace on the same bridge, and the API listening on the
// bridge's address in the root namespace. Every name carries a per-run prefix;
// t.Cleanup kills what the test started (the processes inside its namespaces)
// and removes the namespaces and the bridge, also when the test fails.

// haNet is one harness.
type haNet struct {
	t       *testing.T
	prefix  string // e.g. "fh3a9c": names of namespaces, links
	subnet  string // e.g. "10.213.57": the /24 inside the harness
	bridge  string
	nodes   []*haNode
	client  string // namespace names
	backend string
	st      *stack
	bin     string // bin/fulcrum, built for the test
	wire    *wire  // what the client's link carries (ha_wire_test.go)
	// noPeerAddress: the agents register no peer address (VRRP's
	// multicast adverts only, no HAProxy peers).
	noPeerAddress bool
}

// haNode is one dataplane node.
type haNode struct {
	name, ns, ip, dir string
	stopOnExit        bool // start the agent with --stop-haproxy-on-exit (a stop takes the node out)
	mu                sync.Mutex
	cmd               *exec.Cmd
	done              chan struct{}
}

const haIface = "eth0" // the nodes' LAN interface, the group's vrrp_interface

// haPeersPort is where each node's HAProxy shares stick tables (peers).
const haPeersPort = 10000

// requireNetns skips, saying why, only where the machine honestly cannot
// run the test: not root, or a kernel (a sandbox) that refuses network
// namespaces. The programs it runs (ip, keepalived, haproxy) must be
// installed: a missing one fails the test (internal/testenv).
func requireNetns(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipped: network-namespace tests need root (ip netns, veth, bridges): run them as root (make test-ha)")
	}
	testenv.RequireBinary(t, "ip", "apt-get install iproute2")
	testenv.RequireKeepalived(t)
	testenv.RequireHAProxy(t)
	name := "fhprobe" + randHex(3)
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Skipf("skipped: the kernel refuses network namespaces here (ip netns add: %v: %s)", err, out)
	}
	_ = exec.Command("ip", "netns", "del", name).Run()
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func sh(t testing.TB, args ...string) string {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// newHANet builds the namespaces and the bridge, starts the API on the
// bridge, points the node group at VRRP on eth0 and starts n nodes.
func newHANet(t *testing.T, n int) *haNet {
	t.Helper()
	return newHANetWith(t, n, false)
}

// newHANetWith is newHANet whose agents register no peer address when
// noPeerAddress.
func newHANetWith(t *testing.T, n int, noPeerAddress bool) *haNet {
	t.Helper()
	requireNetns(t)
	bin := teststack.FulcrumBinary(t)
	octet, _ := rand.Int(rand.Reader, big.NewInt(250))
	h := &haNet{t: t, prefix: "fh" + randHex(2), subnet: fmt.Sprintf("10.213.%d", octet.Int64()+1), bin: bin, noPeerAddress: noPeerAddress}
	h.bridge = h.prefix + "br"
	t.Cleanup(h.cleanup) // registered before anything exists: it removes whatever was made
	sh(t, "ip", "link", "add", h.bridge, "type", "bridge")
	sh(t, "ip", "addr", "add", h.subnet+".1/24", "dev", h.bridge)
	sh(t, "ip", "link", "set", h.bridge, "up")
	for i := 1; i <= n; i++ {
		node := &haNode{name: fmt.Sprintf("%s-n%d", h.prefix, i), ip: fmt.Sprintf("%s.%d", h.subnet, 10+i)}
		node.ns = node.name
		h.addNS(node.ns, fmt.Sprintf("n%d", i), node.ip)
		h.nodes = append(h.nodes, node)
	}
	h.client, h.backend = h.prefix+"-cl", h.prefix+"-be"
	h.addNS(h.client, "cl", h.subnet+".21")
	h.addNS(h.backend, "be", h.subnet+".31")
	h.wire = h.startWire(h.prefix + "clh")

	h.st = startStack(t, teststack.Options{ListenAddr: h.subnet + ".1:0"})
	code, out := h.st.CallAs(h.st.AdminToken, http.MethodPatch, "/v1/node-groups/"+h.st.NodeGroupID, map[string]any{
		"vip_range": h.subnet + ".128/25", "vrrp_interface": haIface, "vrrp_router_id_min": 1, "vrrp_router_id_max": 255,
		"vrrp_advert_interval_ms": 100})
	if code != http.StatusOK {
		t.Fatalf("PATCH node group: %d %v", code, out)
	}
	for _, node := range h.nodes {
		// Not t.TempDir: that is removed before h.cleanup dumps the logs.
		dir, err := os.MkdirTemp("", "fulcrum-ha-"+node.name+"-")
		if err != nil {
			t.Fatal(err)
		}
		node.dir = dir
		h.startAgent(node)
	}
	return h
}

// addNS makes namespace ns with a veth on the bridge named eth0 inside.
func (h *haNet) addNS(ns, short, ip string) {
	t := h.t
	t.Helper()
	sh(t, "ip", "netns", "add", ns)
	host, peer := h.prefix+short+"h", h.prefix+short+"p"
	sh(t, "ip", "link", "add", host, "type", "veth", "peer", "name", peer)
	sh(t, "ip", "link", "set", peer, "netns", ns)
	sh(t, "ip", "link", "set", host, "master", h.bridge, "up")
	sh(t, "ip", "-n", ns, "link", "set", peer, "name", haIface)
	sh(t, "ip", "-n", ns, "addr", "add", ip+"/24", "dev", haIface)
	sh(t, "ip", "-n", ns, "link", "set", haIface, "up")
	sh(t, "ip", "-n", ns, "link", "set", "lo", "up")
}

// cleanup kills every process inside the harness's namespaces (all started
// by this test), then removes the namespaces and the bridge.
func (h *haNet) cleanup() {
	if h.t.Failed() {
		for _, n := range h.nodes {
			h.dumpNode(n)
		}
	}
	for _, ns := range h.namespaces() {
		h.killNS(ns, nil)
	}
	for _, n := range h.nodes {
		n.mu.Lock()
		done := n.done
		n.mu.Unlock()
		if done != nil {
			select {
			case <-done:
			case <-time.After(5 * time.Second):
			}
		}
	}
	for _, ns := range h.namespaces() {
		_ = exec.Command("ip", "netns", "del", ns).Run()
	}
	_ = exec.Command("ip", "link", "del", h.bridge).Run()
	for _, n := range h.nodes {
		if n.dir != "" && os.Getenv("FULCRUM_HA_KEEP") == "" {
			_ = os.RemoveAll(n.dir)
		}
	}
}

func (h *haNet) namespaces() []string {
	out, _ := exec.Command("ip", "netns", "list").Output()
	var mine []string
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) > 0 && strings.HasPrefix(f[0], h.prefix+"-") {
			mine = append(mine, f[0])
		}
	}
	return mine
}

// killNS sends SIGKILL to the processes in ns (those whose command is in
// only, when given) and returns how many it killed. Only this run's
// namespaces are passed here: whatever runs inside them, the test started.
func (h *haNet) killNS(ns string, only []string) int {
	out, _ := exec.Command("ip", "netns", "pids", ns).Output()
	n := 0
	for _, f := range strings.Fields(string(out)) {
		pid, err := strconv.Atoi(f)
		// This test process shows up too when a thread of it entered ns
		// (inNS); everything else in the run's own namespaces it started.
		if err != nil || pid <= 1 || pid == os.Getpid() {
			continue
		}
		if only != nil {
			comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
			if !containsString(only, strings.TrimSpace(string(comm))) {
				continue
			}
		}
		if syscall.Kill(pid, syscall.SIGKILL) == nil {
			n++
		}
	}
	return n
}

func containsString(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// startAgent runs `fulcrum agent` inside the node's namespace.
func (h *haNet) startAgent(n *haNode) {
	t := h.t
	t.Helper()
	logf, err := os.OpenFile(filepath.Join(n.dir, "agent.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"netns", "exec", n.ns, h.bin, "agent", "--endpoint", h.st.Endpoint, "--node-name", n.name,
		"--state-dir", filepath.Join(n.dir, "state"), "--poll-wait", "5s", "--report-interval", "1s", "--log-level", "debug",
		"--stop-haproxy-on-exit=" + strconv.FormatBool(n.stopOnExit)}
	if !h.noPeerAddress {
		args = append(args, "--peer-address", net.JoinHostPort(n.ip, strconv.Itoa(haPeersPort)))
	}
	cmd := exec.Command("ip", args...)
	cmd.Env = append(os.Environ(), "FULCRUM_NODE_TOKEN="+h.st.NodeToken, "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); logf.Close(); close(done) }()
	n.mu.Lock()
	n.cmd, n.done = cmd, done
	n.mu.Unlock()
}

// killNode kills -9 everything in the node's namespace (agent, HAProxy,
// keepalived) and waits for the agent process to be gone.
func (h *haNet) killNode(n *haNode) {
	h.killNS(n.ns, nil)
	n.mu.Lock()
	done := n.done
	n.mu.Unlock()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		h.t.Fatalf("agent of %s still running after kill -9", n.name)
	}
}

// stopAgent stops the node's agent gracefully (SIGTERM) and waits for it.
func (h *haNet) stopAgent(n *haNode) {
	n.mu.Lock()
	cmd, done := n.cmd, n.done
	n.mu.Unlock()
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		h.t.Fatalf("agent of %s did not stop within 30s of SIGTERM", n.name)
	}
}

// keepalivedPID is the pid of the node's keepalived (its pid file), 0 when
// none runs.
func (h *haNet) keepalivedPID(n *haNode) int {
	b, err := os.ReadFile(filepath.Join(n.dir, "state", "keepalived", "keepalived.pid"))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	if pid <= 0 || syscall.Kill(pid, 0) != nil {
		return 0
	}
	return pid
}

// runtime sends a command to the node's HAProxy runtime API (its stats
// socket in the agent's state directory) and returns the answer.
func (h *haNet) runtime(n *haNode, cmd string) string {
	c, err := net.DialTimeout("unix", filepath.Join(n.dir, "state", "run", "stats.sock"), 2*time.Second)
	if err != nil {
		return ""
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := io.WriteString(c, cmd+"\n"); err != nil {
		return ""
	}
	b, _ := io.ReadAll(c)
	return string(b)
}

// holders lists the nodes whose eth0 holds vip.
func (h *haNet) holders(vip string) []*haNode {
	var out []*haNode
	for _, n := range h.nodes {
		b, _ := exec.Command("ip", "-n", n.ns, "-o", "addr", "show", "dev", haIface).Output()
		if strings.Contains(string(b), " "+vip+"/") {
			out = append(out, n)
		}
	}
	return out
}

// nodeByIP finds a node by its LAN address.
func (h *haNet) nodeByIP(ip string) *haNode {
	for _, n := range h.nodes {
		if n.ip == ip {
			return n
		}
	}
	return nil
}

// ready says whether the node's agent lets keepalived hold VIPs.
func (h *haNet) ready(n *haNode) bool {
	b, err := os.ReadFile(filepath.Join(n.dir, "state", "keepalived", "ready"))
	return err == nil && strings.TrimSpace(string(b)) == "0"
}

func (h *haNet) dumpNode(n *haNode) {
	for _, f := range []string{"agent.log", "state/keepalived/keepalived.log", "state/keepalived/keepalived.conf"} {
		b, err := os.ReadFile(filepath.Join(n.dir, f))
		if err != nil {
			continue
		}
		if len(b) > 6000 {
			b = b[len(b)-6000:]
		}
		h.t.Logf("---- %s %s (tail):\n%s", n.name, f, b)
	}
}

// sysSetns is setns(2)'s number on linux/amd64 (the syscall package does not
// name it).
const sysSetns = 308

// inNS runs f on an OS thread switched into namespace ns. Sockets f creates
// belong to ns for their whole life; the thread is discarded afterwards.
func inNS(ns string, f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread exits with the goroutine
		fd, err := syscall.Open("/var/run/netns/"+ns, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
		if err != nil {
			errc <- fmt.Errorf("open netns %s: %w", ns, err)
			return
		}
		defer syscall.Close(fd)
		if _, _, e := syscall.RawSyscall(sysSetns, uintptr(fd), syscall.CLONE_NEWNET, 0); e != 0 {
			errc <- fmt.Errorf("setns %s: %w", ns, e)
			return
		}
		errc <- f()
	}()
	return <-errc
}

// startBackend serves HTTP in the backend namespace on port; the answer is the
// address of the node that proxied the request (HAProxy connects from it).
func (h *haNet) startBackend(port int) {
	t := h.t
	t.Helper()
	var ln net.Listener
	err := inNS(h.backend, func() (err error) {
		ln, err = net.Listen("tcp", net.JoinHostPort(h.subnet+".31", strconv.Itoa(port)))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, _ := net.SplitHostPort(r.RemoteAddr)
		if r.URL.Path == "/slow" { // a request still in flight when a VIP moves
			time.Sleep(slowRequest)
		}
		if r.URL.Path == "/port" { // which backend server answered
			io.WriteString(w, strconv.Itoa(port))
			return
		}
		io.WriteString(w, host)
	}), ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln) //nolint:errcheck
	t.Cleanup(func() { srv.Close() })
}

// createLB makes an http LB on port 80 forwarding to the backend and returns
// its id and VIP, once active on every node.
func (h *haNet) createLB(name string, backendPort int) (string, string) {
	s := h.st
	lb := s.Create("/v1/load-balancers", map[string]any{"name": name})
	id, vip := lb["id"].(string), lb["vip_address"].(string)
	pool := s.Create("/v1/pools", map[string]any{"load_balancer_id": id, "protocol": "http"})["id"].(string)
	s.Create("/v1/members", map[string]any{"pool_id": pool, "address": h.subnet + ".31", "port": backendPort})
	lsn := s.Create("/v1/listeners", map[string]any{"load_balancer_id": id, "protocol": "http", "port": 80, "default_pool_id": pool})["id"].(string)
	s.WaitActive("/v1/load-balancers/" + id)
	s.WaitActive("/v1/listeners/" + lsn)
	return id, vip
}

// result is one request of a load.
type result struct {
	at  time.Time
	ok  bool
	via string        // the node's address that proxied it
	dur time.Duration // how long it took (a SYN sent again adds a second)
	// broken: the connection was made, then failed (reset or cut while the
	// request was in flight); otherwise a failure is a connect that failed.
	broken bool
	err    string // why it failed
}

// load starts one request per interval from the client namespace, each on a
// new connection and without waiting for the previous one (a request stuck
// in a SYN retransmit does not hold the others back), until stopped.
type load struct {
	mu      sync.Mutex
	results []result
	cancel  context.CancelFunc
	done    chan struct{}
	wg      sync.WaitGroup
}

func (h *haNet) startLoad(vip string, interval time.Duration) *load {
	ctx, cancel := context.WithCancel(context.Background())
	l := &load{cancel: cancel, done: make(chan struct{})}
	addr := net.JoinHostPort(vip, "80")
	go func() {
		defer close(l.done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			l.wg.Add(1)
			go func() {
				defer l.wg.Done()
				at := time.Now()
				var via string
				err := inNS(h.client, func() (err error) { via, err = fetchVia(addr); return err })
				var dialErr *dialError
				l.mu.Lock()
				r := result{at: at, ok: err == nil, via: via, dur: time.Since(at), broken: err != nil && !errors.As(err, &dialErr)}
				if err != nil {
					r.err = err.Error()
				}
				l.results = append(l.results, r)
				l.mu.Unlock()
			}()
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	h.t.Cleanup(l.stop)
	return l
}

func (l *load) stop() {
	l.cancel()
	<-l.done
	l.wg.Wait()
}

// since returns the results of requests started from t on, in start order.
// Requests still under way are not in it yet.
func (l *load) since(t time.Time) []result {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []result
	for _, r := range l.results {
		if !r.at.Before(t) {
			out = append(out, r)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].at.Before(out[j].at) })
	return out
}

// dialError is a connect that failed (refused, unreachable, timed out).
type dialError struct{ err error }

func (e *dialError) Error() string { return "connect: " + e.err.Error() }

// slowRequest is how long the backend takes to answer GET /slow.
const slowRequest = 1500 * time.Millisecond

// fetchVia sends GET / on a new connection and returns the body.
func fetchVia(addr string) (string, error) { return fetchPath(addr, "/", 3*time.Second) }

// fetchPath sends GET path on a new connection and returns the body; the
// exchange must end within deadline of the connect.
func fetchPath(addr, path string, deadline time.Duration) (string, error) {
	// A SYN lost while the VIP moves is sent again after a second, as any
	// client's would: such a request is slow, not failed.
	c, err := net.DialTimeout("tcp", addr, 2500*time.Millisecond)
	if err != nil {
		return "", &dialError{err}
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(deadline))
	if _, err := io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: ha\r\nConnection: close\r\n\r\n"); err != nil {
		return "", err
	}
	res, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return "", err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return "", err
	}
	if res.StatusCode != http.StatusOK {
		return "", fmt.Errorf("status %d", res.StatusCode)
	}
	return string(b), nil
}

// outage is what a fault cost the load.
type outage struct {
	failed  int
	broken  int           // of failed: connections cut while their request was in flight
	gap     time.Duration // first failed request to the first success after the last failure (by start time)
	after   []result      // requests started after the last failure (all succeeded)
	flaps   int           // failures that came back after a second or more of successes
	slowest time.Duration // the longest request from the fault on
	errs    []string      // why each failed request failed
}

// measure waits until requests succeed again after the fault at `at`, then
// watches settle more (at least the 4s a request may take) and returns the
// outage. It fails the test when no request succeeds within bound.
func (h *haNet) measure(l *load, at time.Time, bound, settle time.Duration) outage {
	t := h.t
	t.Helper()
	teststack.WaitFor(t, "requests to succeed again after the fault", bound, func() bool {
		rs := l.since(at)
		failedYet := false
		for _, r := range rs {
			if !r.ok {
				failedYet = true
			} else if failedYet {
				return true
			}
		}
		return !failedYet && time.Since(at) > 3*time.Second
	})
	time.Sleep(max(settle, 4*time.Second))
	rs := l.since(at)
	var o outage
	var first, last *result
	okSince := false // a success started after the last failure
	for i := range rs {
		r := &rs[i]
		o.slowest = max(o.slowest, r.dur)
		if r.ok {
			okSince = true
			continue
		}
		if last != nil && okSince && r.at.Sub(last.at) > time.Second {
			o.flaps++
		}
		if first == nil {
			first = r
		}
		last, okSince = r, false
		o.failed++
		o.errs = append(o.errs, r.err)
		if r.broken {
			o.broken++
		}
	}
	if first == nil {
		o.after = rs
		return o
	}
	for _, r := range rs {
		if r.at.After(last.at) {
			if o.gap == 0 {
				o.gap = r.at.Sub(first.at)
			}
			o.after = append(o.after, r)
		}
	}
	return o
}

// durationPercentile is the nearest-rank percentile p (0 to 1) of ds.
func durationPercentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := int(p*float64(len(s))+0.5) - 1
	return s[max(0, min(i, len(s)-1))]
}
