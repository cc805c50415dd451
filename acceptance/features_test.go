package acceptance

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fulcrumlb/fulcrum/internal/pgtest"
	"github.com/fulcrumlb/fulcrum/internal/testcerts"
	"github.com/fulcrumlb/fulcrum/internal/teststack"
)

// Every pool algorithm except round_robin (TestBalancingWeightsDisabledAndBackup)
// balances real requests the way its name says.
func TestPoolAlgorithms(t *testing.T) {
	t.Parallel()
	s := newStack(t, pgtest.NewDatabase(t))
	s.StartAgent("node-1")
	a, b, c := teststack.StartBackend(t, "a"), teststack.StartBackend(t, "b"), teststack.StartBackend(t, "c")
	ports := []int{a.Port, b.Port, c.Port}
	algos := []struct {
		port int
		pool map[string]any
	}{
		{9101, map[string]any{"algorithm": "static_round_robin"}},
		{9102, map[string]any{"algorithm": "least_connections"}},
		{9103, map[string]any{"algorithm": "source_ip"}},
		{9104, map[string]any{"algorithm": "uri"}},
		{9105, map[string]any{"algorithm": "url_param", "hash_key": "user"}},
		{9106, map[string]any{"algorithm": "header", "hash_key": "X-Tenant"}},
		{9107, map[string]any{"algorithm": "random"}},
		{9108, map[string]any{"algorithm": "first"}},
	}
	var specs []poolSpec
	for _, al := range algos {
		specs = append(specs, poolSpec{Port: al.port, Pool: al.pool, Members: ports})
	}
	lb := s.buildLB("algorithms", specs...)
	cl := teststack.NewClient(nil)
	// answers sends one request per (path, header value) and counts members.
	answers := func(port int, paths []string, hdr func(i int) map[string]string) map[string]int {
		t.Helper()
		out := map[string]int{}
		for i, p := range paths {
			var h map[string]string
			if hdr != nil {
				h = hdr(i)
			}
			code, body, _, err := get(cl, lb.url(port, p), h)
			if err != nil || code != 200 {
				t.Fatalf("GET %s on port %d: %d %q %v", p, port, code, body, err)
			}
			out[body]++
		}
		return out
	}
	same := func(n int, p string) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = p
		}
		return out
	}
	distinct := func(n int, f string) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = fmt.Sprintf(f, i)
		}
		return out
	}

	t.Run("static_round_robin", func(t *testing.T) {
		got := answers(9101, same(30, "/"), nil)
		for _, n := range []string{"a", "b", "c"} {
			if got[n] != 10 {
				t.Fatalf("static round robin over 3 equal members, 30 requests: %v", got)
			}
		}
	})
	t.Run("least_connections", func(t *testing.T) {
		got := answers(9102, same(30, "/"), nil)
		if len(got) < 3 {
			t.Fatalf("least connections over idle members should use all of them: %v", got)
		}
	})
	t.Run("source_ip", func(t *testing.T) {
		if got := answers(9103, distinct(20, "/p%d"), nil); len(got) != 1 {
			t.Fatalf("one client address should stay on one member: %v", got)
		}
	})
	t.Run("uri", func(t *testing.T) {
		for _, p := range []string{"/x", "/catalog/item/42", "/y?q=1"} {
			if got := answers(9104, same(8, p), nil); len(got) != 1 {
				t.Fatalf("uri hash: %s went to several members: %v", p, got)
			}
		}
		if got := answers(9104, distinct(20, "/path-%d"), nil); len(got) < 2 {
			t.Fatalf("uri hash: 20 distinct paths all on one member: %v", got)
		}
	})
	t.Run("url_param", func(t *testing.T) {
		if got := answers(9105, distinct(10, "/page%d?user=alice"), nil); len(got) != 1 {
			t.Fatalf("url_param hash: user=alice on several members: %v", got)
		}
		if got := answers(9105, distinct(20, "/?user=u%d"), nil); len(got) < 2 {
			t.Fatalf("url_param hash: 20 users all on one member: %v", got)
		}
	})
	t.Run("header", func(t *testing.T) {
		one := func(int) map[string]string { return map[string]string{"X-Tenant": "tenant-7"} }
		if got := answers(9106, distinct(10, "/p%d"), one); len(got) != 1 {
			t.Fatalf("header hash: X-Tenant tenant-7 on several members: %v", got)
		}
		many := func(i int) map[string]string { return map[string]string{"X-Tenant": fmt.Sprintf("tenant-%d", i)} }
		if got := answers(9106, same(20, "/"), many); len(got) < 2 {
			t.Fatalf("header hash: 20 tenants all on one member: %v", got)
		}
	})
	t.Run("random", func(t *testing.T) {
		if got := answers(9107, same(60, "/"), nil); len(got) < 2 {
			t.Fatalf("random over 60 requests used one member: %v", got)
		}
	})
	t.Run("first", func(t *testing.T) {
		if got := answers(9108, same(20, "/"), nil); got["a"] != 20 {
			t.Fatalf("first: everything should go to the first member: %v", got)
		}
		// Once the first member is out, the next one takes everything.
		first := lb.Members[7][0]
		s.MustCall(200, "PATCH", "/v1/members/"+first, map[string]any{"enabled": false})
		s.WaitActive("/v1/members/" + first)
		if got := answers(9108, same(20, "/"), nil); got["b"] != 20 {
			t.Fatalf("first with the first member disabled: %v", got)
		}
	})
}

// HTTP monitors send the configured method, path and Host and accept only the
// expected codes; a tcp monitor marks a stopped member offline and back.
func TestHealthMonitors(t *testing.T) {
	t.Parallel()
	s := newStack(t, pgtest.NewDatabase(t))
	s.StartAgent("node-1")

	var mu sync.Mutex
	var checks []string // "METHOD host path" seen by the healthy backend
	health := func(name string, code int) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/hc" {
				if name == "good" {
					mu.Lock()
					checks = append(checks, r.Method+" "+r.Host+" "+r.URL.Path)
					mu.Unlock()
				}
				w.WriteHeader(code)
				return
			}
			fmt.Fprintf(w, "%s\n", name)
		}
	}
	good := teststack.StartServer(t, health("good", http.StatusNoContent))
	bad := teststack.StartServer(t, health("bad", http.StatusInternalServerError))
	t1, t2 := teststack.StartBackend(t, "t1"), teststack.StartBackend(t, "t2")

	lb := s.buildLB("monitors",
		poolSpec{Port: 9201, Members: []int{good.Port, bad.Port}, Pool: map[string]any{"health_monitor": map[string]any{
			"type": "http", "http_method": "GET", "path": "/hc", "host": "health.example.test", "expected_codes": "204",
			"interval_ms": 200, "timeout_ms": 200, "rise": 1, "fall": 1}}},
		poolSpec{Port: 9202, Members: []int{t1.Port, t2.Port}, Pool: map[string]any{"health_monitor": map[string]any{
			"type": "tcp", "interval_ms": 200, "timeout_ms": 200, "rise": 2, "fall": 2}}})
	goodID, badID := lb.Members[0][0], lb.Members[0][1]
	t1ID, t2ID := lb.Members[1][0], lb.Members[1][1]
	cl := teststack.NewClient(nil)

	teststack.WaitFor(t, "204 member online, 500 member offline", 15*time.Second, func() bool {
		return s.memberStatus(lb.LB, goodID) == "online" && s.memberStatus(lb.LB, badID) == "offline"
	})
	if got := distribution(t, cl, lb.url(9201, "/"), 20); got["good"] != 20 {
		t.Fatalf("the member failing its check got traffic: %v", got)
	}
	mu.Lock()
	seen := slices.Clone(checks)
	mu.Unlock()
	if len(seen) == 0 || seen[0] != "GET health.example.test /hc" {
		t.Fatalf("health checks seen by the member: %q", seen)
	}

	// A member added at runtime is checked too.
	good2 := teststack.StartServer(t, health("good2", http.StatusNoContent))
	good2ID := s.Create("/v1/members", map[string]any{"pool_id": lb.Pools[0], "address": "127.0.0.1", "port": good2.Port})["id"].(string)
	s.WaitActive("/v1/members/" + good2ID)
	teststack.WaitFor(t, "runtime-added member online", 15*time.Second, func() bool { return s.memberStatus(lb.LB, good2ID) == "online" })
	if got := distribution(t, cl, lb.url(9201, "/"), 20); got["good"] != 10 || got["good2"] != 10 {
		t.Fatalf("two healthy members and a failing one: %v", got)
	}

	// expected_codes takes a list of codes and ranges: now 500 passes too.
	s.MustCall(200, "PATCH", "/v1/pools/"+lb.Pools[0], map[string]any{"health_monitor": map[string]any{
		"type": "http", "path": "/hc", "expected_codes": "200-299,500", "interval_ms": 200, "timeout_ms": 200, "rise": 1, "fall": 1}})
	s.WaitActive("/v1/pools/" + lb.Pools[0])
	teststack.WaitFor(t, "member answering 500 online with expected_codes 200-299,500", 15*time.Second, func() bool {
		return s.memberStatus(lb.LB, badID) == "online"
	})
	teststack.WaitFor(t, "traffic on the member answering 500 to checks", 10*time.Second, func() bool {
		return distribution(t, cl, lb.url(9201, "/"), 6)["bad"] > 0
	})

	teststack.WaitFor(t, "tcp-monitored members online", 15*time.Second, func() bool {
		return s.memberStatus(lb.LB, t1ID) == "online" && s.memberStatus(lb.LB, t2ID) == "online"
	})
	t2.Stop()
	teststack.WaitFor(t, "stopped member offline (fall 2)", 15*time.Second, func() bool { return s.memberStatus(lb.LB, t2ID) == "offline" })
	if got := distribution(t, cl, lb.url(9202, "/"), 20); got["t1"] != 20 {
		t.Fatalf("traffic should avoid the stopped member: %v", got)
	}
	t2.Restart(t)
	teststack.WaitFor(t, "restarted member online (rise 2)", 15*time.Second, func() bool { return s.memberStatus(lb.LB, t2ID) == "online" })
}

// concurrently runs n GETs of url at once and returns their status codes.
func concurrently(n int, url string) ([]int, []error) {
	codes, errs := make([]int, n), make([]error, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			c := &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
			codes[i], _, _, errs[i] = get(c, url, nil)
		}(i)
	}
	wg.Wait()
	return codes, errs
}

// A member's max_connections queues requests beyond it instead of sending
// them on: every request succeeds, the member never has two at once.
func TestMemberMaxConnections(t *testing.T) {
	t.Parallel()
	s := newStack(t, pgtest.NewDatabase(t))
	s.StartAgent("node-1")
	var limited, free inFlight
	slow := teststack.StartServer(t, slowHandler("slow", 300*time.Millisecond, &limited))
	control := teststack.StartServer(t, slowHandler("control", 300*time.Millisecond, &free))
	lb := s.Create("/v1/load-balancers", map[string]any{"name": "maxconn"})
	lbID, vip := lb["id"].(string), lb["vip_address"].(string)
	var waits []string
	for i, m := range []map[string]any{{"port": slow.Port, "max_connections": 1}, {"port": control.Port}} {
		pool := s.Create("/v1/pools", map[string]any{"load_balancer_id": lbID, "protocol": "http"})["id"].(string)
		m["pool_id"], m["address"] = pool, "127.0.0.1"
		waits = append(waits, "/v1/members/"+s.Create("/v1/members", m)["id"].(string),
			"/v1/listeners/"+s.Create("/v1/listeners", map[string]any{"load_balancer_id": lbID, "protocol": "http", "port": 9301 + i,
				"default_pool_id": pool})["id"].(string))
	}
	for _, w := range waits {
		s.WaitActive(w)
	}

	for port, f := range map[int]*inFlight{9301: &limited, 9302: &free} {
		codes, errs := concurrently(4, fmt.Sprintf("http://%s:%d/", vip, port))
		for i := range codes {
			if errs[i] != nil || codes[i] != 200 {
				t.Fatalf("port %d: request %d: %d %v (all: %v)", port, i, codes[i], errs[i], codes)
			}
		}
		if f.total.Load() != 4 {
			t.Fatalf("port %d: backend saw %d of 4 requests", port, f.total.Load())
		}
	}
	if limited.peak.Load() != 1 {
		t.Fatalf("member with max_connections 1 had %d requests at once", limited.peak.Load())
	}
	if free.peak.Load() < 2 {
		t.Fatalf("control: a member without max_connections never had two requests at once (%d)", free.peak.Load())
	}
}

// A listener's connection_limit holds connections beyond it back: they are
// served later, never more than the limit at once.
func TestListenerConnectionLimit(t *testing.T) {
	t.Parallel()
	s := newStack(t, pgtest.NewDatabase(t))
	s.StartAgent("node-1")
	var limited, free inFlight
	slow := teststack.StartServer(t, slowHandler("slow", 300*time.Millisecond, &limited))
	control := teststack.StartServer(t, slowHandler("control", 300*time.Millisecond, &free))
	lb := s.buildLB("connlimit",
		poolSpec{Port: 9401, Members: []int{slow.Port}, Listener: map[string]any{"connection_limit": 2}},
		poolSpec{Port: 9402, Members: []int{control.Port}})

	for port, f := range map[int]*inFlight{9401: &limited, 9402: &free} {
		codes, errs := concurrently(6, lb.url(port, "/"))
		for i := range codes {
			if errs[i] != nil || codes[i] != 200 {
				t.Fatalf("port %d: request %d: %d %v (all: %v)", port, i, codes[i], errs[i], codes)
			}
		}
		if f.total.Load() != 6 {
			t.Fatalf("port %d: backend saw %d of 6 requests", port, f.total.Load())
		}
	}
	if p := limited.peak.Load(); p > 2 || p < 1 {
		t.Fatalf("backend behind connection_limit 2 had %d requests at once", p)
	}
	if free.peak.Load() <= 2 {
		t.Fatalf("control: without connection_limit the backend never had more than 2 at once (%d)", free.peak.Load())
	}
}

// timeouts.client_ms closes idle client connections on http and tcp
// listeners; timeouts.server_ms turns a slow member into a 504.
func TestListenerTimeouts(t *testing.T) {
	t.Parallel()
	s := newStack(t, pgtest.NewDatabase(t))
	s.StartAgent("node-1")
	var f inFlight
	slow := teststack.StartServer(t, slowHandler("slow", 2*time.Second, &f))
	echo := startTCPServer(t)
	lb := s.buildLB("timeouts",
		poolSpec{Port: 9501, Members: []int{slow.Port}, Listener: map[string]any{"timeouts": map[string]any{"server_ms": 300}}},
		poolSpec{Port: 9502, Protocol: "tcp", Members: []int{echo.Port}, Listener: map[string]any{"timeouts": map[string]any{"client_ms": 500}}},
		poolSpec{Port: 9503, Members: []int{slow.Port}, Listener: map[string]any{"timeouts": map[string]any{"client_ms": 500}}})

	code, body, _, err := get(teststack.NewClient(nil), lb.url(9501, "/"), nil)
	if err != nil || code != http.StatusGatewayTimeout {
		t.Fatalf("server_ms 300 with a member taking 2s: %d %q %v", code, body, err)
	}

	// An idle connection is closed by HAProxy: on the http listener before
	// any request (client_ms: a 408, then the close), on the tcp listener
	// after one exchange (client_ms bounds idle tcp connections; the agent
	// sets no tunnel timeout on tcp backends, which would supersede it).
	idleClosed := func(port int, hello string) string {
		t.Helper()
		c, err := net.DialTimeout("tcp", lb.addr(port), 3*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		br := bufio.NewReader(c)
		if hello != "" {
			if _, err := io.WriteString(c, hello+"\n"); err != nil {
				t.Fatal(err)
			}
			if reply, err := br.ReadString('\n'); err != nil || reply != "none|"+hello+"\n" {
				t.Fatalf("port %d: first exchange: %q %v", port, reply, err)
			}
		}
		// Bounded so that a timeout left at its default (50s client, 10s
		// http-request, 1h tunnel) fails the test instead of hanging it.
		_ = c.SetReadDeadline(time.Now().Add(8 * time.Second))
		rest, err := io.ReadAll(br)
		if err != nil {
			t.Fatalf("port %d: idle connection not closed by HAProxy: %v (read %q)", port, err, rest)
		}
		return string(rest)
	}
	if rest := idleClosed(9503, ""); rest != "" && !strings.HasPrefix(rest, "HTTP/1.1 408") {
		t.Fatalf("idle http connection: closed after %q", rest)
	}
	if rest := idleClosed(9502, "ping"); rest != "" {
		t.Fatalf("idle tcp connection: closed after %q", rest)
	}
}

// insert_headers adds X-Forwarded-For/Proto/Port and X-Request-ID.
func TestInsertHeaders(t *testing.T) {
	t.Parallel()
	s := newStack(t, pgtest.NewDatabase(t))
	s.StartAgent("node-1")
	echo := teststack.StartServer(t, http.HandlerFunc(echoHeaders))
	lb := s.buildLB("headers",
		poolSpec{Port: 9601, Members: []int{echo.Port}, Listener: map[string]any{"insert_headers": map[string]any{
			"x_forwarded_for": true, "x_forwarded_proto": true, "x_forwarded_port": true, "x_request_id": true}}},
		poolSpec{Port: 9602, Members: []int{echo.Port}})
	cl := teststack.NewClient(nil)
	seen := func(port int) map[string]string {
		t.Helper()
		code, body, _, err := get(cl, lb.url(port, "/h"), nil)
		if err != nil || code != 200 {
			t.Fatalf("port %d: %d %q %v", port, code, body, err)
		}
		var h map[string]string
		if err := json.Unmarshal([]byte(body), &h); err != nil {
			t.Fatalf("port %d: %q: %v", port, body, err)
		}
		return h
	}
	h := seen(9601)
	want := map[string]string{"X-Forwarded-For": "127.0.0.1", "X-Forwarded-Proto": "http", "X-Forwarded-Port": "9601"}
	for k, v := range want {
		if h[k] != v {
			t.Fatalf("%s: got %q, want %q (all: %v)", k, h[k], v, h)
		}
	}
	id1 := h["X-Request-Id"]
	if id1 == "" {
		t.Fatalf("no X-Request-ID: %v", h)
	}
	if id2 := seen(9601)["X-Request-Id"]; id2 == "" || id2 == id1 {
		t.Fatalf("X-Request-ID should differ per request: %q then %q", id1, id2)
	}
	// Without insert_headers none of them is added.
	h = seen(9602)
	for _, k := range []string{"X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Port", "X-Request-Id"} {
		if v, ok := h[k]; ok {
			t.Fatalf("listener without insert_headers added %s: %q", k, v)
		}
	}
}

// allowed_cidrs admits only the listed sources.
func TestAllowedCIDRs(t *testing.T) {
	t.Parallel()
	s := newStack(t, pgtest.NewDatabase(t))
	s.StartAgent("node-1")
	a := teststack.StartBackend(t, "a")
	lb := s.buildLB("allowed", poolSpec{Port: 9701, Members: []int{a.Port}, Listener: map[string]any{"allowed_cidrs": []string{"10.0.0.0/8"}}})
	cl := teststack.NewClient(nil)
	if name, err := teststack.Fetch(cl, lb.url(9701, "/")); err == nil {
		t.Fatalf("allowed_cidrs 10.0.0.0/8 let 127.0.0.1 in (answer %q)", name)
	}
	s.MustCall(200, "PATCH", "/v1/listeners/"+lb.Listeners[0], map[string]any{"allowed_cidrs": []string{"127.0.0.0/8"}})
	s.WaitActive("/v1/listeners/" + lb.Listeners[0])
	if got := distribution(t, cl, lb.url(9701, "/"), 5); got["a"] != 5 {
		t.Fatalf("allowed_cidrs 127.0.0.0/8: %v", got)
	}
}

// A tcp listener with a tcp pool carries raw bytes; proxy_protocol v1 and v2
// put a PROXY header naming the client before them.
func TestTCPAndProxyProtocol(t *testing.T) {
	t.Parallel()
	s := newStack(t, pgtest.NewDatabase(t))
	s.StartAgent("node-1")
	srv := startTCPServer(t)
	lb := s.buildLB("tcp",
		poolSpec{Port: 9801, Protocol: "tcp", Members: []int{srv.Port}},
		poolSpec{Port: 9802, Protocol: "tcp", Members: []int{srv.Port}, Pool: map[string]any{"proxy_protocol": "v1"}},
		poolSpec{Port: 9803, Protocol: "tcp", Members: []int{srv.Port}, Pool: map[string]any{"proxy_protocol": "v2"}})

	reply, err := tcpRoundTrip(lb.addr(9801), "hello raw")
	if err != nil || reply != "none|hello raw" {
		t.Fatalf("plain tcp: %q %v", reply, err)
	}

	reply, err = tcpRoundTrip(lb.addr(9802), "hello v1")
	if err != nil {
		t.Fatalf("proxy v1: %v", err)
	}
	hdr, payload, _ := strings.Cut(reply, "|")
	f := strings.Fields(strings.TrimPrefix(hdr, "v1 "))
	// PROXY TCP4 <src> <dst> <srcport> <dstport>
	if !strings.HasPrefix(hdr, "v1 ") || len(f) != 6 || f[0] != "PROXY" || f[1] != "TCP4" || f[2] != "127.0.0.1" ||
		f[3] != lb.VIP || f[5] != "9802" || payload != "hello v1" {
		t.Fatalf("proxy v1: the member got %q", reply)
	}

	reply, err = tcpRoundTrip(lb.addr(9803), "hello v2")
	if err != nil {
		t.Fatalf("proxy v2: %v", err)
	}
	hdr, payload, _ = strings.Cut(reply, "|")
	if !strings.HasPrefix(hdr, "v2 127.0.0.1:") || payload != "hello v2" {
		t.Fatalf("proxy v2: the member got %q", reply)
	}
}

// retries + redispatch move requests off a member whose port is closed.
func TestRetriesAndRedispatch(t *testing.T) {
	t.Parallel()
	s := newStack(t, pgtest.NewDatabase(t))
	s.StartAgent("node-1")
	a := teststack.StartBackend(t, "a")
	closed := freePort(t)
	lb := s.buildLB("retries",
		poolSpec{Port: 9901, Members: []int{closed, a.Port}, Pool: map[string]any{"retries": 1, "redispatch": true}},
		poolSpec{Port: 9902, Members: []int{closed, a.Port}, Pool: map[string]any{"retries": 0, "redispatch": false}})
	cl := &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	for i := 0; i < 20; i++ {
		name, err := teststack.Fetch(cl, lb.url(9901, "/"))
		if err != nil || name != "a" {
			t.Fatalf("request %d with one member's port closed: %q %v", i, name, err)
		}
	}
	// Control: without retries and redispatch the closed member fails requests.
	failed := 0
	for i := 0; i < 10; i++ {
		if _, err := teststack.Fetch(cl, lb.url(9902, "/")); err != nil {
			failed++
		}
	}
	if failed == 0 {
		t.Fatal("control: with retries 0 and no redispatch no request failed, so the closed member was never picked")
	}
}

// rate_limit requests/s answers 429 beyond the rate.
func TestRateLimit(t *testing.T) {
	t.Parallel()
	s := newStack(t, pgtest.NewDatabase(t))
	s.StartAgent("node-1")
	a := teststack.StartBackend(t, "a")
	lb := s.buildLB("ratelimit", poolSpec{Port: 10001, Members: []int{a.Port},
		Listener: map[string]any{"rate_limit": map[string]any{"type": "requests", "per_second": 5}}})
	cl := &http.Client{Timeout: 5 * time.Second} // keep-alive: as quick as it gets
	counts := map[int]int{}
	for i := 0; i < 30; i++ {
		code, body, _, err := get(cl, lb.url(10001, "/"), nil)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		if code == 200 && body != "a" {
			t.Fatalf("request %d: 200 with %q", i, body)
		}
		counts[code]++
	}
	if counts[429] < 1 || counts[200] < 5 || counts[200]+counts[429] != 30 {
		t.Fatalf("30 quick requests at 5/s: %v", counts)
	}
}

// Routing rules forward by path and host, redirect, answer fixed responses
// and deny, in priority order.
func TestRoutingRules(t *testing.T) {
	t.Parallel()
	s := newStack(t, pgtest.NewDatabase(t))
	s.StartAgent("node-1")
	def, apiB, shop := teststack.StartBackend(t, "default"), teststack.StartBackend(t, "api"), teststack.StartBackend(t, "shop")
	lb := s.buildLB("rules", poolSpec{Port: 10101, Members: []int{def.Port}})
	pool := func(port int) string {
		p := s.Create("/v1/pools", map[string]any{"load_balancer_id": lb.LB, "protocol": "http"})["id"].(string)
		s.Create("/v1/members", map[string]any{"pool_id": p, "address": "127.0.0.1", "port": port})
		return p
	}
	apiPool, shopPool := pool(apiB.Port), pool(shop.Port)
	cond := func(field, match string, values ...string) map[string]any {
		return map[string]any{"field": field, "match": match, "values": values}
	}
	rules := []map[string]any{
		{"priority": 5, "conditions": []any{cond("path", "prefix", "/api/private")}, "action": map[string]any{"type": "deny"}},
		{"priority": 10, "conditions": []any{cond("path", "prefix", "/api/")},
			"action": map[string]any{"type": "forward", "forward": map[string]any{"pools": []any{map[string]any{"pool_id": apiPool}}}}},
		{"priority": 20, "conditions": []any{cond("host", "exact", "shop.example.test")},
			"action": map[string]any{"type": "forward", "forward": map[string]any{"pools": []any{map[string]any{"pool_id": shopPool}}}}},
		{"priority": 30, "conditions": []any{cond("path", "exact", "/old")},
			"action": map[string]any{"type": "redirect", "redirect": map[string]any{"url": "https://new.example.test/new", "code": 301}}},
		{"priority": 40, "conditions": []any{cond("path", "exact", "/teapot")},
			"action": map[string]any{"type": "fixed_response", "fixed_response": map[string]any{"status_code": 418, "content_type": "text/plain", "body": "short and stout"}}},
		{"priority": 50, "conditions": []any{cond("path", "prefix", "/admin")}, "action": map[string]any{"type": "deny"}},
		// Shadowed by priority 10 for /api/ and by 40 for /teapot.
		{"priority": 60, "conditions": []any{cond("path", "prefix", "/api/", "/teapot")},
			"action": map[string]any{"type": "fixed_response", "fixed_response": map[string]any{"status_code": 200, "body": "shadowed"}}},
	}
	var ids []string
	for _, r := range rules {
		r["listener_id"] = lb.Listeners[0]
		ids = append(ids, s.Create("/v1/routing-rules", r)["id"].(string))
	}
	for _, id := range ids {
		s.WaitActive("/v1/routing-rules/" + id)
	}
	s.WaitActive("/v1/load-balancers/" + lb.LB)

	cl := noRedirects()
	cases := []struct {
		path, host string
		code       int
		body       string
	}{
		{"/", "", 200, "default"},
		{"/api/users", "", 200, "api"},
		{"/api/private/x", "", 403, ""},
		{"/api/users", "shop.example.test", 200, "api"}, // 10 before 20
		{"/cart", "shop.example.test", 200, "shop"},
		{"/cart", "SHOP.example.test:10101", 200, "shop"},
		{"/cart", "other.example.test", 200, "default"},
		{"/teapot", "", 418, "short and stout"},
		{"/admin/panel", "", 403, ""},
		{"/admin/panel", "shop.example.test", 200, "shop"}, // 20 before 50
	}
	for _, c := range cases {
		var hdr map[string]string
		if c.host != "" {
			hdr = map[string]string{"Host": c.host}
		}
		code, body, _, err := get(cl, lb.url(10101, c.path), hdr)
		if err != nil || code != c.code || (c.body != "" && body != c.body) {
			t.Fatalf("GET %s (host %q): %d %q %v, want %d %q", c.path, c.host, code, body, err, c.code, c.body)
		}
	}
	code, _, h, err := get(cl, lb.url(10101, "/old"), nil)
	if err != nil || code != 301 || h.Get("Location") != "https://new.example.test/new" {
		t.Fatalf("redirect rule: %d Location %q %v", code, h.Get("Location"), err)
	}
}

// An https listener terminates TLS with a certificate stored through the API,
// adds HSTS, and an http listener redirects to https.
func TestHTTPSListener(t *testing.T) {
	t.Parallel()
	s := newStack(t, pgtest.NewDatabase(t))
	s.StartAgent("node-1")
	a := teststack.StartBackend(t, "a")
	echo := teststack.StartServer(t, http.HandlerFunc(echoHeaders))
	roots := x509.NewCertPool()
	certs := map[string]*x509.Certificate{}
	var certIDs []string
	for _, name := range []string{"www.example.test", "api.example.test"} {
		c := testcerts.New(t, testcerts.Spec{Hosts: []string{name}, PKCS8: true})
		roots.AddCert(c.Cert)
		certs[name] = c.Cert
		certIDs = append(certIDs, s.Create("/v1/certificates", map[string]any{"certificate": c.CertPEM, "private_key": c.KeyPEM})["id"].(string))
	}
	lb := s.buildLB("https",
		poolSpec{Port: 10201, Members: []int{echo.Port}, Listener: map[string]any{"protocol": "https",
			"certificate_ids": certIDs, "hsts": map[string]any{"max_age_seconds": 600, "include_subdomains": true},
			"insert_headers": map[string]any{"x_forwarded_proto": true, "x_forwarded_port": true}}},
		poolSpec{Port: 10202, Members: []int{a.Port}, Listener: map[string]any{"redirect_http_to_https": true}})

	// tlsGet requests / over TLS with SNI serverName, verifying against the
	// test's certificates, and returns the leaf HAProxy presented.
	tlsGet := func(serverName string) (leaf *x509.Certificate, hdr map[string]string, res http.Header) {
		t.Helper()
		cl := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true,
			TLSClientConfig: &tls.Config{ServerName: serverName, RootCAs: roots,
				VerifyConnection: func(cs tls.ConnectionState) error { leaf = cs.PeerCertificates[0]; return nil }}}}
		code, body, res, err := get(cl, fmt.Sprintf("https://%s:10201/", lb.VIP), nil)
		if err != nil || code != 200 {
			t.Fatalf("https request for %s: %d %q %v", serverName, code, body, err)
		}
		if err := json.Unmarshal([]byte(body), &hdr); err != nil {
			t.Fatalf("https request for %s: the member did not answer: %q", serverName, body)
		}
		return leaf, hdr, res
	}
	for _, name := range []string{"www.example.test", "api.example.test"} {
		leaf, hdr, res := tlsGet(name)
		if leaf == nil || !slices.Contains(leaf.DNSNames, name) || !leaf.Equal(certs[name]) {
			t.Fatalf("SNI %s: served certificate %v", name, leaf)
		}
		if hdr["X-Forwarded-Proto"] != "https" || hdr["X-Forwarded-Port"] != "10201" {
			t.Fatalf("SNI %s: the member saw %v", name, hdr)
		}
		if got := res.Get("Strict-Transport-Security"); got != "max-age=600; includeSubDomains" {
			t.Fatalf("Strict-Transport-Security: %q", got)
		}
	}

	// An unknown name gets the first certificate, the default.
	conn, err := tls.Dial("tcp", lb.addr(10201), &tls.Config{ServerName: "other.example.test", InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	if leaf := conn.ConnectionState().PeerCertificates[0]; !leaf.Equal(certs["www.example.test"]) {
		t.Fatalf("default certificate: %v", leaf.DNSNames)
	}
	conn.Close()

	var code int
	var h http.Header
	code, _, h, err = get(noRedirects(), lb.url(10202, "/some/path?x=1"), nil)
	loc := h.Get("Location")
	if err != nil || code != 301 || loc != "https://"+lb.addr(10201)+"/some/path?x=1" {
		t.Fatalf("redirect_http_to_https: %d Location %q %v", code, loc, err)
	}
	if _, _, h, _ = get(noRedirects(), lb.url(10202, "/"), nil); h.Get("Strict-Transport-Security") != "" {
		t.Fatal("HSTS on a plain http listener")
	}
}

// enabled=false takes the load balancer off the node; enabled=true brings it back.
func TestLoadBalancerDisable(t *testing.T) {
	t.Parallel()
	s := newStack(t, pgtest.NewDatabase(t))
	s.StartAgent("node-1")
	a := teststack.StartBackend(t, "a")
	lb := s.buildLB("toggle", poolSpec{Port: 10301, Members: []int{a.Port}})
	other := s.buildLB("other", poolSpec{Port: 10301, Members: []int{a.Port}})
	cl := teststack.NewClient(nil)
	if name, err := teststack.Fetch(cl, lb.url(10301, "/")); err != nil || name != "a" {
		t.Fatalf("before disabling: %q %v", name, err)
	}
	s.MustCall(200, "PATCH", "/v1/load-balancers/"+lb.LB, map[string]any{"enabled": false})
	s.WaitActive("/v1/load-balancers/" + lb.LB)
	if !refused(lb.addr(10301)) {
		t.Fatal("a disabled load balancer still accepts connections")
	}
	if name, err := teststack.Fetch(cl, other.url(10301, "/")); err != nil || name != "a" {
		t.Fatalf("the other load balancer: %q %v", name, err)
	}
	s.MustCall(200, "PATCH", "/v1/load-balancers/"+lb.LB, map[string]any{"enabled": true})
	s.WaitActive("/v1/load-balancers/" + lb.LB)
	if name, err := teststack.Fetch(cl, lb.url(10301, "/")); err != nil || name != "a" {
		t.Fatalf("enabled again: %q %v", name, err)
	}
}

// DELETE ?cascade=true removes the LB and its children from the node; it reads
// pending_delete until then, 404 after.
func TestCascadeDelete(t *testing.T) {
	t.Parallel()
	s := newStack(t, pgtest.NewDatabase(t))
	s.StartAgent("node-1")
	a := teststack.StartBackend(t, "a")
	lb := s.buildLB("doomed", poolSpec{Port: 10401, Members: []int{a.Port}})
	if name, err := teststack.Fetch(teststack.NewClient(nil), lb.url(10401, "/")); err != nil || name != "a" {
		t.Fatalf("before the delete: %q %v", name, err)
	}
	s.MustCall(202, "DELETE", "/v1/load-balancers/"+lb.LB+"?cascade=true", nil)
	code, got := s.Call("GET", "/v1/load-balancers/"+lb.LB, nil)
	if code != 404 && (code != 200 || got["provisioning_status"] != "pending_delete") {
		t.Fatalf("right after the delete: %d %v", code, got)
	}
	teststack.WaitFor(t, "load balancer gone (404)", 20*time.Second, func() bool {
		code, got := s.Call("GET", "/v1/load-balancers/"+lb.LB, nil)
		if code == 200 && got["provisioning_status"] != "pending_delete" {
			t.Fatalf("deleted load balancer reads %v", got["provisioning_status"])
		}
		return code == 404
	})
	if !refused(lb.addr(10401)) {
		t.Fatal("the VIP of a deleted load balancer still accepts connections")
	}
	for _, path := range []string{"/v1/listeners/" + lb.Listeners[0], "/v1/pools/" + lb.Pools[0], "/v1/members/" + lb.Members[0][0]} {
		if code, _ := s.Call("GET", path, nil); code != 404 {
			t.Fatalf("GET %s after the cascade: %d", path, code)
		}
	}
}
