// Package nodescale holds the scale benchmark of one real node (issue 10):
// a real API, agent and HAProxy grown to many load balancers and members,
// measured through the public API and traffic on loopback. Run it with
// `make bench-scale`; it is skipped otherwise.
package nodescale

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
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

type client struct {
	endpoint, token string
	c               *http.Client
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
	var total int64
	pids := []int{pid}
	if kids, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid)); err == nil {
		for _, f := range strings.Fields(string(kids)) {
			if k, err := strconv.Atoi(f); err == nil {
				pids = append(pids, k)
			}
		}
	}
	for _, p := range pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p))
		if err != nil {
			continue
		}
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
		if len(f) > 12 {
			u, _ := strconv.ParseInt(f[11], 10, 64)
			st, _ := strconv.ParseInt(f[12], 10, 64)
			total += u + st
		}
	}
	return time.Duration(total) * 10 * time.Millisecond // USER_HZ = 100
}

func selfCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestScale grows one real node to FULCRUM_SCALE_LBS load balancers (default
// 1000) of FULCRUM_SCALE_MEMBERS members (default 10) and measures.
func TestScale(t *testing.T) {
	if os.Getenv("FULCRUM_SCALE") != "1" {
		t.Skip("the scale benchmark runs with FULCRUM_SCALE=1 (make bench-scale)")
	}
	nLB, nMember := envInt("FULCRUM_SCALE_LBS", 1000), envInt("FULCRUM_SCALE_MEMBERS", 10)
	samples := envInt("FULCRUM_SCALE_SAMPLES", 20)
	ctx := context.Background()
	logf := func(format string, args ...any) { fmt.Printf(format+"\n", args...) }
	prefix := 24
	for prefix > 16 && (1<<(32-prefix))-2 < nLB+samples+2 {
		prefix--
	}
	s := teststack.Start(t, teststack.Options{VIPPrefixLen: prefix, Quotas: store.Quotas{LoadBalancers: nLB + samples + 10,
		Listeners: nLB + samples + 10, Pools: nLB + samples + 10, Members: nLB*nMember + 2*samples + 10, RoutingRules: 10, Certificates: 10}})
	ag := s.StartAgent("scale")
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
	cfgPath := filepath.Join(filepath.Dir(filepath.Dir(ag.Process().MasterSocket())), "haproxy.cfg")
	if _, err := os.Stat(cfgPath); err != nil {
		cfgPath = ""
		_ = filepath.WalkDir(filepath.Dir(filepath.Dir(ag.Process().MasterSocket())), func(p string, d os.DirEntry, err error) error {
			if err == nil && !d.IsDir() && d.Name() == "haproxy.cfg" && cfgPath == "" {
				cfgPath = p
			}
			return nil
		})
	}
	cfgSize := int64(0)
	if st, err := os.Stat(cfgPath); err == nil {
		cfgSize = st.Size()
	}
	logf("grow: %d load balancers × (1 listener, 1 pool, %d members) = %d members created in %.1f s; on the node (active: %v) after %.1f s; haproxy.cfg %d bytes",
		nLB, nMember, nLB*nMember, created.Seconds(), ok, time.Since(start).Seconds(), cfgSize)

	// 2. Idle CPU of the test process (API + agent), HAProxy (master and workers).
	time.Sleep(5 * time.Second) // reports of the growth settle
	const idleWindow = 10 * time.Second
	hp := ag.Process().PID()
	self0, hap0, t0 := selfCPU(), procCPU(hp), time.Now()
	time.Sleep(idleWindow)
	el := time.Since(t0)
	selfIdle, hapIdle := selfCPU()-self0, procCPU(hp)-hap0
	logf("idle CPU over %s: API + agent (this process) %.1f%% of a core, HAProxy %.1f%% (Postgres not counted)",
		idleWindow, 100*float64(selfIdle)/float64(el), 100*float64(hapIdle)/float64(el))

	// 3. Member change → effective, on one more load balancer with members
	// a and b (round robin), the node holding nLB others.
	lb, err := api.create(ctx, "/v1/load-balancers", map[string]any{"name": "probe"})
	if err != nil {
		t.Fatal(err)
	}
	pool, _ := api.create(ctx, "/v1/pools", map[string]any{"load_balancer_id": lb["id"], "protocol": "http", "algorithm": "round_robin"})
	ma, _ := api.create(ctx, "/v1/members", map[string]any{"pool_id": pool["id"], "address": "127.0.0.1", "port": ba.Port})
	api.create(ctx, "/v1/members", map[string]any{"pool_id": pool["id"], "address": "127.0.0.1", "port": bb.Port})
	l, err := api.create(ctx, "/v1/listeners", map[string]any{"load_balancer_id": lb["id"], "protocol": "http", "port": 8080, "default_pool_id": pool["id"]})
	if err != nil {
		t.Fatal(err)
	}
	bound("the probe listener active", 5*time.Minute, func() bool { return active("/v1/listeners/" + l["id"].(string)) })
	url := fmt.Sprintf("http://%s:8080/", lb["vip_address"])
	cl := teststack.NewClient(nil)
	cl.Timeout = 2 * time.Second
	current := func() int { // the PID of the newest worker: it changes at every reload
		ws, _ := ag.Process().Workers(ctx)
		for _, w := range ws {
			if !w.Old && w.Reloads == 0 {
				return w.PID
			}
		}
		return 0
	}
	reloads := 0
	var member []time.Duration
	memberTimeouts := 0
	bodies := []map[string]any{{"enabled": false}, {"enabled": true}}
	for i := 0; i < samples; i++ {
		stops := i%2 == 0
		w0 := current()
		begin := time.Now()
		if _, err := api.call(ctx, http.MethodPatch, "/v1/members/"+ma["id"].(string), bodies[i%2]); err != nil {
			t.Fatal(err)
		}
		var seen time.Time
		prev, confirmations, done := "", 0, false
		for time.Since(begin) < 10*time.Second && !done {
			name, _ := teststack.Fetch(cl, url)
			now := time.Now()
			switch {
			case !stops && name == "a":
				member, done = append(member, now.Sub(begin)), true
			case !stops:
			case name == "a":
				seen, confirmations = time.Time{}, 0
			case seen.IsZero() && prev == "b" && name == "b":
				seen = now
			case !seen.IsZero() && name == "b":
				if confirmations++; confirmations == 3 {
					member, done = append(member, seen.Sub(begin)), true
				}
			}
			prev = name
			time.Sleep(2 * time.Millisecond)
		}
		if !done {
			memberTimeouts++
			member = append(member, 10*time.Second)
		}
		bound("the member active", time.Minute, func() bool { return active("/v1/members/" + ma["id"].(string)) })
		if current() != w0 {
			reloads++
		}
	}
	m := sorted(member)
	logf("member change → effective with %d LBs on the node: %d changes, p50=%s ms p99=%s ms max=%s ms, %d timed out (>10 s); %d of them reloaded HAProxy",
		nLB+1, len(m), ms(pct(m, 50)), ms(pct(m, 99)), ms(pct(m, 100)), memberTimeouts, reloads)

	// 4. Create → first 200 with nLB load balancers on the node, and a bare
	// `haproxy -c` + reload of the node's config in the same run.
	var first200, bare []time.Duration
	createSamples := max(samples/4, 3)
	for i := 0; i < createSamples; i++ {
		begin := time.Now()
		lb, err := api.create(ctx, "/v1/load-balancers", map[string]any{"name": fmt.Sprintf("new-%d", i)})
		if err != nil {
			t.Fatal(err)
		}
		pool, _ := api.create(ctx, "/v1/pools", map[string]any{"load_balancer_id": lb["id"], "protocol": "http"})
		api.create(ctx, "/v1/members", map[string]any{"pool_id": pool["id"], "address": "127.0.0.1", "port": ba.Port})
		if _, err := api.create(ctx, "/v1/listeners", map[string]any{"load_balancer_id": lb["id"], "protocol": "http", "port": 8080, "default_pool_id": pool["id"]}); err != nil {
			t.Fatal(err)
		}
		u := fmt.Sprintf("http://%s:8080/", lb["vip_address"])
		got := bound("first 200 of a new load balancer", time.Minute, func() bool { _, err := teststack.Fetch(cl, u); return err == nil })
		if got {
			first200 = append(first200, time.Since(begin))
		} else {
			first200 = append(first200, time.Minute)
		}
		time.Sleep(2 * time.Second) // the node settles (reports) before the bare measure
		// Bare: check the node's live config and reload HAProxy with it.
		b0 := time.Now()
		if cfgPath != "" {
			if out, err := exec.Command("haproxy", "-c", "-q", "-f", cfgPath).CombinedOutput(); err != nil {
				logf("bare haproxy -c: %v: %s", err, out)
			}
		}
		if err := ag.Process().Reload(ctx); err != nil {
			logf("bare reload: %v", err)
		}
		bare = append(bare, time.Since(b0))
		time.Sleep(time.Second)
	}
	f, b := sorted(first200), sorted(bare)
	logf("create → first 200 with %d LBs on the node: %d samples, p50=%s ms p99=%s ms", nLB+1, len(f), ms(pct(f, 50)), ms(pct(f, 99)))
	logf("bare haproxy -c + reload of the same config (same run): p50=%s ms p99=%s ms", ms(pct(b, 50)), ms(pct(b, 99)))
	ratio50 := float64(pct(f, 50)) / float64(max(pct(b, 50), 1))
	ratio99 := float64(pct(f, 99)) / float64(max(pct(b, 50), 1))
	logf("scale: lbs=%d members=%d member_change_p50_ms=%s member_change_p99_ms=%s member_change_reloads=%d create_first200_p50_ratio=%.2f create_first200_p99_ratio=%.2f idle_cpu_api_agent_pct=%.1f idle_cpu_haproxy_pct=%.1f",
		nLB, nLB*nMember, ms(pct(m, 50)), ms(pct(m, 99)), reloads, ratio50, ratio99, 100*float64(selfIdle)/float64(el), 100*float64(hapIdle)/float64(el))
}
