package fleetsim

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fulcrumlb/fulcrum/api/store"
	"github.com/fulcrumlb/fulcrum/internal/teststack"
)

// fleetConfig is one run of the fleet benchmark.
type fleetConfig struct {
	Nodes, LBs, Writes int
	Heartbeat          time.Duration
	IdleWindow         time.Duration // idle baseline and report latency under heartbeats only
	PhaseTimeout       time.Duration // bound of the initial sync and of the whole write series
	WriteTimeout       time.Duration // bound of one write reaching every node / `active`
	ReportTimeout      time.Duration
	QuietWrites        int           // writes of the series with heartbeats paused
	QuietIdle          time.Duration // idle baseline of that series
	Workers            int           // concurrent creates
	AckOnly            bool          // reports carry only revision and status, no member statuses or stats
	FullReports        bool          // every report carries every member status and all stats
	ReportAcks         bool          // acknowledgements by report (node protocol 1), not carried by polls

	heartbeatFile string // the body of reports after the first (changes only), or ""
}

// TestFleet is the fleet benchmark (`make bench-fleet`): it runs only with
// FULCRUM_FLEET=1, sized by FULCRUM_FLEET_NODES, _LBS, _WRITES, _HEARTBEAT,
// _IDLE, _PHASE_TIMEOUT, _WRITE_TIMEOUT. Reports are a real agent's: the
// first carries every member's health and counters, the later ones only what
// changed (nothing, here). FULCRUM_FLEET_REPORT=ack sends no member health and
// no counters at all; FULCRUM_FLEET_REPORT=full sends them all in every report
// (the agent before it reported changes only). Nodes ask for deltas (format
// 2) as the agent does; FULCRUM_FLEET_FULL_SNAPSHOTS=1 makes them ask for the
// whole group every time (format 1, an agent from before deltas). Nodes
// speak node protocol 2 as the agent does: the poll after a snapshot carries
// its acknowledgement (applied=) — by default over node protocol 3's raw
// stream, as the agent opens it first (one HTTP/1.1 connection per node
// upgraded by GET, 101; snapshots pushed, acks sent back on it;
// FULCRUM_FLEET_PROTOCOL=3 streams over HTTP/2 instead, one request per
// node; FULCRUM_FLEET_PROTOCOL=2 long-polls; FULCRUM_FLEET_STREAM_HTTP1=1
// streams the POST over HTTP/1.1); FULCRUM_FLEET_REPORT_ACKS=1 makes them
// acknowledge every snapshot with a report (protocol 1, an agent from
// before). The report figures count every report request either way.
//
// Before the idle window the fleet settles: every node's full first report
// answered (bounded by FULCRUM_FLEET_PHASE_TIMEOUT), so that the idle window
// measures sustained heartbeats, not the fleet's start.
//
// After the write series, a second series (FULCRUM_FLEET_QUIET_WRITES, 20)
// runs with heartbeats paused, after an idle baseline of
// FULCRUM_FLEET_QUIET_IDLE (5s) measured the same way: its API CPU per write
// (the write, its fan-out to every node and the nodes' acks) is the fleet
// line's api_cpu_ms_per_write, since the heartbeats' load varies more than a
// write costs; the figure with heartbeats on is printed too.
func TestFleet(t *testing.T) {
	if os.Getenv("FULCRUM_FLEET") != "1" {
		t.Skip("the fleet benchmark runs with FULCRUM_FLEET=1 (make bench-fleet)")
	}
	cfg := fleetConfig{Nodes: envInt("FULCRUM_FLEET_NODES", 1000), LBs: envInt("FULCRUM_FLEET_LBS", 1000),
		Writes: envInt("FULCRUM_FLEET_WRITES", 10), Heartbeat: envDur("FULCRUM_FLEET_HEARTBEAT", 2*time.Second),
		IdleWindow: envDur("FULCRUM_FLEET_IDLE", 20*time.Second), PhaseTimeout: envDur("FULCRUM_FLEET_PHASE_TIMEOUT", 120*time.Second),
		WriteTimeout: envDur("FULCRUM_FLEET_WRITE_TIMEOUT", 30*time.Second), ReportTimeout: 10 * time.Second, Workers: 8,
		QuietWrites: envInt("FULCRUM_FLEET_QUIET_WRITES", 20), QuietIdle: envDur("FULCRUM_FLEET_QUIET_IDLE", 5*time.Second),
		AckOnly: os.Getenv("FULCRUM_FLEET_REPORT") == "ack", FullReports: os.Getenv("FULCRUM_FLEET_REPORT") == "full",
		ReportAcks: os.Getenv("FULCRUM_FLEET_REPORT_ACKS") == "1"}
	runFleet(t, cfg)
}

// TestFleetSmoke keeps the simulator working: a few nodes and load
// balancers for a few seconds. It asserts only that every node got every write.
func TestFleetSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Postgres")
	}
	r := runFleet(t, fleetConfig{Nodes: 5, LBs: 5, Writes: 3, Heartbeat: 500 * time.Millisecond, IdleWindow: time.Second,
		PhaseTimeout: 60 * time.Second, WriteTimeout: 20 * time.Second, ReportTimeout: 10 * time.Second, Workers: 2,
		QuietWrites: 2, QuietIdle: 500 * time.Millisecond})
	if r.writeTimeouts != 0 || r.samples != 5*3 || r.quietSamples != 5*2 {
		t.Fatalf("%d of %d+%d (write, node) samples timed out", r.writeTimeouts, r.samples, r.quietSamples)
	}
	if r.reports == 0 {
		t.Fatal("no report answered")
	}
}

// TestFleetChild is the simulator's process; the fleet tests start it.
func TestFleetChild(t *testing.T) {
	if os.Getenv("FULCRUM_FLEETSIM_CHILD") != "1" {
		t.Skip("started by TestFleet")
	}
	tail, err := os.ReadFile(os.Getenv("FULCRUM_FLEETSIM_REPORT"))
	if err != nil {
		t.Fatal(err)
	}
	var heartbeat []byte
	if f := os.Getenv("FULCRUM_FLEETSIM_HEARTBEAT_REPORT"); f != "" {
		if heartbeat, err = os.ReadFile(f); err != nil {
			t.Fatal(err)
		}
	}
	cfg := Config{Endpoint: os.Getenv("FULCRUM_FLEETSIM_ENDPOINT"), Token: os.Getenv("FULCRUM_FLEETSIM_TOKEN"),
		Prefix: "sim", Nodes: envInt("FULCRUM_FLEETSIM_NODES", 1), Heartbeat: envDur("FULCRUM_FLEETSIM_HEARTBEAT", 2*time.Second),
		PollWait: 30 * time.Second, ReportTimeout: envDur("FULCRUM_FLEETSIM_REPORT_TIMEOUT", 10*time.Second), ReportTail: tail,
		HeartbeatTail: heartbeat, Deltas: os.Getenv("FULCRUM_FLEETSIM_FULL_SNAPSHOTS") != "1", PollAcks: os.Getenv("FULCRUM_FLEETSIM_REPORT_ACKS") != "1",
		Stream:      os.Getenv("FULCRUM_FLEETSIM_REPORT_ACKS") != "1" && os.Getenv("FULCRUM_FLEETSIM_FULL_SNAPSHOTS") != "1" && os.Getenv("FULCRUM_FLEETSIM_PROTOCOL") != "2",
		StreamHTTP1: os.Getenv("FULCRUM_FLEETSIM_STREAM_HTTP1") == "1",
		StreamRaw:   os.Getenv("FULCRUM_FLEETSIM_PROTOCOL") != "3" && os.Getenv("FULCRUM_FLEETSIM_STREAM_HTTP1") != "1",
		MaxDuration: 30 * time.Minute}
	if err := Run(context.Background(), cfg, os.Stdin, os.Stdout); err != nil {
		t.Fatal(err)
	}
}

func envInt(k string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(k)); err == nil && v > 0 {
		return v
	}
	return def
}

func envDur(k string, def time.Duration) time.Duration {
	if v, err := time.ParseDuration(os.Getenv(k)); err == nil && v > 0 {
		return v
	}
	return def
}

type fleetResult struct {
	samples, quietSamples, writeTimeouts, reports int
}

type lbObjects struct {
	lb, pool, listener string
	members            [2]string
}

// api is a small HTTP client of the public API.
type api struct {
	endpoint, token string
	c               *http.Client
}

func (a *api) call(ctx context.Context, method, path string, body any) (int, map[string]any, error) {
	var r io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = bytes.NewReader(b)
	}
	for attempt := 0; ; attempt++ {
		if r != nil {
			r.(*bytes.Reader).Seek(0, io.SeekStart)
		}
		req, err := http.NewRequestWithContext(ctx, method, a.endpoint+path, r)
		if err != nil {
			return 0, nil, err
		}
		req.Header.Set("Authorization", "Bearer "+a.token)
		if body != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		res, err := a.c.Do(req)
		if err != nil {
			return 0, nil, fmt.Errorf("%s %s: %w", method, path, err)
		}
		raw, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if (res.StatusCode == http.StatusTooManyRequests || res.StatusCode == http.StatusServiceUnavailable) && attempt < 20 {
			time.Sleep(100 * time.Millisecond)
			continue
		}
		var out map[string]any
		_ = json.Unmarshal(raw, &out)
		if res.StatusCode/100 != 2 {
			return res.StatusCode, out, fmt.Errorf("%s %s: HTTP %d: %s", method, path, res.StatusCode, raw)
		}
		return res.StatusCode, out, nil
	}
}

func (a *api) create(ctx context.Context, path string, body any) (string, error) {
	_, out, err := a.call(ctx, http.MethodPost, path, body)
	if err != nil {
		return "", err
	}
	id, _ := out["id"].(string)
	return id, nil
}

// createLB creates one load balancer as the issue describes: one http
// listener, one pool, two members.
func (a *api) createLB(ctx context.Context, i int) (lbObjects, error) {
	var o lbObjects
	var err error
	if o.lb, err = a.create(ctx, "/v1/load-balancers", map[string]any{"name": fmt.Sprintf("fleet-%04d", i)}); err != nil {
		return o, err
	}
	if o.pool, err = a.create(ctx, "/v1/pools", map[string]any{"load_balancer_id": o.lb, "protocol": "http"}); err != nil {
		return o, err
	}
	for m := range o.members {
		if o.members[m], err = a.create(ctx, "/v1/members", map[string]any{"pool_id": o.pool, "address": "127.0.0.1", "port": 10000 + m}); err != nil {
			return o, err
		}
	}
	o.listener, err = a.create(ctx, "/v1/listeners", map[string]any{"load_balancer_id": o.lb, "protocol": "http", "port": 80, "default_pool_id": o.pool})
	return o, err
}

// reportTail is the body of a real agent's report after the revision: every
// member's status and check, and per-LB counters.
func reportTail(lbs []lbObjects) []byte {
	type member struct {
		ID     string `json:"id"`
		Status string `json:"status"`
		Check  string `json:"check"`
	}
	type stats struct {
		LB                 string `json:"load_balancer_id"`
		ConnectionsCurrent int64  `json:"connections_current"`
		ConnectionsTotal   int64  `json:"connections_total"`
		RequestsTotal      int64  `json:"requests_total"`
		BytesIn            int64  `json:"bytes_in"`
		BytesOut           int64  `json:"bytes_out"`
		R1xx               int64  `json:"responses_1xx"`
		R2xx               int64  `json:"responses_2xx"`
		R3xx               int64  `json:"responses_3xx"`
		R4xx               int64  `json:"responses_4xx"`
		R5xx               int64  `json:"responses_5xx"`
		Errors             int64  `json:"errors"`
	}
	members := []member{}
	st := []stats{}
	for i, o := range lbs {
		for _, m := range o.members {
			members = append(members, member{ID: m, Status: "online", Check: "L7OK"})
		}
		n := int64(i + 1)
		st = append(st, stats{LB: o.lb, ConnectionsCurrent: n % 7, ConnectionsTotal: 1000 * n, RequestsTotal: 3000 * n, BytesIn: 400000 * n,
			BytesOut: 9000000 * n, R2xx: 2990 * n, R4xx: 9 * n, R5xx: n, Errors: n % 3})
	}
	b, _ := json.Marshal(map[string]any{"status": "ack", "load_balancer_errors": []any{}, "members": members, "stats": st})
	return b[1:] // without the opening brace: the simulator writes `{"revision":N,` first
}

// receipt is one snapshot a simulated node received.
type receipt struct {
	rev   int64
	at    time.Time
	bytes int
}

// child is the simulator process.
type child struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	mu    sync.Mutex
	got   [][]receipt // per node
	// latest is the highest revision each node received (holding reads it
	// instead of every receipt: this process's CPU is the API's figure).
	latest []int64
	stats  chan []string
	ready  chan struct{}
}

func startChild(t *testing.T, s *teststack.Stack, cfg fleetConfig, tailFile string) *child {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^TestFleetChild$", "-test.count=1", "-test.timeout=40m")
	cmd.Env = append(os.Environ(), "FULCRUM_FLEETSIM_CHILD=1", "FULCRUM_FLEETSIM_ENDPOINT="+s.Endpoint, "FULCRUM_FLEETSIM_TOKEN="+s.NodeToken,
		"FULCRUM_FLEETSIM_REPORT="+tailFile, "FULCRUM_FLEETSIM_HEARTBEAT_REPORT="+cfg.heartbeatFile,
		"FULCRUM_FLEETSIM_FULL_SNAPSHOTS="+os.Getenv("FULCRUM_FLEET_FULL_SNAPSHOTS"), fmt.Sprintf("FULCRUM_FLEETSIM_NODES=%d", cfg.Nodes),
		"FULCRUM_FLEETSIM_HEARTBEAT="+cfg.Heartbeat.String(), "FULCRUM_FLEETSIM_REPORT_TIMEOUT="+cfg.ReportTimeout.String(),
		"FULCRUM_FLEETSIM_REPORT_ACKS="+map[bool]string{true: "1"}[cfg.ReportAcks], "FULCRUM_FLEETSIM_PROTOCOL="+os.Getenv("FULCRUM_FLEET_PROTOCOL"),
		"FULCRUM_FLEETSIM_STREAM_HTTP1="+os.Getenv("FULCRUM_FLEET_STREAM_HTTP1"))
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &child{cmd: cmd, stdin: stdin, got: make([][]receipt, cfg.Nodes), latest: make([]int64, cfg.Nodes), stats: make(chan []string, 4),
		ready: make(chan struct{})}
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			// A node's receipt of a snapshot (one line per node and
			// write), read without allocating: this process's CPU is the
			// API's figure.
			if v, ok := parseSnapLine(sc.Bytes()); ok {
				if i := int(v[0]); i >= 0 && i < len(c.got) {
					c.mu.Lock()
					c.got[i] = append(c.got[i], receipt{rev: v[1], at: time.Unix(0, v[3]), bytes: int(v[2])})
					c.latest[i] = max(c.latest[i], v[1])
					c.mu.Unlock()
				}
				continue
			}
			f := strings.Fields(sc.Text())
			switch {
			case len(f) == 1 && f[0] == "ready":
				close(c.ready)
			case len(f) == 19 && f[0] == "stats":
				c.stats <- f
			}
		}
	}()
	t.Cleanup(func() {
		stdin.Close() // the simulator stops at EOF
		select {
		case <-done:
		case <-time.After(60 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		_ = cmd.Wait()
	})
	return c
}

// ask sends a command and, for stats, waits for the answer.
func (c *child) statsOf(label string) []string {
	fmt.Fprintf(c.stdin, "stats %s\n", label)
	select {
	case f := <-c.stats:
		return f
	case <-time.After(30 * time.Second):
		return nil
	}
}

func (c *child) mark() { fmt.Fprintln(c.stdin, "mark") }

// holding counts the nodes holding a revision above rev.
func (c *child) holding(rev int64) (n int, maxRev int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, r := range c.latest {
		if r > rev {
			n++
		}
		maxRev = max(maxRev, r)
	}
	return n, maxRev
}

// parseSnapLine reads "snap <node> <revision> <bytes> <unix ns>" (the
// simulator's receipt line): the four numbers.
func parseSnapLine(line []byte) (v [4]int64, ok bool) {
	rest, ok := bytes.CutPrefix(line, []byte("snap "))
	if !ok {
		return v, false
	}
	for i := range v {
		if i > 0 {
			if len(rest) == 0 || rest[0] != ' ' {
				return v, false
			}
			rest = rest[1:]
		}
		j := 0
		for j < len(rest) && rest[j] >= '0' && rest[j] <= '9' {
			d := int64(rest[j] - '0')
			if v[i] > (math.MaxInt64-d)/10 {
				return v, false
			}
			v[i] = v[i]*10 + d
			j++
		}
		if j == 0 {
			return v, false
		}
		rest = rest[j:]
	}
	return v, len(rest) == 0
}

// settle waits (at most 30 s, or window × 6 when that is shorter) until
// the API's process has been idle (under 3% of a core) for one window of a
// fifth of window: the work the phase before left behind (the statuses its
// reports derive, their writes) ends before an idle baseline is taken, so
// that the baseline is what idling costs, not that work's tail. It returns
// how long it waited.
func settle(window time.Duration) time.Duration {
	start := time.Now()
	step := max(window/5, 100*time.Millisecond)
	bound := min(30*time.Second, 6*window)
	for time.Since(start) < bound {
		c0, t0 := cpuTime(), time.Now()
		time.Sleep(step)
		if float64(cpuTime()-c0)/float64(time.Since(t0)) < 0.03 {
			break
		}
	}
	return time.Since(start)
}

// numGC is the number of GC cycles the process completed.
func numGC() uint32 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.NumGC
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func msf(d time.Duration) string {
	return strconv.FormatFloat(float64(d.Microseconds())/1000, 'f', 1, 64)
}

// runFleet starts a real API on a fresh Postgres, creates cfg.LBs load
// balancers, runs cfg.Nodes simulated nodes in a child process and measures.
func runFleet(t *testing.T, cfg fleetConfig) fleetResult {
	ctx := context.Background()
	prefix := 24
	for prefix > 16 && (1<<(32-prefix))-2 < cfg.LBs+1 {
		prefix--
	}
	s := teststack.Start(t, teststack.Options{VIPPrefixLen: prefix, Quotas: store.Quotas{LoadBalancers: cfg.LBs + 10, Listeners: cfg.LBs + 10,
		Pools: cfg.LBs + 10, Members: 2*cfg.LBs + 10, RoutingRules: 10, Certificates: 10}})
	tenant := &api{endpoint: s.Endpoint, token: s.TenantToken, c: &http.Client{Timeout: 30 * time.Second}}
	logf := func(format string, args ...any) {
		fmt.Printf(format+"\n", args...)
	}

	// 1. Load balancers, created in bulk through the API.
	start := time.Now()
	lbs := make([]lbObjects, cfg.LBs)
	var wg sync.WaitGroup
	errs := make(chan error, cfg.Workers)
	next := make(chan int)
	cctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	for w := 0; w < cfg.Workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				o, err := tenant.createLB(cctx, i)
				if err != nil {
					errs <- err
					cancel()
					return
				}
				lbs[i] = o
			}
		}()
	}
feed:
	for i := 0; i < cfg.LBs; i++ {
		select {
		case next <- i:
		case <-cctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	select {
	case err := <-errs:
		t.Fatalf("creating load balancers: %v", err)
	default:
	}
	took := time.Since(start)
	logf("setup: %d load balancers (1 listener, 1 pool, 2 members each) created in %.1f s (%.0f API calls/s, %d clients)",
		cfg.LBs, took.Seconds(), float64(5*cfg.LBs)/took.Seconds(), cfg.Workers)

	tailFile := filepath.Join(t.TempDir(), "report.json")
	tail := reportTail(lbs)
	if cfg.AckOnly {
		tail = []byte(`"status":"ack"}`)
	}
	if err := os.WriteFile(tailFile, tail, 0o600); err != nil {
		t.Fatal(err)
	}
	if !cfg.AckOnly && !cfg.FullReports {
		// What the agent sends once its first report was answered and
		// nothing changed: no member health, no counters.
		cfg.heartbeatFile = filepath.Join(t.TempDir(), "heartbeat.json")
		if err := os.WriteFile(cfg.heartbeatFile, []byte(`"status":"ack","load_balancer_errors":[],"stats":[]}`), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if cfg.AckOnly {
		logf("setup: report body %d bytes (ack only: no member statuses, no stats), heartbeat every %s, report timeout %s",
			len(tail)+30, cfg.Heartbeat, cfg.ReportTimeout)
	} else {
		what := "every report"
		if cfg.heartbeatFile != "" {
			what = "the first report; later ones carry only changes (none)"
		}
		logf("setup: report body %d bytes (%d member statuses, %d stats) in %s, heartbeat every %s, report timeout %s",
			len(tail)+30, 2*cfg.LBs, cfg.LBs, what, cfg.Heartbeat, cfg.ReportTimeout)
	}

	// 2. The simulated nodes register and fetch the group's snapshot.
	c := startChild(t, s, cfg, tailFile)
	select {
	case <-c.ready:
	case <-time.After(30 * time.Second):
		t.Fatal("simulator did not start")
	}
	start = time.Now()
	var synced int
	var rev int64
	for time.Since(start) < cfg.PhaseTimeout {
		if synced, rev = c.holding(0); synced == cfg.Nodes {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	var initialBytes []int
	c.mu.Lock()
	for _, rs := range c.got {
		if len(rs) > 0 {
			initialBytes = append(initialBytes, rs[0].bytes)
		}
	}
	c.mu.Unlock()
	sort.Ints(initialBytes)
	full := 0
	if len(initialBytes) > 0 {
		full = initialBytes[len(initialBytes)/2]
	}
	logf("sync: %d/%d nodes hold revision %d after %.1f s (bound %s); full snapshot %d bytes on the wire",
		synced, cfg.Nodes, rev, time.Since(start).Seconds(), cfg.PhaseTimeout, full)

	// 2b. The fleet settles: every node's full first report answered
	// (the fleet's start), so that the idle window measures sustained
	// heartbeats.
	start = time.Now()
	settled := 0
	for time.Since(start) < cfg.PhaseTimeout {
		f := c.statsOf("settle")
		if f == nil {
			break
		}
		if settled = int(atof(f[18])); settled >= cfg.Nodes {
			break
		}
		time.Sleep(time.Second)
	}
	acks := "sent on the stream (node protocol 3, raw: the node's one upgraded HTTP/1.1 connection pushes snapshots and carries acknowledgements back; no report)"
	if os.Getenv("FULCRUM_FLEET_PROTOCOL") == "3" {
		acks = "sent on the stream (node protocol 3: the node's one HTTP/2 request pushes snapshots and carries acknowledgements back; no report)"
	}
	if os.Getenv("FULCRUM_FLEET_PROTOCOL") == "2" || os.Getenv("FULCRUM_FLEET_FULL_SNAPSHOTS") == "1" {
		acks = "carried by polls (node protocol 2: the poll after a snapshot says which revision the node applied; no report)"
	}
	if cfg.ReportAcks {
		acks = "by reports (node protocol 1: a report after every snapshot)"
	}
	logf("settle: %d/%d nodes had their full first report answered after %.1f s (bound %s); acknowledgements %s",
		settled, cfg.Nodes, time.Since(start).Seconds(), cfg.PhaseTimeout, acks)

	// logFull prints the full first reports of a window (and their
	// re-sends after a 503), counted apart from heartbeats and acks.
	logFull := func(window string, f []string) {
		if f[10] == "0" {
			return
		}
		logf("full first reports (%s; with re-sends until answered): n=%s p50=%s ms p99=%s ms max=%s ms timeouts(>%s)=%s errors=%s",
			window, f[10], f[11], f[12], f[13], cfg.ReportTimeout, f[14], f[15])
	}

	// ackCounts is what a stats line says of acknowledgements so far: by
	// report, carried by polls.
	ackCounts := func(f []string) (int, int) {
		if f == nil {
			return 0, 0
		}
		return int(atof(f[16])), int(atof(f[17]))
	}

	// 3. Idle: heartbeats only. The API's CPU rate here is the baseline.
	c.mark()
	cpu0, t0 := cpuTime(), time.Now()
	time.Sleep(cfg.IdleWindow)
	idleRate := float64(cpuTime()-cpu0) / float64(time.Since(t0))
	idle := c.statsOf("idle")
	logf("idle: API process CPU %.1f%% of a core over %s with heartbeats only", 100*idleRate, cfg.IdleWindow)
	if idle != nil {
		answered := atof(idle[2]) - atof(idle[6]) - atof(idle[7])
		logf("reports (heartbeats, idle): n=%s p50=%s ms p99=%s ms max=%s ms timeouts(>%s)=%s errors=%s (%.0f answered 2xx/s, %.0f/s offered at most)",
			idle[2], idle[3], idle[4], idle[5], cfg.ReportTimeout, idle[6], idle[7], answered/cfg.IdleWindow.Seconds(),
			float64(cfg.Nodes)/cfg.Heartbeat.Seconds())
		logFull("idle", idle)
	}

	// 4. Writes: one member of one LB changes; every node must get it.
	writer := &api{endpoint: s.Endpoint, token: s.TenantToken, c: &http.Client{Timeout: cfg.WriteTimeout}}
	w0 := 0
	// runSeries makes n writes one after another, each waiting until every
	// node holds it (and, when waitActive, the member is `active`), then
	// settle; it measures the test process's CPU over the series.
	// acked counts the simulated nodes whose applied revision, as the API
	// recorded it, is above rev.
	acked := func(rev int64) (int, error) {
		var n int
		err := s.Store.PoolForTests().QueryRow(ctx, "SELECT count(*) FROM nodes WHERE name LIKE 'sim-%' AND applied_revision > $1", rev).Scan(&n)
		return n, err
	}
	runSeries := func(n int, waitActive bool, settle time.Duration) seriesResult {
		var r seriesResult
		r.cpu0, r.t0 = cpuTime(), time.Now()
		for w := w0; w < w0+n && time.Since(r.t0) < cfg.PhaseTimeout; w++ {
			o := lbs[(w*7919)%len(lbs)]
			member := o.members[w%2]
			prev := rev
			if _, m := c.holding(0); m > prev {
				prev = m
			}
			if _, _, err := writer.call(ctx, http.MethodPatch, "/v1/members/"+member, map[string]any{"weight": 2 + w%50}); err != nil {
				// An API too busy to answer the write within WriteTimeout: the
				// write counts as reaching no node and never `active`.
				logf("write %d failed: %v", w, err)
				r.failed++
				r.done++
				r.timeouts += cfg.Nodes
				r.activeTimeouts++
				for range cfg.Nodes {
					r.toNode = append(r.toNode, cfg.WriteTimeout)
				}
				r.toAll = append(r.toAll, cfg.WriteTimeout)
				r.toActive = append(r.toActive, cfg.WriteTimeout)
				continue
			}
			wrote := time.Now()
			activeAt, ackedAt := time.Time{}, time.Time{}
			deadline := wrote.Add(cfg.WriteTimeout)
			for time.Now().Before(deadline) {
				held, _ := c.holding(prev)
				if waitActive && activeAt.IsZero() {
					if _, obj, err := writer.call(ctx, http.MethodGet, "/v1/members/"+member, nil); err == nil && obj["provisioning_status"] == "active" {
						activeAt = time.Now()
					}
				}
				if waitActive && ackedAt.IsZero() {
					// Every node's acknowledgement recorded (by report or
					// carried by a poll), read from the database.
					if n, err := acked(prev); err == nil && n >= cfg.Nodes {
						ackedAt = time.Now()
					}
				}
				if held == cfg.Nodes && (!waitActive || !activeAt.IsZero() && !ackedAt.IsZero()) {
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
			r.done++
			if waitActive {
				if ackedAt.IsZero() {
					r.ackedTimeouts++
					r.toAcked = append(r.toAcked, cfg.WriteTimeout)
				} else {
					r.toAcked = append(r.toAcked, ackedAt.Sub(wrote))
				}
				if activeAt.IsZero() {
					r.activeTimeouts++
					r.toActive = append(r.toActive, cfg.WriteTimeout)
				} else {
					r.toActive = append(r.toActive, activeAt.Sub(wrote))
				}
			}
			// The write's revision: the lowest above prev that any node received.
			c.mu.Lock()
			wrev := int64(0)
			for _, rs := range c.got {
				for _, rc := range rs {
					if rc.rev > prev && (wrev == 0 || rc.rev < wrev) {
						wrev = rc.rev
					}
				}
			}
			worst := time.Duration(0)
			for _, rs := range c.got {
				var first *receipt
				for i := range rs {
					if wrev != 0 && rs[i].rev >= wrev {
						first = &rs[i]
						break
					}
				}
				if first == nil {
					r.timeouts++
					r.toNode = append(r.toNode, cfg.WriteTimeout)
					worst = cfg.WriteTimeout
					continue
				}
				d := max(first.at.Sub(wrote), 0)
				r.toNode = append(r.toNode, d)
				worst = max(worst, d)
				r.bytesPer = append(r.bytesPer, first.bytes)
			}
			c.mu.Unlock()
			r.toAll = append(r.toAll, worst)
			if wrev != 0 {
				rev = wrev
			}
			time.Sleep(settle) // the fleet settles (acks) before the next write
		}
		w0 += n
		r.series = time.Since(r.t0)
		r.cpu = cpuTime() - r.cpu0
		for _, d := range [][]time.Duration{r.toNode, r.toAll, r.toActive, r.toAcked} {
			sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
		}
		sort.Ints(r.bytesPer)
		return r
	}

	c.mark()
	sr := runSeries(cfg.Writes, true, 200*time.Millisecond)
	writes := c.statsOf("writes")
	toNode, toAll, toActive, bytesPer := sr.toNode, sr.toAll, sr.toActive, sr.bytesPer
	timeouts, done, failed := sr.timeouts, sr.done, sr.failed
	// Per answered write: a write the API never answered cost nothing to
	// fan out (the CPU spent meanwhile went elsewhere).
	perWrite, perWriteS := sr.perWrite(idleRate)
	if perWrite < 0 && done > failed {
		logf("API CPU per write (heartbeats on): below the idle baseline (%.1f ms): the idle load (reports) varies more than writes cost; not meaningful", perWrite/1e6)
	}
	bpl := 0
	bplS := "n/a"
	if len(bytesPer) > 0 {
		bpl = bytesPer[len(bytesPer)/2]
		bplS = strconv.Itoa(bpl)
	}
	logf("writes: %d member PATCHes (%d not answered within %s) in %.1f s (bound %s; each waits for every node and `active`, bound %s, then 200 ms)",
		done, failed, cfg.WriteTimeout, sr.series.Seconds(), cfg.PhaseTimeout, cfg.WriteTimeout)
	logf("write → node holds it: %d samples (write × node), p50=%s ms p99=%s ms max=%s ms, %d timed out (>%s)",
		len(toNode), msf(Percentile(toNode, 50)), msf(Percentile(toNode, 99)), msf(Percentile(toNode, 100)), timeouts, cfg.WriteTimeout)
	logf("write → every node holds it (per write): p50=%s ms max=%s ms", msf(Percentile(toAll, 50)), msf(Percentile(toAll, 100)))
	logf("write → `active` (member): p50=%s ms p99=%s ms, %d timed out (>%s)", msf(Percentile(toActive, 50)), msf(Percentile(toActive, 99)),
		sr.activeTimeouts, cfg.WriteTimeout)
	logf("write → every node's acknowledgement recorded (per write, read from the database): p50=%s ms p99=%s ms, %d timed out (>%s); acknowledgements %s",
		msf(Percentile(sr.toAcked, 50)), msf(Percentile(sr.toAcked, 99)), sr.ackedTimeouts, cfg.WriteTimeout, acks)
	logf("bytes to a node for a change of one LB among %d: p50=%s (wire, Accept-Encoding: gzip), min=%d max=%d, %d samples",
		cfg.LBs, bplS, first(bytesPer), last(bytesPer), len(bytesPer))
	logf("API CPU per write, heartbeats on: %s ms = (process CPU %s ms over the series − idle rate %.3f cores × %.1f s) / %d answered writes; "+
		"the test process holds the API and this driver (which polls the member for `active`), not Postgres nor the simulator",
		perWriteS, msf(sr.cpu), idleRate, sr.series.Seconds(), done-failed)
	reportP99 := "n/a"
	reports := 0
	if writes != nil {
		reports = int(atof(writes[2]))
		ar0, ap0 := ackCounts(idle)
		ar, ap := ackCounts(writes)
		logf("reports (acks by report + heartbeats, during writes): n=%s p50=%s ms p99=%s ms max=%s ms timeouts(>%s)=%s errors=%s; acknowledgements in the window: %d by report (counted in n), %d carried by polls or streams",
			writes[2], writes[3], writes[4], writes[5], cfg.ReportTimeout, writes[6], writes[7], ar-ar0, ap-ap0)
		logFull("during writes", writes)
		logf("simulator process CPU so far: user %s ms, sys %s ms", writes[8], writes[9])
	}
	if idle != nil {
		reportP99 = idle[4]
		if idle[6] != "0" && atof(idle[6])/max(atof(idle[2]), 1) >= 0.01 {
			reportP99 = "timeout"
		}
		reports += int(atof(idle[2]))
	}

	// 5. The API's CPU per write without the heartbeats' load: heartbeats
	// paused (each node still acks every snapshot, as the agent does), the
	// idle rate measured right before, writes waiting for every node only
	// (the driver does not poll for `active`).
	fmt.Fprintln(c.stdin, "heartbeats off")
	time.Sleep(3 * time.Second) // reports in flight end
	settleQ := settle(cfg.QuietIdle)
	gcQ0 := numGC()
	cpuQ, tQ := cpuTime(), time.Now()
	time.Sleep(cfg.QuietIdle)
	quietRate := float64(cpuTime()-cpuQ) / float64(time.Since(tQ))
	gcQ := numGC() - gcQ0
	if f := os.Getenv("FULCRUM_FLEET_CPUPROFILE"); f != "" {
		// A CPU profile of the API's process over this series alone.
		if out, err := os.Create(f); err == nil {
			if err := pprof.StartCPUProfile(out); err == nil {
				defer func() { pprof.StopCPUProfile(); out.Close() }()
			}
		}
	}
	// Allocation profiles before and after this series (compare them with
	// go tool pprof -diff_base): where the GC's work per write comes from.
	// A diagnostic: each is taken after a collection it forces (a profile
	// shows the allocations up to the last one), outside the series' CPU
	// but not without effect on it (no collection is due in the series).
	memProfile := func(suffix string) {
		if f := os.Getenv("FULCRUM_FLEET_MEMPROFILE"); f != "" {
			runtime.GC()
			if out, err := os.Create(f + suffix); err == nil {
				_ = pprof.Lookup("allocs").WriteTo(out, 0)
				out.Close()
			}
		}
	}
	memProfile(".before")
	var msQ0, msQ1 runtime.MemStats
	runtime.ReadMemStats(&msQ0)
	before := c.statsOf("before-quiet")
	c.mark()
	qr := runSeries(cfg.QuietWrites, false, 500*time.Millisecond)
	pprof.StopCPUProfile()
	runtime.ReadMemStats(&msQ1)
	memProfile("")
	if q := c.statsOf("quiet"); q != nil && before != nil {
		ar0, ap0 := ackCounts(before)
		ar, ap := ackCounts(q)
		logf("reports during the series with heartbeats paused (acknowledgements by report only): n=%s p50=%s ms p99=%s ms max=%s ms errors=%s; "+
			"acknowledgements: %d by report, %d carried by polls or streams", q[2], q[3], q[4], q[5], q[7], ar-ar0, ap-ap0)
	}

	// 6. The same without any report: the write and its fan-out alone.
	fmt.Fprintln(c.stdin, "acks off")
	time.Sleep(time.Second)
	settleF := settle(cfg.QuietIdle)
	cpuF, tF := cpuTime(), time.Now()
	time.Sleep(cfg.QuietIdle)
	fanRate := float64(cpuTime()-cpuF) / float64(time.Since(tF))
	fr := runSeries(cfg.QuietWrites, false, 200*time.Millisecond)
	fmt.Fprintln(c.stdin, "acks on")
	fmt.Fprintln(c.stdin, "heartbeats on")
	_, fanS := fr.perWrite(fanRate)
	logf("no reports at all: API process CPU %.1f%% of a core over %s idle (after %s settling); %d writes (%d not answered) in %.1f s, write → node holds it p50=%s ms p99=%s ms, %d timed out",
		100*fanRate, cfg.QuietIdle, settleF.Round(time.Second), fr.done, fr.failed, fr.series.Seconds(), msf(Percentile(fr.toNode, 50)), msf(Percentile(fr.toNode, 99)), fr.timeouts)
	logf("API CPU per write, no reports (the write and its fan-out alone): %s ms = (process CPU %s ms over the series − idle rate %.3f cores × %.1f s) / %d answered writes",
		fanS, msf(fr.cpu), fanRate, fr.series.Seconds(), fr.done-fr.failed)
	quiet, quietS := qr.perWrite(quietRate)
	if quiet < 0 && qr.done > qr.failed {
		logf("API CPU per write (heartbeats paused): below the idle baseline (%.1f ms): not meaningful", quiet/1e6)
	}
	logf("heartbeats paused: API process CPU %.1f%% of a core over %s idle (after %s settling); %d writes (%d not answered) in %.1f s, write → node holds it p50=%s ms p99=%s ms, %d timed out",
		100*quietRate, cfg.QuietIdle, settleQ.Round(time.Second), qr.done, qr.failed, qr.series.Seconds(), msf(Percentile(qr.toNode, 50)), msf(Percentile(qr.toNode, 99)), qr.timeouts)
	logf("heartbeats paused: %d GC cycles in the idle baseline", gcQ)
	logf("heartbeats paused: the test process allocated %.1f MiB per write over the series, %d GC cycles in it (heap %.0f MiB after)",
		float64(msQ1.TotalAlloc-msQ0.TotalAlloc)/(1<<20)/float64(max(qr.done-qr.failed, 1)), msQ1.NumGC-msQ0.NumGC, float64(msQ1.HeapAlloc)/(1<<20))
	logf("API CPU per write, heartbeats paused: %s ms = (process CPU %s ms over the series − idle rate %.3f cores × %.1f s) / %d answered writes; "+
		"the write, its fan-out to every node and their acks (this is the fleet line's api_cpu_ms_per_write)",
		quietS, msf(qr.cpu), quietRate, qr.series.Seconds(), qr.done-qr.failed)

	w2a := msf(Percentile(toNode, 99))
	if timeouts > len(toNode)/100 {
		w2a = "timeout"
	}
	// The same series' CPU with nothing subtracted: an upper bound on the
	// per-write figure (it also holds the API's idle work over the series),
	// which a noisy idle baseline cannot lower.
	_, rawS := qr.perWrite(0)
	logf("fleet: nodes=%d write_to_all_p99_ms=%s report_p99_ms=%s bytes_per_lb_change=%s api_cpu_ms_per_write=%s api_cpu_ms_per_write_raw=%s",
		cfg.Nodes, w2a, reportP99, bplS, quietS, rawS)
	return fleetResult{samples: len(toNode), quietSamples: len(qr.toNode), writeTimeouts: timeouts + qr.timeouts + fr.timeouts, reports: reports}
}

// seriesResult is what a series of writes measured.
type seriesResult struct {
	toNode, toAll, toActive, toAcked        []time.Duration
	bytesPer                                []int
	timeouts, activeTimeouts, ackedTimeouts int
	done, failed                            int
	cpu0, cpu, series                       time.Duration
	t0                                      time.Time
}

// perWrite is the API's CPU per answered write above the idle rate (ns), and
// as printed: "n/a" when no write was answered or it came out negative.
func (r seriesResult) perWrite(idleRate float64) (float64, string) {
	v := (float64(r.cpu) - idleRate*float64(r.series)) / float64(max(r.done-r.failed, 1))
	if r.done == r.failed || v < 0 {
		return v, "n/a"
	}
	return v, strconv.FormatFloat(v/1e6, 'f', 1, 64)
}

func atof(s string) float64 { v, _ := strconv.ParseFloat(s, 64); return v }

func first(v []int) int {
	if len(v) == 0 {
		return 0
	}
	return v[0]
}

func last(v []int) int {
	if len(v) == 0 {
		return 0
	}
	return v[len(v)-1]
}
