package acceptance

import (
	"context"
	"fmt"
	"net/http"
	"net/http/cookiejar"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fulcrumlb/fulcrum/internal/pgtest"
	"github.com/fulcrumlb/fulcrum/internal/teststack"
)

// lbSetup is one load balancer with an http listener and a pool.
type lbSetup struct {
	LB, Pool, Listener, VIP string
	Members                 map[string]string // backend name → member id
	URL                     string
}

// newLB creates an LB, a pool (extra fields merged in), one member per backend
// and an http listener on port, then waits until all of it is active.
func (s *stack) newLB(port int, pool map[string]any, backends ...*teststack.Backend) *lbSetup {
	s.t.Helper()
	lb := s.Create("/v1/load-balancers", map[string]any{"name": fmt.Sprintf("lb-%d", port)})
	out := &lbSetup{LB: lb["id"].(string), VIP: lb["vip_address"].(string), Members: map[string]string{}}
	body := map[string]any{"load_balancer_id": out.LB, "protocol": "http"}
	for k, v := range pool {
		body[k] = v
	}
	out.Pool = s.Create("/v1/pools", body)["id"].(string)
	for _, b := range backends {
		out.Members[b.Name] = s.Create("/v1/members", map[string]any{"pool_id": out.Pool, "address": "127.0.0.1", "port": b.Port})["id"].(string)
	}
	out.Listener = s.Create("/v1/listeners", map[string]any{"load_balancer_id": out.LB, "protocol": "http", "port": port,
		"default_pool_id": out.Pool})["id"].(string)
	s.WaitActive("/v1/listeners/" + out.Listener)
	for _, id := range out.Members {
		s.WaitActive("/v1/members/" + id)
	}
	out.URL = fmt.Sprintf("http://%s:%d/", out.VIP, port)
	return out
}

func TestBalancingWeightsDisabledAndBackup(t *testing.T) {
	t.Parallel()
	s := newStack(t, pgtest.NewDatabase(t))
	s.StartAgent("node-1")
	a, b, c := teststack.StartBackend(t, "a"), teststack.StartBackend(t, "b"), teststack.StartBackend(t, "c")
	lb := s.newLB(8080, map[string]any{"algorithm": "round_robin",
		"health_monitor": map[string]any{"type": "tcp", "interval_ms": 200, "timeout_ms": 200, "rise": 1, "fall": 1}}, a, b, c)
	cl := teststack.NewClient(nil)

	got := distribution(t, cl, lb.URL, 30)
	for _, n := range []string{"a", "b", "c"} {
		if got[n] < 8 || got[n] > 12 {
			t.Fatalf("round robin over 3 members: %v", got)
		}
	}

	s.MustCall(200, "PATCH", "/v1/members/"+lb.Members["b"], map[string]any{"weight": 3})
	s.MustCall(200, "PATCH", "/v1/members/"+lb.Members["c"], map[string]any{"enabled": false})
	s.WaitActive("/v1/members/" + lb.Members["b"])
	s.WaitActive("/v1/members/" + lb.Members["c"])
	got = distribution(t, cl, lb.URL, 80)
	if got["c"] != 0 {
		t.Fatalf("a disabled member got traffic: %v", got)
	}
	if ratio := float64(got["b"]) / float64(got["a"]); ratio < 2.4 || ratio > 3.6 {
		t.Fatalf("weights 1:3 gave %v (ratio %.2f)", got, ratio)
	}

	// c becomes a backup: it serves only once a and b are down.
	s.MustCall(200, "PATCH", "/v1/members/"+lb.Members["c"], map[string]any{"enabled": true, "backup": true})
	s.WaitActive("/v1/members/" + lb.Members["c"])
	got = distribution(t, cl, lb.URL, 20)
	if got["c"] != 0 {
		t.Fatalf("backup served while the others were up: %v", got)
	}
	a.Stop()
	b.Stop()
	teststack.WaitFor(t, "backup to take over", 15*time.Second, func() bool {
		name, err := teststack.Fetch(cl, lb.URL)
		return err == nil && name == "c"
	})
	got = distribution(t, cl, lb.URL, 10)
	if got["c"] != 10 {
		t.Fatalf("with a and b down everything should reach the backup: %v", got)
	}
}

func TestMemberHealthDrivesStatusAndTraffic(t *testing.T) {
	t.Parallel()
	s := newStack(t, pgtest.NewDatabase(t))
	s.StartAgent("node-1")
	a, b := teststack.StartBackend(t, "a"), teststack.StartBackend(t, "b")
	lb := s.newLB(8081, map[string]any{"health_monitor": map[string]any{"type": "http", "path": "/health",
		"interval_ms": 200, "timeout_ms": 200, "rise": 1, "fall": 1, "expected_codes": "200"}}, a, b)
	cl := teststack.NewClient(nil)
	memberStatus := func(id string) string {
		_, tree := s.Call("GET", "/v1/load-balancers/"+lb.LB+"/status", nil)
		for _, p := range tree["pools"].([]any) {
			for _, m := range p.(map[string]any)["members"].([]any) {
				if mm := m.(map[string]any); mm["id"] == id {
					return mm["operating_status"].(string)
				}
			}
		}
		return ""
	}
	teststack.WaitFor(t, "both members online", 15*time.Second, func() bool {
		return memberStatus(lb.Members["a"]) == "online" && memberStatus(lb.Members["b"]) == "online"
	})
	b.Stop()
	teststack.WaitFor(t, "member b offline", 15*time.Second, func() bool { return memberStatus(lb.Members["b"]) == "offline" })
	if got := distribution(t, cl, lb.URL, 20); got["a"] != 20 {
		t.Fatalf("traffic should avoid the offline member: %v", got)
	}
	_, tree := s.Call("GET", "/v1/load-balancers/"+lb.LB+"/status", nil)
	if p := tree["pools"].([]any)[0].(map[string]any); p["operating_status"] != "degraded" {
		t.Fatalf("pool with one of two members down: %v", p)
	}
	b.Restart(t)
	teststack.WaitFor(t, "member b online again", 15*time.Second, func() bool { return memberStatus(lb.Members["b"]) == "online" })
	teststack.WaitFor(t, "traffic back on b", 10*time.Second, func() bool { return distribution(t, cl, lb.URL, 10)["b"] > 0 })
}

func TestPersistenceAndDeniedCIDRs(t *testing.T) {
	t.Parallel()
	s := newStack(t, pgtest.NewDatabase(t))
	s.StartAgent("node-1")
	a, b, c := teststack.StartBackend(t, "a"), teststack.StartBackend(t, "b"), teststack.StartBackend(t, "c")

	cookie := s.newLB(8082, map[string]any{"session_persistence": map[string]any{"type": "cookie_insert", "cookie_name": "SRV"}}, a, b, c)
	jar, _ := cookiejar.New(nil)
	sticky := teststack.NewClient(jar)
	first, err := teststack.Fetch(sticky, cookie.URL)
	if err != nil {
		t.Fatal(err)
	}
	if got := distribution(t, sticky, cookie.URL, 20); got[first] != 20 {
		t.Fatalf("cookie persistence: first answer from %s, then %v", first, got)
	}
	if got := distribution(t, teststack.NewClient(nil), cookie.URL, 30); len(got) < 2 {
		t.Fatalf("without the cookie requests should spread: %v", got)
	}

	src := s.newLB(8083, map[string]any{"session_persistence": map[string]any{"type": "source_ip"}}, a, b, c)
	if got := distribution(t, teststack.NewClient(nil), src.URL, 20); len(got) != 1 {
		t.Fatalf("source-ip persistence should keep 127.0.0.1 on one member: %v", got)
	}

	s.MustCall(200, "PATCH", "/v1/listeners/"+cookie.Listener, map[string]any{"denied_cidrs": []string{"127.0.0.1/32"}})
	s.WaitActive("/v1/listeners/" + cookie.Listener)
	if _, err := teststack.Fetch(teststack.NewClient(nil), cookie.URL); err == nil {
		t.Fatal("denied_cidrs 127.0.0.1/32 should refuse this client")
	}
	if _, err := teststack.Fetch(teststack.NewClient(nil), src.URL); err != nil {
		t.Fatalf("the other load balancer must be unaffected: %v", err)
	}
}

func TestMemberChangesNeedNoReload(t *testing.T) {
	t.Parallel()
	s := newStack(t, pgtest.NewDatabase(t))
	ag := s.StartAgent("node-1")
	a, b, c := teststack.StartBackend(t, "a"), teststack.StartBackend(t, "b"), teststack.StartBackend(t, "c")
	lb := s.newLB(8084, nil, a, b)
	cl := teststack.NewClient(nil)
	ctx := context.Background()
	workers := func() string {
		ws, err := ag.Process().Workers(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var cur []string
		for _, w := range ws {
			if !w.Old {
				cur = append(cur, fmt.Sprint(w.PID))
			}
		}
		return strings.Join(cur, ",")
	}
	before := workers()

	// Add a member.
	mc := s.Create("/v1/members", map[string]any{"pool_id": lb.Pool, "address": "127.0.0.1", "port": c.Port})["id"].(string)
	s.WaitActive("/v1/members/" + mc)
	teststack.WaitFor(t, "new member to get traffic", 10*time.Second, func() bool { return distribution(t, cl, lb.URL, 9)["c"] > 0 })

	// Change a weight.
	s.MustCall(200, "PATCH", "/v1/members/"+lb.Members["a"], map[string]any{"weight": 5})
	s.WaitActive("/v1/members/" + lb.Members["a"])
	if got := distribution(t, cl, lb.URL, 70); got["a"] < 35 {
		t.Fatalf("weight 5:1:1 should favour a: %v", got)
	}

	// Drain (weight 0): no new connections.
	s.MustCall(200, "PATCH", "/v1/members/"+lb.Members["a"], map[string]any{"weight": 0})
	s.WaitActive("/v1/members/" + lb.Members["a"])
	if got := distribution(t, cl, lb.URL, 20); got["a"] != 0 {
		t.Fatalf("a drained member got new connections: %v", got)
	}

	if after := workers(); after != before {
		t.Fatalf("member changes started a new HAProxy worker: before %s, after %s", before, after)
	}
}

func TestHitlessReloadsUnderLoad(t *testing.T) {
	t.Parallel()
	s := newStack(t, pgtest.NewDatabase(t))
	ag := s.StartAgent("node-1")
	a, b := teststack.StartBackend(t, "a"), teststack.StartBackend(t, "b")
	lb := s.newLB(8085, nil, a, b)

	var ok, failed atomic.Int64
	var firstErr atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func(keepAlive bool) {
			defer wg.Done()
			c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: !keepAlive}}
			for n := 0; n < 100000; n++ {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := teststack.Fetch(c, lb.URL); err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
				} else {
					ok.Add(1)
				}
			}
		}(i%2 == 0)
	}
	const reloads = 50
	// The master's reload counter, from the master CLI's `show proc`.
	reloadsSoFar := func() int {
		out, err := ag.Process().MasterCommand(context.Background(), "show proc")
		if err != nil {
			t.Fatal(err)
		}
		m := regexp.MustCompile(`(?m)^\d+\s+master\s+(\d+)`).FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("no master line in show proc: %q", out)
		}
		n, _ := strconv.Atoi(m[1])
		return n
	}
	start := reloadsSoFar()
	for i := 0; i < reloads; i++ {
		// Every change of the pool's retries needs a reload.
		s.MustCall(200, "PATCH", "/v1/pools/"+lb.Pool, map[string]any{"retries": i%2 + 1})
		s.WaitActive("/v1/pools/" + lb.Pool)
	}
	close(stop)
	wg.Wait()
	if got := reloadsSoFar() - start; got < reloads {
		t.Fatalf("HAProxy reloaded %d times, want %d", got, reloads)
	}
	if failed.Load() != 0 {
		t.Fatalf("%d of %d requests failed across %d reloads; first: %v", failed.Load(), failed.Load()+ok.Load(), reloads, firstErr.Load())
	}
	if ok.Load() < reloads {
		t.Fatalf("the load loop made only %d requests", ok.Load())
	}
	t.Logf("%d requests, 0 failed, across %d reloads", ok.Load(), reloads)
}

func TestOneBadLoadBalancerDoesNotBlockOthers(t *testing.T) {
	t.Parallel()
	s := newStack(t, pgtest.NewDatabase(t))
	s.StartAgent("node-1")
	a, b, c := teststack.StartBackend(t, "a"), teststack.StartBackend(t, "b"), teststack.StartBackend(t, "c")
	bad := s.newLB(8086, nil, a)
	good := s.newLB(8087, nil, b)

	// A regex Go's RE2 accepts but HAProxy's PCRE2 (non-UTF mode) rejects.
	rule := s.Create("/v1/routing-rules", map[string]any{"listener_id": bad.Listener, "priority": 1,
		"conditions": []any{map[string]any{"field": "path", "match": "regex", "values": []string{`^/\x{100}`}}},
		"action":     map[string]any{"type": "deny"}})
	// The rule that broke it reads error with HAProxy's message; its load
	// balancer error (or degraded, when the node names the rule).
	var r map[string]any
	teststack.WaitFor(t, "the rule in error", 20*time.Second, func() bool {
		_, r = s.Call("GET", "/v1/routing-rules/"+rule["id"].(string), nil)
		return r["provisioning_status"] == "error"
	})
	if msg, _ := r["status_message"].(string); msg == "" {
		t.Fatalf("error without HAProxy's message: %v", r)
	}
	if _, lbState := s.Call("GET", "/v1/load-balancers/"+bad.LB, nil); !showsError(lbState) {
		t.Fatalf("the load balancer of a rejected rule: %v", lbState)
	}
	// The bad LB keeps serving its last good version.
	if name, err := teststack.Fetch(teststack.NewClient(nil), bad.URL); err != nil || name != "a" {
		t.Fatalf("last good version of the bad LB: %q, %v", name, err)
	}
	// The other LB on the node still gets updates.
	mc := s.Create("/v1/members", map[string]any{"pool_id": good.Pool, "address": "127.0.0.1", "port": c.Port})["id"].(string)
	s.WaitActive("/v1/members/" + mc)
	teststack.WaitFor(t, "good LB to use its new member", 10*time.Second, func() bool { return distribution(t, teststack.NewClient(nil), good.URL, 6)["c"] > 0 })
	// Fixing the bad LB makes it active again.
	s.MustCall(202, "DELETE", "/v1/routing-rules/"+rule["id"].(string), nil)
	s.WaitActive("/v1/load-balancers/" + bad.LB)
}

// TestTwoNodesBothMustApply runs two agents (two HAProxies sharing the VIP
// through SO_REUSEPORT) in one node group: an object is active only once both
// nodes applied it, and both serve it.
func TestTwoNodesBothMustApply(t *testing.T) {
	t.Parallel()
	s := newStack(t, pgtest.NewDatabase(t))
	n1 := s.StartAgent("node-1")
	n2 := s.StartAgent("node-2")
	a := teststack.StartBackend(t, "a")
	lb := s.newLB(8088, nil, a)
	s.WaitActive("/v1/load-balancers/" + lb.LB)
	var rev int64
	if err := s.Store.PoolForTests().QueryRow(context.Background(), "SELECT revision FROM listeners WHERE id = $1", lb.Listener).Scan(&rev); err != nil {
		t.Fatal(err)
	}
	if n1.AppliedRevision() < rev || n2.AppliedRevision() < rev {
		t.Fatalf("listener at revision %d active before both nodes applied it: node-1 at %d, node-2 at %d", rev, n1.AppliedRevision(), n2.AppliedRevision())
	}
	for _, n := range []string{"node-1", "node-2"} {
		_, node := s.CallAs(s.AdminToken, "GET", "/v1/nodes/"+n, nil)
		if node["status"] != "online" {
			t.Fatalf("%s: %v", n, node)
		}
	}
	if got := distribution(t, teststack.NewClient(nil), lb.URL, 10); got["a"] != 10 {
		t.Fatalf("two nodes serving one VIP: %v", got)
	}
}
