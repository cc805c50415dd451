// Package nodescale holds the scale benchmark of one real node (issue 10):
// a real API, agent and HAProxy grown to many load balancers and members,
// measured through the public API and traffic on loopback, the API and the
// agent each a process of its own as deployed (node_test.go;
// FULCRUM_SCALE_INPROCESS=1 runs them in the test process). Run it with
// `make bench-scale`; it is skipped otherwise.
package nodescale

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/fulcrumlb/fulcrum/api/store"
	"github.com/fulcrumlb/fulcrum/dataplane/agent"
	"github.com/fulcrumlb/fulcrum/internal/pgtest"
	"github.com/fulcrumlb/fulcrum/internal/teststack"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

type client struct {
	endpoint, token string
	c               *http.Client
	// refused counts the answers 429 and 503 (retried after 100 ms): a
	// request that met one took at least the API's refusal pause (250 ms)
	// and the retry's 100 ms longer.
	refused atomic.Int64
}

func (a *client) call(ctx context.Context, method, path string, body any) (map[string]any, error) {
	var b []byte
	if body != nil {
		b, _ = json.Marshal(body)
	}
	for attempt := 0; ; attempt++ {
		req, err := http.NewRequestWithContext(ctx, method, a.endpoint+path, bytes.NewReader(b))
		if err != nil {
			return nil, err
		}
		req.Header.Set("Authorization", "Bearer "+a.token)
		if body != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		res, err := a.c.Do(req)
		if err != nil {
			return nil, fmt.Errorf("%s %s: %w", method, path, err)
		}
		raw, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if (res.StatusCode == http.StatusTooManyRequests || res.StatusCode == http.StatusServiceUnavailable) && attempt < 20 {
			a.refused.Add(1)
			time.Sleep(100 * time.Millisecond)
			continue
		}
		var out map[string]any
		_ = json.Unmarshal(raw, &out)
		if res.StatusCode/100 != 2 {
			return out, fmt.Errorf("%s %s: HTTP %d: %s", method, path, res.StatusCode, raw)
		}
		return out, nil
	}
}

func (a *client) create(ctx context.Context, path string, body any) (map[string]any, error) {
	return a.call(ctx, http.MethodPost, path, body)
}

func envInt(k string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(k)); err == nil && v > 0 {
		return v
	}
	return def
}

func ms(d time.Duration) string {
	return strconv.FormatFloat(float64(d.Microseconds())/1000, 'f', 1, 64)
}

func pct(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted))*p/100+0.999999) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

func sorted(d []time.Duration) []time.Duration {
	d = append([]time.Duration(nil), d...)
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	return d
}

// procCPU is the user+system CPU of pid and its children (HAProxy's master
// and workers) from /proc.
func procCPU(pid int) time.Duration {
	return pidsCPU(withChildren(pid), true)
}

// withChildren is pid and its children.
func withChildren(pid int) []int {
	pids := []int{pid}
	if kids, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid)); err == nil {
		for _, f := range strings.Fields(string(kids)) {
			if k, err := strconv.Atoi(f); err == nil {
				pids = append(pids, k)
			}
		}
	}
	return pids
}

// postmaster is the pid of the Postgres server listening on the port of
// dbURL (its command line carries `-p <port>`), or 0.
func postmaster(dbURL string) int {
	u, err := url.Parse(dbURL)
	if err != nil || u.Port() == "" {
		return 0
	}
	want := "\x00-p\x00" + u.Port()
	dirs, _ := os.ReadDir("/proc")
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + d.Name() + "/cmdline")
		if err != nil {
			continue
		}
		c := string(b)
		if strings.Contains(filepath.Base(strings.SplitN(c, "\x00", 2)[0]), "postgres") && (strings.Contains(c, want+"\x00") || strings.HasSuffix(c, want)) {
			return pid
		}
	}
	return 0
}

// pidsCPU is the user+system CPU of pids from /proc (processes that ended
// count nothing); with reaped, also what their children that ended used.
func pidsCPU(pids []int, reaped ...bool) time.Duration {
	var total int64
	for i, p := range pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p))
		if err != nil {
			continue
		}
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
		if len(f) > 14 {
			for j, k := range []int{11, 12, 13, 14} { // utime stime cutime cstime
				if j >= 2 && (i > 0 || len(reaped) == 0 || !reaped[0]) {
					break
				}
				v, _ := strconv.ParseInt(f[k], 10, 64)
				total += v
			}
		}
	}
	return time.Duration(total) * 10 * time.Millisecond // USER_HZ = 100
}

// pgCPU is the CPU of the Postgres server pm (the postmaster, its live
// backends and the ones that ended), 0 when pm is 0.
func pgCPU(pm int) time.Duration {
	if pm == 0 {
		return 0
	}
	return pidsCPU(withChildren(pm), true)
}

// profile writes a CPU profile of this process (API and agent) to
// $FULCRUM_SCALE_PROFILE-<name>.pprof until the returned function is called,
// when that variable is set.
func profile(t *testing.T, name string) func() {
	base := os.Getenv("FULCRUM_SCALE_PROFILE")
	if base == "" {
		return func() {}
	}
	f, err := os.Create(base + "-" + name + ".pprof")
	if err != nil {
		t.Logf("profile: %v", err)
		return func() {}
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		t.Logf("profile: %v", err)
		return func() {}
	}
	return func() { pprof.StopCPUProfile(); f.Close() }
}

func selfCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestScale grows one real node to FULCRUM_SCALE_LBS load balancers (default
// 1000) of FULCRUM_SCALE_MEMBERS members (default 10) and measures.
// The agent heartbeats at its node group's interval (2 s by default) unless
// FULCRUM_SCALE_REPORT_MS says otherwise. FULCRUM_SCALE_ONLY=idle grows the node and measures only its idle CPU, in
// FULCRUM_SCALE_IDLE_WINDOWS windows of FULCRUM_SCALE_IDLE_SECONDS (default 1
// of 20 s; the figures are medians, and their mean is printed too).
func TestScale(t *testing.T) {
	if os.Getenv("FULCRUM_SCALE") != "1" {
		t.Skip("the scale benchmark runs with FULCRUM_SCALE=1 (make bench-scale)")
	}
	nLB, nMember := envInt("FULCRUM_SCALE_LBS", 1000), envInt("FULCRUM_SCALE_MEMBERS", 10)
	samples := envInt("FULCRUM_SCALE_SAMPLES", 20)
	smallSamples := envInt("FULCRUM_SCALE_SMALL_SAMPLES", 10)
	idleOnly := os.Getenv("FULCRUM_SCALE_ONLY") == "idle"
	idleWindows := envInt("FULCRUM_SCALE_IDLE_WINDOWS", 1)
	// FULCRUM_SCALE_PHASES (e.g. "member") runs only the phases named
	// (small, idle, member, create; comma-separated); the growth runs
	// unless small is the only one.
	phases := map[string]bool{"small": true, "idle": true, "member": true, "create": true}
	if v := os.Getenv("FULCRUM_SCALE_PHASES"); v != "" {
		phases = map[string]bool{}
		for _, p := range strings.Split(v, ",") {
			phases[strings.TrimSpace(p)] = true
		}
	}
	if idleOnly {
		phases = map[string]bool{"idle": true}
	}
	if !phases["small"] {
		smallSamples = 0
	}
	// Load balancers besides the nLB (the member phase's and the small and
	// create phases' creates; FULCRUM_SCALE_CREATE_ROUNDS below).
	extra := samples + smallSamples + max(envInt("FULCRUM_SCALE_CREATE_ROUNDS", 1), 1)*envInt("FULCRUM_SCALE_CREATE_SAMPLES", max(samples/4, 3))
	ctx := context.Background()
	logf := func(format string, args ...any) { fmt.Printf(format+"\n", args...) }
	prefix := 24
	for prefix > 16 && (1<<(32-prefix))-2 < nLB+extra+2 {
		prefix--
	}
	// The API and the agent each run as a process of their own (node_test.go)
	// unless FULCRUM_SCALE_INPROCESS=1, which FULCRUM_SCALE_PROFILE (their
	// CPU profiles) needs. FULCRUM_SCALE_STEPS=1 records their spans: in
	// process those this process ends, else those the processes export to
	// it (steps_test.go).
	external := os.Getenv("FULCRUM_SCALE_INPROCESS") != "1"
	if os.Getenv("FULCRUM_SCALE_PROFILE") != "" {
		if external {
			logf("FULCRUM_SCALE_PROFILE profiles the API and the agent in this process: running them in it (FULCRUM_SCALE_INPROCESS=1)")
		}
		external = false
	}
	steps := newStepRecorder(os.Getenv("FULCRUM_SCALE_STEPS") == "1", !external)
	var traceEnv []string
	if steps.enabled && external {
		traceEnv = startStepReceiver(t, steps)
		logf("steps: the API and the agent export their spans (OTLP) to this process; they trace everything, the growth included")
	}
	dbURL := pgtest.NewDatabase(t)
	pm := postmaster(dbURL)
	if pm == 0 {
		logf("the Postgres server of %s not found: its CPU is not counted", dbURL)
	}
	s := teststack.Start(t, teststack.Options{DatabaseURL: dbURL, VIPPrefixLen: prefix, Quotas: store.Quotas{LoadBalancers: nLB + extra + 10,
		Listeners: nLB + extra + 10, Pools: nLB + extra + 10, Members: nLB*nMember + 2*extra + 10, RoutingRules: 10, Certificates: 10},
		// Heartbeats at the node group's interval (2 s by default), as a
		// deployed agent sends them (the test stack's agents send one every
		// 300 ms); FULCRUM_SCALE_REPORT_MS sets another.
		AgentConfig: func(c *agent.Config) {
			c.ReportInterval = time.Duration(envInt("FULCRUM_SCALE_REPORT_MS", 0)) * time.Millisecond
		}})
	ag := startNode(t, s, dbURL, "scale", external, time.Duration(envInt("FULCRUM_SCALE_REPORT_MS", 0))*time.Millisecond, traceEnv)
	logf("node: %s", ag.shape())
	heartbeat := "the node group's, 2 s by default"
	if ms := envInt("FULCRUM_SCALE_REPORT_MS", 0); ms > 0 {
		heartbeat = fmt.Sprintf("every %d ms", ms)
	}
	ba, bb := teststack.StartBackend(t, "a"), teststack.StartBackend(t, "b")
	api := &client{endpoint: s.Endpoint, token: s.TenantToken, c: &http.Client{Timeout: 60 * time.Second}}
	bound := func(what string, d time.Duration, cond func() bool) bool {
		deadline := time.Now().Add(d)
		for time.Now().Before(deadline) {
			if cond() {
				return true
			}
			time.Sleep(10 * time.Millisecond)
		}
		logf("timeout: %s not within %s", what, d)
		return false
	}
	active := func(path string) bool {
		o, err := api.call(ctx, http.MethodGet, path, nil)
		return err == nil && o["provisioning_status"] == "active"
	}
	cl := teststack.NewClient(nil)
	cl.Timeout = 2 * time.Second
	cfgPath := filepath.Join(ag.stateDir, "haproxy.cfg")

	// bareCreate is the bare figure taken as a create is, by the same client
	// and probe (probeBare, small node only): the node's live config plus one
	// more frontend (on a VIP no load balancer uses, to the same backend
	// server) written to its haproxy.cfg, `haproxy -c -q` of it, a reload
	// through the master CLI, and the new frontend probed every 2 ms until a
	// 200. The bare figure above ends when Process().Reload confirms the new
	// worker (`show proc` every 10 ms, then the worker's CLI), some 10 ms
	// after the worker serves: a create's first 200 does not wait for that.
	// The node's config is then put back and reloaded (not timed).
	bareVIP := 0
	bareCreate := func() time.Duration {
		orig, err := os.ReadFile(cfgPath)
		if err != nil {
			logf("bare create: %v", err)
			return 0
		}
		bareVIP++
		addr := fmt.Sprintf("127.254.%d.%d", bareVIP/250, bareVIP%250+1)
		extra := fmt.Sprintf("\nfrontend bare_probe\n    bind %s:8080\n    default_backend bare_probe\n\nbackend bare_probe\n    server s1 127.0.0.1:%d\n", addr, ba.Port)
		defer func() {
			if err := os.WriteFile(cfgPath, orig, 0o600); err != nil {
				logf("bare create: put the config back: %v", err)
			}
			if err := ag.reload(ctx); err != nil {
				logf("bare create: reload the node's config: %v", err)
			}
		}()
		b0 := time.Now()
		if err := os.WriteFile(cfgPath, append(append([]byte(nil), orig...), extra...), 0o600); err != nil {
			logf("bare create: %v", err)
			return 0
		}
		if out, err := exec.Command("haproxy", "-c", "-q", "-f", cfgPath).CombinedOutput(); err != nil {
			logf("bare create: haproxy -c: %v: %s", err, out)
			return 0
		}
		done := make(chan error, 1)
		go func() { done <- ag.reload(ctx) }()
		u := "http://" + addr + ":8080/"
		var took time.Duration
		for time.Since(b0) < 10*time.Second {
			if _, err := teststack.Fetch(cl, u); err == nil {
				took = time.Since(b0)
				break
			}
			time.Sleep(2 * time.Millisecond)
		}
		if err := <-done; err != nil {
			logf("bare create: reload: %v", err)
		}
		return took
	}
	var bareProbed []time.Duration

	// createToFirst200 creates n load balancers (load balancer, pool, member,
	// listener, then probing the VIP until a 200), each followed by the bare
	// figure of the same run: `haproxy -c -q` of the node's live config and a
	// reload of its HAProxy through the master CLI (confirmed); with
	// probeBare, also bareCreate.
	createToFirst200 := func(name string, n int, probeBare bool) (first200, bare []time.Duration) {
		for i := 0; i < n; i++ {
			begin := time.Now()
			lb, err := api.create(ctx, "/v1/load-balancers", map[string]any{"name": fmt.Sprintf("%s-%d", name, i)})
			if err != nil {
				t.Fatal(err)
			}
			pool, _ := api.create(ctx, "/v1/pools", map[string]any{"load_balancer_id": lb["id"], "protocol": "http"})
			api.create(ctx, "/v1/members", map[string]any{"pool_id": pool["id"], "address": "127.0.0.1", "port": ba.Port})
			if _, err := api.create(ctx, "/v1/listeners", map[string]any{"load_balancer_id": lb["id"], "protocol": "http", "port": 8080, "default_pool_id": pool["id"]}); err != nil {
				t.Fatal(err)
			}
			u := fmt.Sprintf("http://%s:8080/", lb["vip_address"])
			// Probing every 2 ms (as the member change does): a coarser
			// probe would add its granularity to the figure, not to the bare.
			var took time.Duration
			for time.Since(begin) < time.Minute {
				if _, err := teststack.Fetch(cl, u); err == nil {
					took = time.Since(begin)
					break
				}
				time.Sleep(2 * time.Millisecond)
			}
			if took == 0 {
				logf("timeout: first 200 of a new load balancer not within a minute")
				took = time.Minute
			}
			first200 = append(first200, took)
			time.Sleep(2 * time.Second) // the node settles (reports) before the bare measure
			b0 := time.Now()
			if out, err := exec.Command("haproxy", "-c", "-q", "-f", cfgPath).CombinedOutput(); err != nil {
				logf("bare haproxy -c: %v: %s", err, out)
			}
			if err := ag.reload(ctx); err != nil {
				logf("bare reload: %v", err)
			}
			bare = append(bare, time.Since(b0))
			time.Sleep(time.Second)
			if probeBare {
				if d := bareCreate(); d > 0 {
					bareProbed = append(bareProbed, d)
				}
				time.Sleep(time.Second)
			}
		}
		return first200, bare
	}
	ratio := func(a, b []time.Duration, p float64) float64 {
		return float64(pct(sorted(a), p)) / float64(max(pct(sorted(b), 50), 1))
	}

	// 0. A small node (nothing else on it): create → first 200 against the
	// bare check + reload of the same config.
	sf, sb := createToFirst200("small", smallSamples, true)
	if !idleOnly {
		logf("create → first 200 on a small node (0–%d LBs): %d samples, p50=%s ms p99=%s ms; bare haproxy -c + reload of the same config: p50=%s ms p99=%s ms; ratio p50 %.2f, p99 %.2f",
			smallSamples, len(sf), ms(pct(sorted(sf), 50)), ms(pct(sorted(sf), 99)), ms(pct(sorted(sb), 50)), ms(pct(sorted(sb), 99)),
			ratio(sf, sb, 50), ratio(sf, sb, 99))
		if len(bareProbed) > 0 {
			logf("bare create on the small node, by the create's probe (config + one frontend, haproxy -c, reload, first 200 every 2 ms): %d samples, p50=%s ms p99=%s ms; create ratio to it p50 %.2f, p99 %.2f",
				len(bareProbed), ms(pct(sorted(bareProbed), 50)), ms(pct(sorted(bareProbed), 99)), ratio(sf, bareProbed, 50), ratio(sf, bareProbed, 99))
		}
	}

	if !phases["idle"] && !phases["member"] && !phases["create"] {
		// FULCRUM_SCALE_PHASES=small: nothing needs the grown node.
		logf("scale: small_create_first200_p50_ratio=%.2f small_create_first200_p99_ratio=%.2f small_create_first200_p50_ratio_same_probe=%.2f",
			ratio(sf, sb, 50), ratio(sf, sb, 99), ratio(sf, bareProbed, 50))
		return
	}

	// 1. Grow: nLB load balancers, each one http listener, one pool and
	// nMember members (addresses that take no traffic: nothing probes them).
	start := time.Now()
	var wg sync.WaitGroup
	next := make(chan int)
	var mu sync.Mutex
	var firstErr error
	lastListener := ""
	cctx, cancel := context.WithTimeout(ctx, 15*time.Minute)
	defer cancel()
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				err := func() error {
					lb, err := api.create(cctx, "/v1/load-balancers", map[string]any{"name": fmt.Sprintf("scale-%04d", i)})
					if err != nil {
						return err
					}
					pool, err := api.create(cctx, "/v1/pools", map[string]any{"load_balancer_id": lb["id"], "protocol": "http"})
					if err != nil {
						return err
					}
					for m := 0; m < nMember; m++ {
						if _, err := api.create(cctx, "/v1/members", map[string]any{"pool_id": pool["id"], "address": "127.0.0.1", "port": 20000 + m}); err != nil {
							return err
						}
					}
					l, err := api.create(cctx, "/v1/listeners", map[string]any{"load_balancer_id": lb["id"], "protocol": "http", "port": 8080, "default_pool_id": pool["id"]})
					if err == nil {
						mu.Lock()
						lastListener = l["id"].(string)
						mu.Unlock()
					}
					return err
				}()
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					cancel()
					return
				}
			}
		}()
	}
feed:
	for i := 0; i < nLB; i++ {
		select {
		case next <- i:
		case <-cctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	if firstErr != nil {
		t.Fatalf("growing: %v", firstErr)
	}
	created := time.Since(start)
	ok := bound("the last listener active", 10*time.Minute, func() bool { return active("/v1/listeners/" + lastListener) })
	cfgSize := int64(0)
	if st, err := os.Stat(cfgPath); err == nil {
		cfgSize = st.Size()
	}
	logf("grow: %d load balancers × (1 listener, 1 pool, %d members) = %d members created in %.1f s; on the node (active: %v) after %.1f s; haproxy.cfg %d bytes",
		nLB, nMember, nLB*nMember, created.Seconds(), ok, time.Since(start).Seconds(), cfgSize)

	// 2. Idle CPU of the test process (API + agent), HAProxy (master and workers).
	// The reports of the growth settle: the first heartbeats after changes
	// read everything once (see the agent's quietReports).
	if !phases["idle"] {
		idleWindows = 0
	} else {
		time.Sleep(10 * time.Second)
	}
	idleWindow := time.Duration(envInt("FULCRUM_SCALE_IDLE_SECONDS", 20)) * time.Second
	hp := ag.haproxyPID()
	var selfs, haps, pgs, totals []float64
	for w := 0; w < idleWindows; w++ {
		name := "idle"
		if w > 0 {
			name = fmt.Sprintf("idle-%d", w+1)
		}
		stopProfile := profile(t, name)
		// API + agent: this process in process; else the API's and the
		// agent's processes (this process, clients and probe idle, apart).
		self0, hap0, pg0, test0, t0 := ag.serviceCPU(), procCPU(hp), pgCPU(pm), selfCPU(), time.Now()
		time.Sleep(idleWindow)
		stopProfile()
		el := time.Since(t0)
		selfIdle, hapIdle, pgIdle, testIdle := ag.serviceCPU()-self0, procCPU(hp)-hap0, pgCPU(pm)-pg0, selfCPU()-test0
		idlePct := func(d time.Duration) float64 { return 100 * float64(d) / float64(el) }
		selfs, haps, pgs = append(selfs, idlePct(selfIdle)), append(haps, idlePct(hapIdle)), append(pgs, idlePct(pgIdle))
		totals = append(totals, idlePct(selfIdle+hapIdle+pgIdle))
		// The members have no health monitor: HAProxy runs no checks.
		where := "(this process)"
		if !ag.inProcess() {
			where = fmt.Sprintf("(their processes; this test process, not counted: %.1f%%)", idlePct(testIdle))
		}
		logf("idle CPU over %s: API + agent %s %.1f%% of a core, HAProxy %.1f%%, Postgres %.1f%%; total %.1f%% (no health checks configured; heartbeat %s)",
			idleWindow, where, selfs[w], haps[w], pgs[w], totals[w], heartbeat)
	}
	median := func(v []float64) float64 {
		if len(v) == 0 {
			return 0
		}
		v = append([]float64(nil), v...)
		sort.Float64s(v)
		return v[len(v)/2]
	}
	mean := func(v []float64) float64 {
		sum := 0.0
		for _, x := range v {
			sum += x
		}
		return sum / float64(len(v))
	}
	idleSelf, idleHap, idlePg, idleTotal := median(selfs), median(haps), median(pgs), median(totals)
	if idleOnly {
		// The mean counts the agent's periodic full reads as often as they
		// come (windows that hold one against those that do not).
		logf("idle CPU, mean of %d windows of %s: API + agent %.2f%%, HAProxy %.2f%%, Postgres %.2f%%; total %.2f%%",
			idleWindows, idleWindow, mean(selfs), mean(haps), mean(pgs), mean(totals))
		logf("scale: lbs=%d members=%d idle_windows=%d idle_cpu_api_agent_pct=%.1f idle_cpu_haproxy_pct=%.1f idle_cpu_postgres_pct=%.1f idle_cpu_total_pct=%.1f idle_cpu_total_mean_pct=%.2f",
			nLB, nLB*nMember, idleWindows, idleSelf, idleHap, idlePg, idleTotal, mean(totals))
		// FULCRUM_SCALE_IDLE_HOLD=<seconds> keeps the idle node up after the
		// windows, to look at its processes from outside.
		if hold := envInt("FULCRUM_SCALE_IDLE_HOLD", 0); hold > 0 {
			logf("holding the idle node for %d s: HAProxy pid %d, Postgres %s", hold, hp, dbURL)
			time.Sleep(time.Duration(hold) * time.Second)
		}
		return
	}

	// 3. Member change → effective, on one more load balancer with members
	// a and b (round robin), the node holding nLB others. "Effective" is
	// seen in traffic through the VIP: the probe sends one request at a
	// time, each on a new connection (probeFetch: a raw HTTP/1.1 request,
	// `Connection: close`), FULCRUM_SCALE_PROBE_US apart (default 500 µs;
	// 2 ms before session 7) — so that it sees the change about as soon
	// as HAProxy balances by it; the figure is when the response that shows
	// it was read: for a disable the first `b` (confirmed by 3 more `b`; an
	// `a` starts over), for an enable the first `a`. Member a has weight
	// 256 and b weight 1 (round robin): while both serve, 256 requests of
	// 257 go to a, so the first response after the change already shows it.
	// (Until session 8 both had weight 1, and a disable showed only at the
	// second `b` in a row: half of the changes took one more probe request
	// to be seen, 1–3 ms at load.)
	lb, err := api.create(ctx, "/v1/load-balancers", map[string]any{"name": "probe"})
	if err != nil {
		t.Fatal(err)
	}
	pool, _ := api.create(ctx, "/v1/pools", map[string]any{"load_balancer_id": lb["id"], "protocol": "http", "algorithm": "round_robin"})
	ma, _ := api.create(ctx, "/v1/members", map[string]any{"pool_id": pool["id"], "address": "127.0.0.1", "port": ba.Port, "weight": 256})
	api.create(ctx, "/v1/members", map[string]any{"pool_id": pool["id"], "address": "127.0.0.1", "port": bb.Port, "weight": 1})
	l, err := api.create(ctx, "/v1/listeners", map[string]any{"load_balancer_id": lb["id"], "protocol": "http", "port": 8080, "default_pool_id": pool["id"]})
	if err != nil {
		t.Fatal(err)
	}
	bound("the probe listener active", 5*time.Minute, func() bool { return active("/v1/listeners/" + l["id"].(string)) })
	probeAddr := fmt.Sprintf("%s:8080", lb["vip_address"])
	probeEvery := time.Duration(envInt("FULCRUM_SCALE_PROBE_US", 500)) * time.Microsecond
	current := func() int { // the PID of the newest worker: it changes at every reload
		ws, _ := ag.workers(ctx)
		for _, w := range ws {
			if !w.Old && w.Reloads == 0 {
				return w.PID
			}
		}
		return 0
	}
	// FULCRUM_SCALE_MEMBER_RUNS (default 1) repeats the member phase on the
	// node as grown, each run after an idle gap and printing its own lines;
	// the scale line holds the last run's figures.
	memberRuns := envInt("FULCRUM_SCALE_MEMBER_RUNS", 1)
	var m []time.Duration
	reloads := 0
	for run := 0; run < memberRuns; run++ {
		if run > 0 {
			time.Sleep(time.Duration(envInt("FULCRUM_SCALE_MEMBER_GAP_MS", 6000)) * time.Millisecond)
			logf("member phase, run %d of %d", run+1, memberRuns)
		}
		reloads = 0
		var member []time.Duration
		stopProfile := profile(t, map[bool]string{true: "member", false: fmt.Sprintf("member-%d", run+1)}[run == 0])
		memberTimeouts := 0
		bodies := []map[string]any{{"enabled": false}, {"enabled": true}}
		// FULCRUM_SCALE_WAITS=1 samples Postgres's sessions meanwhile.
		waits := sampleWaits(ctx, t, dbURL, phases["member"] && os.Getenv("FULCRUM_SCALE_WAITS") == "1")
		// FULCRUM_SCALE_STEPS=1 in process records the first run's spans
		// only: the runs after it are measured without tracing. Processes
		// trace every run anyway: each run is recorded.
		steps.on.Store(steps.enabled && phases["member"] && (run == 0 || len(traceEnv) > 0))
		// Decoding the processes' spans is garbage of this process, whose
		// collections would stall the probe: none during the run.
		gcPercent := -2
		if steps.on.Load() && len(traceEnv) > 0 {
			runtime.GC()
			gcPercent = debug.SetGCPercent(-1)
		}
		type change struct {
			begin, patched, effective, active time.Time
			refused, refusedActive            int64 // 429/503 answers to the PATCH, to the reads until active
			// fetches are the probe's requests until effective (each:
			// its start after begin, its duration, its answer), printed
			// for the changes over 25 ms: a slow answer of HAProxy or a
			// change that took long to be balanced by.
			fetches []probeRead
			gcs     gcs // the GC cycles ended between begin and active, by process
			// cpu is what the API, the agent (in process: this process,
			// in api) and HAProxy used from begin until the probe was
			// done, printed for the changes over 25 ms.
			cpu [3]time.Duration
		}
		refusedBefore := api.refused.Load()
		var each []change
		// FULCRUM_SCALE_MEMBER_SAMPLES changes (default 60, so that the p99 is
		// not simply the slowest of a few), every FULCRUM_SCALE_MEMBER_GAP_EVERY
		// th (default 10) after an idle gap of FULCRUM_SCALE_MEMBER_GAP_MS
		// (default 6,000 ms: longer than a poll view lives and than a
		// heartbeat), as changes come in use; the first follows the probe's
		// creation.
		memberSamples := envInt("FULCRUM_SCALE_MEMBER_SAMPLES", 60)
		gapEvery, gap := envInt("FULCRUM_SCALE_MEMBER_GAP_EVERY", 10), time.Duration(envInt("FULCRUM_SCALE_MEMBER_GAP_MS", 6000))*time.Millisecond
		afterGap := map[int]bool{0: true}
		for i := 0; i < memberSamples && phases["member"]; i++ {
			if i > 0 && i%gapEvery == 0 {
				time.Sleep(gap)
				afterGap[i] = true
			}
			stops := i%2 == 0
			w0 := current()
			r0 := api.refused.Load()
			gc0 := ag.gcCycles()
			cpu0 := ag.changeCPU(hp)
			begin := time.Now()
			if _, err := api.call(ctx, http.MethodPatch, "/v1/members/"+ma["id"].(string), bodies[i%2]); err != nil {
				t.Fatal(err)
			}
			patched := time.Now()
			r1 := api.refused.Load()
			var seen time.Time
			confirmations, done := 0, false
			var fetches []probeRead
			for time.Since(begin) < 10*time.Second && !done {
				f0 := time.Now()
				name, err := probeFetch(probeAddr)
				now := time.Now()
				shown := name
				if err != nil {
					shown = "[" + err.Error() + "]"
				}
				fetches = append(fetches, probeRead{f0.Sub(begin), now.Sub(f0), shown})
				switch {
				case !stops && name == "a":
					member, done = append(member, now.Sub(begin)), true
				case !stops:
				case name == "a":
					seen, confirmations = time.Time{}, 0
				case seen.IsZero() && name == "b":
					seen = now
				case !seen.IsZero() && name == "b":
					if confirmations++; confirmations == 3 {
						member, done = append(member, seen.Sub(begin)), true
					}
				}
				time.Sleep(probeEvery)
			}
			if !done {
				memberTimeouts++
				member = append(member, 10*time.Second)
			}
			effective := begin.Add(member[len(member)-1])
			cpu1 := ag.changeCPU(hp)
			for k := range cpu1 {
				cpu1[k] -= cpu0[k]
			}
			// Read every 50 ms: every 10 ms (as before session 5) these reads
			// alone came near the tenant's rate limit (50/s, burst 100), and
			// the next PATCH now and then met a 429, taking the API's refusal
			// pause and the client's retry (≈ 350 ms) into the figure.
			for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
				if active("/v1/members/" + ma["id"].(string)) {
					break
				}
			}
			each = append(each, change{begin, patched, effective, time.Now(), r1 - r0, api.refused.Load() - r1, fetches, ag.gcCycles().sub(gc0), cpu1})
			if current() != w0 {
				reloads++
			}
		}
		stopProfile()
		if steps.enabled && len(traceEnv) > 0 && steps.on.Load() {
			time.Sleep(stepExport) // the processes' last batch of spans
		}
		steps.on.Store(false)
		if gcPercent != -2 {
			debug.SetGCPercent(gcPercent)
		}
		lockWaits := waits()
		// Each change's steps, and what waited in Postgres meanwhile (sampled
		// pg_stat_activity: sessions waiting on a lock or running > 20 ms).
		for i, s := range each {
			gcText := strconv.FormatUint(s.gcs.self, 10)
			if !ag.inProcess() {
				gcText = s.gcs.String()
			}
			logf("member change %d at %s: PATCH answered %s ms (%d refused), effective %s ms, active %s ms (%d reads refused); GC cycles ended by active: %s", i, s.begin.Format("15:04:05.000"),
				ms(s.patched.Sub(s.begin)), s.refused, ms(s.effective.Sub(s.begin)), ms(s.active.Sub(s.begin)), s.refusedActive, gcText)
			if s.effective.Sub(s.begin) > 25*time.Millisecond {
				var b strings.Builder
				for _, f := range s.fetches {
					if f.at <= s.effective.Sub(s.begin) {
						fmt.Fprintf(&b, " +%s(%s)%s", ms(f.at), ms(f.took), f.name)
					}
				}
				logf("  probe reads (start +ms (took ms) answer):%s", b.String())
				logf("  CPU until the probe was done: API %s ms, agent %s ms, HAProxy %s ms (in process: API, agent and probe together under API)",
					ms(s.cpu[0]), ms(s.cpu[1]), ms(s.cpu[2]))
			}
			for _, w := range lockWaits {
				if !w.at.Before(s.begin) && w.at.Before(s.effective) {
					logf("  +%s ms: %s", ms(w.at.Sub(s.begin)), w.what)
				}
			}
			steps.print(logf, s.begin, s.effective)
		}
		if len(member) > 0 {
			// In the order taken, so an outlier can be placed (the first change
			// after the probe's creation, a periodic derivation, …).
			each := make([]string, len(member))
			for i, d := range member {
				each[i] = ms(d)
			}
			logf("member change → effective, each in order (ms): %s", strings.Join(each, " "))
		}
		steps.summary(logf, func(yield func(begin, effective time.Time) bool) {
			for _, s := range each {
				if !yield(s.begin, s.effective) {
					return
				}
			}
		})
		steps.enabled = steps.enabled && len(traceEnv) > 0 // in this process, the first run only
		if phases["member"] {
			logf("member phase: %d requests refused (429/503) and retried", api.refused.Load()-refusedBefore)
		}
		m = sorted(member)
		logf("member change → effective with %d LBs on the node: %d changes, p50=%s ms p99=%s ms max=%s ms, %d timed out (>10 s); %d of them reloaded HAProxy",
			nLB+1, len(m), ms(pct(m, 50)), ms(pct(m, 99)), ms(pct(m, 100)), memberTimeouts, reloads)
		if len(member) > 0 {
			// The changes right after an idle gap (or the probe's creation)
			// apart from the others: what a first change after a quiet spell
			// costs.
			var gapped, steady []time.Duration
			for i, d := range member {
				if afterGap[i] {
					gapped = append(gapped, d)
				} else {
					steady = append(steady, d)
				}
			}
			g, st := sorted(gapped), sorted(steady)
			var patched []time.Duration
			for _, s := range each {
				patched = append(patched, s.patched.Sub(s.begin))
			}
			pa := sorted(patched)
			var withGC, withoutGC []time.Duration
			for _, s := range each {
				if s.gcs.any(ag) > 0 {
					withGC = append(withGC, s.effective.Sub(s.begin))
				} else {
					withoutGC = append(withoutGC, s.effective.Sub(s.begin))
				}
			}
			wg, wog := sorted(withGC), sorted(withoutGC)
			who := "this process (API, agent, probe)"
			if !ag.inProcess() {
				who = "the API or the agent"
			}
			logf("member change → effective: %d changes with a GC cycle of %s ended by active p50=%s ms max=%s ms; the others (%d) p50=%s ms max=%s ms",
				len(wg), who, ms(pct(wg, 50)), ms(pct(wg, 100)), len(wog), ms(pct(wog, 50)), ms(pct(wog, 100)))
			if !ag.inProcess() {
				var self uint64
				for _, s := range each {
					self += min(s.gcs.self, 1)
				}
				logf("member change → effective: %d changes with a GC cycle of this process (clients, probe); last GC of the API: %s; of the agent: %s",
					self, ag.api.lastGCLine(), ag.agent.lastGCLine())
			}
			logf("member change → effective: after an idle gap of %s (%d changes) p50=%s ms max=%s ms; the others (%d) p50=%s ms p99=%s ms max=%s ms; PATCH answered p50=%s ms p99=%s ms",
				gap, len(g), ms(pct(g, 50)), ms(pct(g, 100)), len(st), ms(pct(st, 50)), ms(pct(st, 99)), ms(pct(st, 100)), ms(pct(pa, 50)), ms(pct(pa, 99)))
		}
	}

	// 4. Create → first 200 with nLB load balancers on the node, and a bare
	// `haproxy -c` + reload of the node's config in the same run
	// (FULCRUM_SCALE_CREATE_SAMPLES of them; a quarter of the samples, at
	// least 3, by default). The bare reload is one the agent did not make:
	// the next create's reload finds a worker whose counters it has not
	// read (it reads those of the load balancers with counts in it only).
	nCreate := envInt("FULCRUM_SCALE_CREATE_SAMPLES", max(samples/4, 3))
	if !phases["create"] {
		nCreate = 0
	}
	if nCreate > 0 && !phases["idle"] && !phases["member"] {
		// Right after the growth: the node settles first, as it has by
		// this phase in a whole run (the idle window waits as long before
		// measuring; the growth's last reports and derivations are still
		// on the way, and held the first create's writes up to 0.4 s).
		time.Sleep(10 * time.Second)
	}
	// FULCRUM_SCALE_CREATE_ROUNDS (default 1) repeats the create phase on
	// the same grown node, each round with its own bare figures and its own
	// line; the scale line reports the last round. (A growth takes 5–10
	// minutes on a loaded machine; rounds measure the phase's spread
	// without one each.)
	rounds := max(envInt("FULCRUM_SCALE_CREATE_ROUNDS", 1), 1)
	if nCreate == 0 {
		rounds = 1
	}
	// The figure divides the creates' p99 by the bare p50; with
	// fewer than 100 samples a p99 is the slowest of them, and the bare
	// figure has a tail of its own on a shared machine, so each line also
	// gives the tail against the tail: create p99 / bare p99 (same run).
	tails := func(a, b []time.Duration) float64 {
		return float64(pct(sorted(a), 99)) / float64(max(pct(sorted(b), 99), 1))
	}
	var first200, bare, allFirst200, allBare []time.Duration
	for r := 1; r <= rounds; r++ {
		first200, bare = createToFirst200(fmt.Sprintf("new%d", r), nCreate, false)
		allFirst200, allBare = append(allFirst200, first200...), append(allBare, bare...)
		f, b := sorted(first200), sorted(bare)
		logf("create → first 200 with %d LBs on the node: %d samples, p50=%s ms p99=%s ms", nLB+(r-1)*nCreate+1, len(f), ms(pct(f, 50)), ms(pct(f, 99)))
		logf("bare haproxy -c + reload of the same config (same run): p50=%s ms p99=%s ms; create p99 / bare p99 %.2f (the issue's ratio is create p99 / bare p50: %.2f)",
			ms(pct(b, 50)), ms(pct(b, 99)), tails(first200, bare), ratio(first200, bare, 99))
		if rounds > 1 {
			logf("create round %d of %d: create_first200_p50_ratio=%.2f create_first200_p99_ratio=%.2f bare_p50_ms=%s bare_p99_ms=%s create_first200_p99_to_bare_p99_ratio=%.2f",
				r, rounds, ratio(first200, bare, 50), ratio(first200, bare, 99), ms(pct(b, 50)), ms(pct(b, 99)), tails(first200, bare))
		}
	}
	if rounds > 1 {
		f, b := sorted(allFirst200), sorted(allBare)
		logf("create, all %d rounds together (%d creates, %d bare): create p50=%s p99=%s ms, bare p50=%s p99=%s ms: create_first200_p50_ratio=%.2f create_first200_p99_ratio=%.2f (issue: create p99 / bare p50) create_first200_p99_to_bare_p99_ratio=%.2f",
			rounds, len(f), len(b), ms(pct(f, 50)), ms(pct(f, 99)), ms(pct(b, 50)), ms(pct(b, 99)),
			ratio(allFirst200, allBare, 50), ratio(allFirst200, allBare, 99), tails(allFirst200, allBare))
	}
	logf("scale: lbs=%d members=%d member_change_p50_ms=%s member_change_p99_ms=%s member_change_reloads=%d create_first200_p50_ratio=%.2f create_first200_p99_ratio=%.2f small_create_first200_p50_ratio=%.2f small_create_first200_p99_ratio=%.2f idle_cpu_api_agent_pct=%.1f idle_cpu_haproxy_pct=%.1f idle_cpu_postgres_pct=%.1f idle_cpu_total_pct=%.1f",
		nLB, nLB*nMember, ms(pct(m, 50)), ms(pct(m, 99)), reloads, ratio(first200, bare, 50), ratio(first200, bare, 99),
		ratio(sf, sb, 50), ratio(sf, sb, 99), idleSelf, idleHap, idlePg, idleTotal)
}

// stepRecorder keeps, with FULCRUM_SCALE_STEPS=1, the spans ended while it
// is on (the member phase's runs; in process, the first run only), by this
// process or exported by the API's and the agent's: the API's Postgres statements,
// batches, prepares and connections (otelpgx), the agent's applies and
// runtime API calls. Each member change then prints those that began
// within it, and the phase the medians of the main steps. Tracing costs
// the process some CPU: the figures of a run with it are not those of a run
// without.
type stepRecorder struct {
	enabled bool
	on      atomic.Bool
	mu      sync.Mutex
	spans   []recorded
}

type recorded struct {
	name, text string
	start, end time.Time
	service    string // the process's ("api", "agent"); "" in process
}

// newStepRecorder records this process's spans when enabled and local (the
// API and the agent run in it), else those the processes export
// (startStepReceiver).
func newStepRecorder(enabled, local bool) *stepRecorder {
	r := &stepRecorder{enabled: enabled}
	if enabled && local {
		otel.SetTracerProvider(sdktrace.NewTracerProvider(sdktrace.WithSampler(onSampler{r}), sdktrace.WithSpanProcessor(r)))
	}
	return r
}

func (r *stepRecorder) OnStart(context.Context, sdktrace.ReadWriteSpan) {}
func (r *stepRecorder) Shutdown(context.Context) error                  { return nil }
func (r *stepRecorder) ForceFlush(context.Context) error                { return nil }
func (r *stepRecorder) OnEnd(s sdktrace.ReadOnlySpan) {
	if !r.on.Load() {
		return
	}
	text := ""
	for _, a := range s.Attributes() {
		if a.Key == attribute.Key("db.query.text") {
			text = strings.Join(strings.Fields(a.Value.AsString()), " ")
			text = text[:min(len(text), 70)]
		}
	}
	r.mu.Lock()
	r.spans = append(r.spans, recorded{name: s.Name(), text: text, start: s.StartTime(), end: s.EndTime()})
	r.mu.Unlock()
}

// onSampler records spans only while the recorder is on.
type onSampler struct{ r *stepRecorder }

func (o onSampler) ShouldSample(p sdktrace.SamplingParameters) sdktrace.SamplingResult {
	d := sdktrace.Drop
	if o.r.on.Load() {
		d = sdktrace.RecordAndSample
	}
	return sdktrace.SamplingResult{Decision: d, Tracestate: trace.SpanContextFromContext(p.ParentContext).TraceState()}
}

func (onSampler) Description() string { return "member phase only" }

// within are the spans begun in [from, to), by start.
func (r *stepRecorder) within(from, to time.Time) []recorded {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []recorded
	for _, s := range r.spans {
		if !s.start.Before(from) && s.start.Before(to) {
			out = append(out, s)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].start.Before(out[j].start) })
	return out
}

func (r *stepRecorder) print(logf func(string, ...any), begin, effective time.Time) {
	if !r.enabled {
		return
	}
	for _, s := range r.overlapping(begin, effective) {
		if strings.HasPrefix(s.name, "batch query") {
			continue // within their batch
		}
		at := "+" + ms(s.start.Sub(begin))
		if s.start.Before(begin) {
			at = "-" + ms(begin.Sub(s.start)) // begun before the change, still running
		}
		who := ""
		if s.service != "" {
			who = s.service + " "
		}
		logf("  %s ms %s ms: %s%s %s", at, ms(s.end.Sub(s.start)), who, s.name, s.text)
	}
	if c := r.chain(begin, effective); len(c) > 0 {
		parts := make([]string, len(c))
		for i, st := range c {
			parts[i] = st.name + " " + ms(st.at)
		}
		logf("  chain (ms after the PATCH began): %s", strings.Join(parts, ", "))
	}
}

// chainStep is one step of a change's way to HAProxy, as its offset from
// the PATCH's start.
type chainStep struct {
	name string
	at   time.Duration
}

// chainSteps name the steps of a change's chain, in order, with the span
// (or span event) that marks each and whether its end (else its start)
// does.
var chainSteps = []struct {
	name, span string
	end        bool
}{
	{"commit", "commit", true},
	{"notified", "stream.feed", false},
	{"view read", "snapshot.view", true},
	{"built", "snapshot.build", true},
	{"frame written", "stream.feed ▸ frame written", false},
	{"agent read", "agent.stream.frame", false},
	{"decoded", "agent.stream.frame ▸ decoded", false},
	{"apply begun", "agent.apply", false},
	{"runtime API begun", "haproxy.runtime", false},
	{"runtime API done", "haproxy.runtime", true},
}

// chain is the change's steps from the processes' spans (process shape
// only: in process, print lists the spans), and last when the probe saw it.
func (r *stepRecorder) chain(begin, effective time.Time) []chainStep {
	var out []chainStep
	spans := r.within(begin, effective)
	for _, cs := range chainSteps {
		for _, s := range spans {
			if s.service == "" {
				return nil
			}
			if s.name != cs.span && !(cs.span == "commit" && s.service == "api" && strings.HasPrefix(s.text, "commit")) {
				continue
			}
			at := s.start
			if cs.end {
				at = s.end
			}
			out = append(out, chainStep{cs.name, at.Sub(begin)})
			break
		}
	}
	if len(out) == 0 {
		return nil
	}
	return append(out, chainStep{"probe saw it", effective.Sub(begin)})
}

// overlapping are the spans that ran during [from, to): begun in it, or
// begun before and still running at from (a long-lived span, such as a
// stream's request, aside), by start.
func (r *stepRecorder) overlapping(from, to time.Time) []recorded {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []recorded
	for _, s := range r.spans {
		if s.start.Before(to) && (!s.start.Before(from) || s.end.After(from) && s.end.Sub(s.start) < time.Second) {
			out = append(out, s)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].start.Before(out[j].start) })
	return out
}

// summary prints the medians, over the changes, of: the first snapshot
// read's batch begun (the group part: its first statement reads the
// group's revision) and its duration, the agent's runtime API call done,
// and from there the probe seeing the change; and how many changes
// prepared a statement or opened a connection.
func (r *stepRecorder) summary(logf func(string, ...any), changes func(func(begin, effective time.Time) bool)) {
	if !r.enabled {
		return
	}
	var build, buildDur, runtime, seen []time.Duration
	prepares, connects := 0, 0
	for begin, effective := range changes {
		spans := r.within(begin, effective)
		var b, rt recorded
		prepared, connected := false, false
		for i, s := range spans {
			// The build's or the view's first batch: its first statement
			// is the snapshot read's BEGIN (since session 8) or the SET of
			// plan_cache_mode.
			if b.name == "" && s.name == "batch start" && i+1 < len(spans) &&
				(strings.Contains(spans[i+1].text, "plan_cache_mode") || strings.Contains(spans[i+1].text, "begin isolation level")) {
				b = s
			}
			if s.name == "haproxy.runtime" {
				rt = s
			}
			prepared = prepared || strings.HasPrefix(s.name, "prepare")
			connected = connected || s.name == "connect"
		}
		if b.name != "" {
			build, buildDur = append(build, b.start.Sub(begin)), append(buildDur, b.end.Sub(b.start))
		}
		if rt.name != "" {
			runtime, seen = append(runtime, rt.end.Sub(begin)), append(seen, effective.Sub(rt.end))
		}
		if prepared {
			prepares++
		}
		if connected {
			connects++
		}
	}
	p50 := func(d []time.Duration) string { return ms(pct(sorted(d), 50)) }
	// The process shape: each step's median and p90 over the changes.
	at := map[string][]time.Duration{}
	var order []string
	for begin, effective := range changes {
		for _, st := range r.chain(begin, effective) {
			if _, ok := at[st.name]; !ok {
				order = append(order, st.name)
			}
			at[st.name] = append(at[st.name], st.at)
		}
	}
	if len(order) > 0 {
		parts := make([]string, len(order))
		for i, name := range order {
			parts[i] = fmt.Sprintf("%s %s (p90 %s)", name, p50(at[name]), ms(pct(sorted(at[name]), 90)))
		}
		logf("member chain (ms after the PATCH began, medians over the changes): %s", strings.Join(parts, ", "))
	}
	logf("member steps (medians): first snapshot batch begun +%s ms, took %s ms (%d changes); runtime API done +%s ms (%d); runtime API done → probe saw it %s ms (p90 %s); changes that prepared a statement %d, opened a connection %d",
		p50(build), p50(buildDur), len(build), p50(runtime), len(runtime), p50(seen), ms(pct(sorted(seen), 90)), prepares, connects)
}

// gcCycles is how many GC cycles this process has completed.
func gcCycles() uint64 {
	m := []metrics.Sample{{Name: "/gc/cycles/total:gc-cycles"}}
	metrics.Read(m)
	if m[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return m[0].Value.Uint64()
}

// probeRead is one request of the member phase's probe: when it began
// (after the change's PATCH began), how long it took, what it answered.
type probeRead struct {
	at, took time.Duration
	name     string
}

// probeFetch sends one request to addr on a new connection and returns the
// body of a 200 (the backend's name), trimmed: what teststack.Fetch does,
// without an HTTP client's per-connection goroutines and buffers, so the
// probe can ask often without loading the machine.
func probeFetch(addr string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n"); err != nil {
		return "", err
	}
	b, err := io.ReadAll(c)
	if err != nil {
		return "", err
	}
	head, body, ok := bytes.Cut(b, []byte("\r\n\r\n"))
	if !ok || !bytes.HasPrefix(head, []byte("HTTP/1.1 200 ")) {
		return "", fmt.Errorf("probe %s: unexpected answer %q", addr, b)
	}
	return strings.TrimSpace(string(body)), nil
}

// wait is one pg_stat_activity sample of a session that waited or ran long.
type wait struct {
	at   time.Time
	what string
}

// sampleWaits samples, every 5 ms until the returned function is called, the
// sessions of the database at dbURL (other than its own) that wait on a lock
// or whose statement has run for over 20 ms. Off, it samples nothing.
func sampleWaits(ctx context.Context, t *testing.T, dbURL string, on bool) func() []wait {
	if !on {
		return func() []wait { return nil }
	}
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Logf("sample waits: %v", err)
		return func() []wait { return nil }
	}
	stop := make(chan struct{})
	done := make(chan []wait)
	go func() {
		defer conn.Close(context.Background())
		var out []wait
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				done <- out
				return
			case <-tick.C:
			}
			rows, _ := conn.Query(ctx, `SELECT pid, coalesce(wait_event_type, ''), coalesce(wait_event, ''), state,
  round(extract(epoch FROM clock_timestamp() - query_start) * 1000), round(extract(epoch FROM clock_timestamp() - xact_start) * 1000),
  left(regexp_replace(query, '\s+', ' ', 'g'), 90)
FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() AND state <> 'idle'
  AND (wait_event_type = 'Lock' OR clock_timestamp() - query_start > interval '20 ms')`)
			now := time.Now()
			for rows.Next() {
				var (
					pid           int
					wt, we, st, q string
					qms, xms      float64
				)
				if rows.Scan(&pid, &wt, &we, &st, &qms, &xms, &q) == nil {
					out = append(out, wait{now, fmt.Sprintf("pid %d %s %s/%s stmt %.0f ms xact %.0f ms: %s", pid, st, wt, we, qms, xms, q)})
				}
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				t.Logf("sample waits: %v", err)
				done <- out
				return
			}
		}
	}()
	return func() []wait { close(stop); return <-done }
}
