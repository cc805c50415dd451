package acceptance

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fulcrumlb/fulcrum/dataplane/keepalived"
	"github.com/fulcrumlb/fulcrum/internal/teststack"
)

// haRuns is how many faults each HA test injects: 1 in `make test`,
// FULCRUM_HA_RUNS (5 under `make test-ha`, 10 under `make bench-ha`).
func haRuns() int {
	if n, err := strconv.Atoi(os.Getenv("FULCRUM_HA_RUNS")); err == nil && n > 0 {
		return n
	}
	return 1
}

// loadInterval paces the client: 50 requests a second, each a new connection.
const loadInterval = 20 * time.Millisecond

// TestHAFailover runs three nodes in network namespaces with keepalived
// managed by their agents, and checks that a VIP survives its owner: a new LB
// is reachable through whichever node owns its VIP; with steady traffic,
// killing the owner's HAProxy, then the whole owner (agent, HAProxy,
// keepalived; kill -9), moves the VIP; traffic resumes, nothing flaps
// afterwards (also not when the killed node returns), and the gap and failed
// requests are printed.
func TestHAFailover(t *testing.T) {
	runs := haRuns()
	h := newHANet(t, 3)
	const backendPort = 8080
	h.startBackend(backendPort)
	_, vip := h.createLB("ha-1", backendPort)
	h.waitAllReady()
	h.waitOwner(vip, nil)

	t.Run("NewLBReachableOnItsOwner", func(t *testing.T) {
		defer h.use(t)()
		// Traffic to the first VIP meanwhile: adding a VIP reloads every
		// keepalived; what that costs the other VIPs is printed.
		owner1 := h.waitOwner(vip, nil)
		l := h.startLoad(vip, loadInterval)
		at := time.Now()
		_, vip2 := h.createLB("ha-2", backendPort)
		defer func() {
			time.Sleep(4 * time.Second) // reload transitions settle before the next subtest
			failed := 0
			for _, r := range l.since(at) {
				if !r.ok {
					failed++
				}
			}
			now := h.waitOwner(vip, nil)
			line := fmt.Sprintf("new_lb: other_vip_failed=%d other_vip_moved=%t", failed, now != owner1)
			t.Log(line)
			fmt.Println(line)
			// Adding a VIP must not move another: the config depends on
			// the VIPs only and the holder outranks the others.
			if now != owner1 {
				t.Errorf("adding an LB moved %s from %s to %s", vip, owner1.name, now.name)
			}
			if failed > 0 {
				t.Errorf("%d requests to %s failed while an LB was added", failed, vip)
			}
		}()
		owner := h.waitOwner(vip2, nil)
		var via string
		teststack.WaitFor(t, "the new VIP to answer from the client namespace", 10*time.Second, func() bool {
			var err error
			_ = inNS(h.client, func() error { via, err = fetchVia(net.JoinHostPort(vip2, "80")); return nil })
			return err == nil
		})
		if via != owner.ip {
			t.Fatalf("new LB %s answered through %s, but %s (%s) holds the VIP", vip2, via, owner.name, owner.ip)
		}
		t.Logf("new LB %s is served by %s", vip2, owner.name)
	})

	t.Run("HAProxyKilledOnOwner", func(t *testing.T) {
		defer h.use(t)()
		l := h.startLoad(vip, loadInterval)
		var gaps []time.Duration
		var slowest time.Duration
		failed, moved := 0, 0
		for i := 0; i < runs; i++ {
			h.waitAllReady()
			owner := h.waitOwner(vip, nil)
			time.Sleep(500 * time.Millisecond)
			at := time.Now()
			if h.killNS(owner.ns, []string{"haproxy"}) == 0 {
				t.Fatalf("no haproxy process in %s", owner.ns)
			}
			o := h.measure(l, at, 15*time.Second, 2*time.Second)
			h.checkSettled(o, vip)
			if now := h.waitOwner(vip, nil); now != owner {
				moved++
			}
			gaps, failed, slowest = append(gaps, o.gap), failed+o.failed, max(slowest, o.slowest)
			t.Logf("run %d: HAProxy of %s killed: gap %s, %d failed", i+1, owner.name, o.gap.Round(time.Millisecond), o.failed)
		}
		line := fmt.Sprintf("failover_haproxy: gap_ms_p50=%d gap_ms_max=%d failed=%d runs=%d vip_moved=%d slowest_request_ms=%d",
			durationPercentile(gaps, 0.5).Milliseconds(), durationPercentile(gaps, 1).Milliseconds(), failed, runs, moved, slowest.Milliseconds())
		t.Log(line)
		fmt.Println(line)
	})

	// An agent restart (SIGTERM, as systemctl restart or an upgrade does)
	// leaves HAProxy and keepalived serving; the next agent adopts keepalived:
	// the VIP does not move and no request fails.
	t.Run("OwnerAgentRestarted", func(t *testing.T) {
		defer h.use(t)()
		l := h.startLoad(vip, loadInterval)
		h.waitAllReady()
		owner := h.waitOwner(vip, nil)
		kpid := h.keepalivedPID(owner)
		if kpid == 0 {
			t.Fatalf("no keepalived runs on %s", owner.name)
		}
		at := time.Now()
		h.stopAgent(owner)
		time.Sleep(time.Second)
		h.startAgent(owner)
		teststack.WaitFor(t, owner.name+" ready again", 30*time.Second, func() bool { return h.ready(owner) })
		time.Sleep(time.Second)
		if now := h.waitOwner(vip, nil); now != owner {
			t.Fatalf("the VIP moved from %s to %s over an agent restart", owner.name, now.name)
		}
		if got := h.keepalivedPID(owner); got != kpid {
			t.Fatalf("keepalived of %s is pid %d after the agent restart, was %d: not adopted", owner.name, got, kpid)
		}
		time.Sleep(4 * time.Second) // requests under way finish
		rs := l.since(at)
		for _, r := range rs {
			if !r.ok {
				t.Fatalf("a request failed over the agent restart of %s", owner.name)
			}
		}
		t.Logf("agent of %s restarted: keepalived %d adopted, %d requests, 0 failed, VIP stayed", owner.name, kpid, len(rs))
	})

	// Taking the owner out (SIGTERM to an agent run with
	// --stop-haproxy-on-exit) gives its VIPs up before HAProxy stops: clients
	// see no failed request.
	t.Run("OwnerStopped", func(t *testing.T) {
		defer h.use(t)()
		l := h.startLoad(vip, loadInterval)
		var gaps []time.Duration
		var slowest time.Duration
		failed, broken := 0, 0
		for i := 0; i < runs; i++ {
			h.waitAllReady()
			owner := h.waitOwner(vip, nil)
			h.stopAgent(owner) // hitless restart, to run it with --stop-haproxy-on-exit
			owner.stopOnExit = true
			h.startAgent(owner)
			teststack.WaitFor(t, owner.name+" ready again", 30*time.Second, func() bool { return h.ready(owner) })
			time.Sleep(500 * time.Millisecond)
			at := time.Now()
			h.stopAgent(owner)
			owner.stopOnExit = false
			o := h.measure(l, at, 15*time.Second, 2*time.Second)
			via := h.checkMovedOnce(o, vip, owner)
			newOwner := h.waitOwner(vip, owner)
			if via != newOwner.ip || newOwner == owner {
				t.Fatalf("run %d: after %s stopped, %s holds the VIP and requests go through %s", i+1, owner.name, newOwner.name, via)
			}
			gaps, failed, slowest, broken = append(gaps, o.gap), failed+o.failed, max(slowest, o.slowest), broken+o.broken
			t.Logf("run %d: %s stopped (SIGTERM): %d failed, gap %s; %s took the VIP", i+1, owner.name, o.failed, o.gap.Round(time.Millisecond), newOwner.name)
			h.startAgent(owner)
		}
		line := fmt.Sprintf("stop: failed=%d runs=%d in_flight_cut=%d gap_ms_max=%d slowest_request_ms=%d", failed, runs, broken, durationPercentile(gaps, 1).Milliseconds(), slowest.Milliseconds())
		t.Log(line)
		fmt.Println(line)
		// New connections are never refused. A request in flight at the
		// very moment the VIP moves can be cut (the new owner answers its
		// next packet with a reset): VRRP moves addresses, not connections.
		if refused := failed - broken; refused > 0 {
			t.Errorf("%d new connections failed while owners stopped gracefully; want 0", refused)
		}
	})

	// POST /v1/nodes/{id}/drain on the owner under load: its agent gives the
	// VIPs up (keepalived FAULT, a priority-0 advert: a backup takes over at
	// once) while HAProxy keeps serving what it has. No request fails, and
	// requests in flight on the drained node (a slow backend) complete.
	t.Run("OwnerDrained", func(t *testing.T) {
		defer h.use(t)()
		l := h.startLoad(vip, loadInterval)
		var gaps []time.Duration
		var slowest time.Duration
		failed, cut, inFlight, inFlightFailed, contested := 0, 0, 0, 0, 0
		for i := 0; i < runs; i++ {
			h.waitAllReady()
			owner := h.waitOwner(vip, nil)
			time.Sleep(500 * time.Millisecond)
			// Slow requests through the owner, in flight when it drains.
			var wg sync.WaitGroup
			var mu sync.Mutex
			var slowErrs []error
			for j := 0; j < 3; j++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					var via string
					err := inNS(h.client, func() (err error) {
						via, err = fetchPath(net.JoinHostPort(vip, "80"), "/slow", slowRequest+5*time.Second)
						return err
					})
					if err == nil && via != owner.ip {
						err = fmt.Errorf("served through %s, not the drained owner %s", via, owner.ip)
					}
					mu.Lock()
					slowErrs = append(slowErrs, err)
					mu.Unlock()
				}()
			}
			time.Sleep(300 * time.Millisecond) // the slow requests reached the backend
			at := time.Now()
			if code, out := h.st.CallAs(h.st.AdminToken, http.MethodPost, "/v1/nodes/"+owner.name+"/drain", nil); code != http.StatusOK {
				t.Fatalf("drain %s: %d %v", owner.name, code, out)
			}
			o := h.measure(l, at, 15*time.Second, 2*time.Second)
			if masters := h.wire.masters(at, time.Now(), routerID(owner.name, vip), owner.name); len(masters) != 1 {
				contested++
				t.Logf("run %d: after %s drained, %v advertised as master:\n%s", i+1, owner.name, masters, h.wire.timeline(at, time.Now(), vip, routerID(owner.name, vip)))
			}
			if o.failed > 0 {
				t.Logf("run %d: %d requests failed over the drain of %s; requests from the drain on:\n%s\nthe client's link:\n%s", i+1, o.failed, owner.name,
					describeResults(l.since(at.Add(-100*time.Millisecond)), at, h), h.wire.timeline(at, time.Now(), vip, routerID(owner.name, vip)))
			}
			via := h.checkMovedOnce(o, vip, owner)
			newOwner := h.waitOwner(vip, nil)
			if newOwner == owner || via != newOwner.ip {
				t.Fatalf("run %d: after %s drained, %s holds the VIP and requests go through %s", i+1, owner.name, newOwner.name, via)
			}
			wg.Wait()
			for _, err := range slowErrs {
				inFlight++
				if err != nil {
					inFlightFailed++
					t.Errorf("run %d: a request in flight on %s when it drained failed: %v", i+1, owner.name, err)
				}
			}
			gaps, failed, cut, slowest = append(gaps, o.gap), failed+o.failed, cut+o.broken, max(slowest, o.slowest)
			t.Logf("run %d: %s drained: %d failed (%v), %d in flight completed; %s took the VIP", i+1, owner.name, o.failed, o.errs, len(slowErrs), newOwner.name)
			if code, out := h.st.CallAs(h.st.AdminToken, http.MethodPost, "/v1/nodes/"+owner.name+"/uncordon", nil); code != http.StatusOK {
				t.Fatalf("uncordon %s: %d %v", owner.name, code, out)
			}
			// Back in service, the drained node does not take the VIP back.
			teststack.WaitFor(t, owner.name+" ready again", 30*time.Second, func() bool { return h.ready(owner) })
			time.Sleep(time.Second)
			if now := h.waitOwner(vip, nil); now != newOwner {
				t.Fatalf("run %d: the VIP moved from %s to %s when %s returned to service", i+1, newOwner.name, now.name, owner.name)
			}
		}
		line := fmt.Sprintf("drain: failed=%d runs=%d cut_at_move=%d in_flight=%d in_flight_failed=%d gap_ms_max=%d slowest_request_ms=%d contested=%d",
			failed, runs, cut, inFlight, inFlightFailed, durationPercentile(gaps, 1).Milliseconds(), slowest.Milliseconds(), contested)
		t.Log(line)
		fmt.Println(line)
		// No connection is refused, and requests in flight on the drained
		// node complete. A connection whose handshake the old owner
		// answered while the client's next packet already went to the new
		// owner (its gratuitous ARP arrived in between, a window of a few
		// milliseconds) is reset by the new owner: VRRP moves addresses, not
		// connections; that is counted (cut_at_move), not asserted.
		if refused := failed - cut; refused > 0 {
			t.Errorf("%d new connections failed while owners drained; want 0", refused)
		}
	})

	// A cordoned node keeps serving the VIPs it holds and claims no other:
	// cordon the owner and one other node; the VIP stays; drain the owner:
	// the VIP goes to the one node in service, never to the cordoned one.
	t.Run("CordonedClaimsNothing", func(t *testing.T) {
		defer h.use(t)()
		l := h.startLoad(vip, loadInterval)
		h.waitAllReady()
		owner := h.waitOwner(vip, nil)
		var cordoned, free *haNode
		for _, n := range h.nodes {
			if n == owner {
				continue
			}
			if cordoned == nil {
				cordoned = n
			} else {
				free = n
			}
		}
		admin := func(n *haNode, op string) {
			t.Helper()
			if code, out := h.st.CallAs(h.st.AdminToken, http.MethodPost, "/v1/nodes/"+n.name+"/"+op, nil); code != http.StatusOK {
				t.Fatalf("%s %s: %d %v", op, n.name, code, out)
			}
		}
		defer func() {
			for _, n := range h.nodes {
				admin(n, "uncordon")
			}
		}()
		at := time.Now()
		admin(owner, "cordon")
		admin(cordoned, "cordon")
		time.Sleep(2 * time.Second)
		if now := h.waitOwner(vip, nil); now != owner {
			t.Fatalf("cordoning %s moved its VIP to %s", owner.name, now.name)
		}
		// The cordoned node does not hold the VIP: its instance there is in
		// FAULT through its hold file.
		in := keepalived.Instances(keepalived.Settings{RouterIDMin: 1, RouterIDMax: 255}, cordoned.name, []netip.Addr{netip.MustParseAddr(vip)})
		f := filepath.Join(cordoned.dir, "state", "keepalived", "hold_"+in[0].Name)
		teststack.WaitFor(t, "the cordoned "+cordoned.name+" to put "+in[0].Name+" in FAULT", 10*time.Second, func() bool {
			b, _ := os.ReadFile(f)
			return strings.TrimSpace(string(b)) == "-254"
		})
		drained := time.Now()
		admin(owner, "drain")
		o := h.measure(l, at, 15*time.Second, 2*time.Second)
		if o.failed > 0 {
			t.Logf("%d requests failed; requests from the drain on:\n%s\nthe client's link:\n%s", o.failed,
				describeResults(l.since(at), drained, h), h.wire.timeline(drained, time.Now(), vip, routerID(owner.name, vip)))
		}
		h.checkMovedOnce(o, vip, owner)
		if now := h.waitOwner(vip, nil); now != free {
			t.Fatalf("after %s drained, %s holds the VIP; want %s (%s is cordoned)", owner.name, now.name, free.name, cordoned.name)
		}
		// As in OwnerDrained: no connection refused; a request whose
		// connection the old owner accepted just before the new owner's
		// gratuitous ARP reached the client is reset by the new owner
		// (VRRP moves addresses, not connections): counted, not asserted.
		if refused := o.failed - o.broken; refused > 0 {
			t.Errorf("%d new connections failed over a cordon and a drain (%v); want 0", refused, o.errs)
		}
		t.Logf("%s and %s cordoned, %s drained: the VIP went to %s, %d failed (%d cut at the move)", owner.name, cordoned.name, owner.name, free.name, o.failed, o.broken)
	})

	// HAProxy peers share the stick tables among the nodes: a client's
	// source-IP persistence entry made on the owner is on the other nodes
	// too, and after the VIP moves (a drain) the client stays on its server.
	t.Run("PersistenceSurvivesMove", func(t *testing.T) {
		defer h.use(t)()
		h.startBackend(backendPort + 1)
		s := h.st
		lb := s.Create("/v1/load-balancers", map[string]any{"name": "ha-peers"})
		lbID, pvip := lb["id"].(string), lb["vip_address"].(string)
		pool := s.Create("/v1/pools", map[string]any{"load_balancer_id": lbID, "protocol": "http", "algorithm": "round_robin",
			"session_persistence": map[string]any{"type": "source_ip"}})["id"].(string)
		for _, port := range []int{backendPort, backendPort + 1} {
			s.Create("/v1/members", map[string]any{"pool_id": pool, "address": h.subnet + ".31", "port": port})
		}
		lsn := s.Create("/v1/listeners", map[string]any{"load_balancer_id": lbID, "protocol": "http", "port": 80, "default_pool_id": pool})["id"].(string)
		s.WaitActive("/v1/listeners/" + lsn)
		h.waitAllReady()
		owner := h.waitOwner(pvip, nil)
		port := func() string {
			t.Helper()
			var got string
			teststack.WaitFor(t, "an answer on "+pvip, 10*time.Second, func() bool {
				var err error
				_ = inNS(h.client, func() error { got, err = fetchPath(net.JoinHostPort(pvip, "80"), "/port", 3*time.Second); return nil })
				return err == nil
			})
			return got
		}
		first := port()
		for i := 0; i < 4; i++ {
			if got := port(); got != first {
				t.Fatalf("source-IP persistence on %s: answered by %s, then %s", owner.name, first, got)
			}
		}
		client := h.subnet + ".21"
		for _, n := range h.nodes {
			teststack.WaitFor(t, n.name+"'s stick table to hold the client (peers)", 10*time.Second, func() bool {
				return strings.Contains(h.runtime(n, "show table "+pool), "key="+client+" ")
			})
		}
		admin := func(n *haNode, op string) {
			t.Helper()
			if code, out := s.CallAs(s.AdminToken, http.MethodPost, "/v1/nodes/"+n.name+"/"+op, nil); code != http.StatusOK {
				t.Fatalf("%s %s: %d %v", op, n.name, code, out)
			}
		}
		admin(owner, "drain")
		defer admin(owner, "uncordon")
		newOwner := h.waitOwner(pvip, owner)
		for i := 0; i < 5; i++ {
			if got := port(); got != first {
				t.Fatalf("after the VIP moved from %s to %s the client went to server %s, not %s: persistence lost", owner.name, newOwner.name, got, first)
			}
		}
		t.Logf("source-IP persistence to :%s held over the move from %s to %s (the entry reached every node through peers)", first, owner.name, newOwner.name)
	})

	// The per-client rate-limit counters are shared through peers too: a
	// client over its limit on the owner is still over it on the node that
	// takes the VIP, from its first request there, not after a fresh
	// per_second allowance. The client sends 50 requests a second (a new
	// connection each) against a limit of 10 throughout: its rate never falls
	// under the limit, so whatever the new owner lets through it let through
	// because its counter started again. The assertion is on that count (a
	// reset lets per_second requests through) and on the counter the new
	// owner holds when it takes the VIP, not on one request's timing.
	t.Run("RateLimitSurvivesMove", func(t *testing.T) {
		defer h.use(t)()
		const perSecond = 10
		s := h.st
		lb := s.Create("/v1/load-balancers", map[string]any{"name": "ha-ratelimit"})
		lbID, rvip := lb["id"].(string), lb["vip_address"].(string)
		pool := s.Create("/v1/pools", map[string]any{"load_balancer_id": lbID, "protocol": "http"})["id"].(string)
		s.Create("/v1/members", map[string]any{"pool_id": pool, "address": h.subnet + ".31", "port": backendPort})
		lsn := s.Create("/v1/listeners", map[string]any{"load_balancer_id": lbID, "protocol": "http", "port": 80, "default_pool_id": pool,
			"rate_limit": map[string]any{"type": "requests", "per_second": perSecond}})["id"].(string)
		s.WaitActive("/v1/listeners/" + lsn)
		h.waitAllReady()
		owner := h.waitOwner(rvip, nil)
		teststack.WaitFor(t, "an answer on "+rvip, 10*time.Second, func() bool {
			var err error
			_ = inNS(h.client, func() error { _, err = fetchVia(net.JoinHostPort(rvip, "80")); return nil })
			return err == nil
		})
		client := h.subnet + ".21"
		l := h.startLoad(rvip, loadInterval)
		defer l.stop()
		limited := func(rs []result) (passed map[string]int, denied int) {
			passed = map[string]int{}
			for _, r := range rs {
				switch {
				case r.ok:
					passed[r.via]++
				case r.err == "status 429":
					denied++
				}
			}
			return passed, denied
		}
		// Limited on the owner, and the entry on every node.
		start := time.Now()
		teststack.WaitFor(t, "the client to be rate-limited on "+owner.name, 10*time.Second, func() bool {
			_, denied := limited(l.since(start))
			return denied >= 2*perSecond && reqRate(h.runtime(owner, "show table "+lsn), client) > perSecond
		})
		for _, n := range h.nodes {
			teststack.WaitFor(t, n.name+"'s rate table to hold the client over its limit (peers)", 10*time.Second, func() bool {
				return reqRate(h.runtime(n, "show table "+lsn), client) > perSecond
			})
		}
		admin := func(n *haNode, op string) {
			t.Helper()
			if code, out := s.CallAs(s.AdminToken, http.MethodPost, "/v1/nodes/"+n.name+"/"+op, nil); code != http.StatusOK {
				t.Fatalf("%s %s: %d %v", op, n.name, code, out)
			}
		}
		at := time.Now()
		admin(owner, "drain")
		defer admin(owner, "uncordon")
		newOwner := h.waitOwner(rvip, owner)
		moved := time.Since(at)
		// Right after the move: the new owner's counter for the client.
		rate := reqRate(h.runtime(newOwner, "show table "+lsn), client)
		if rate <= perSecond {
			t.Fatalf("right after the VIP moved from %s to %s (%s) the new owner's rate for %s is %d; want over the limit %d (counter reset)",
				owner.name, newOwner.name, moved.Round(time.Millisecond), client, rate, perSecond)
		}
		var probe error
		_ = inNS(h.client, func() error { _, probe = fetchVia(net.JoinHostPort(rvip, "80")); return nil })
		if probe == nil || probe.Error() != "status 429" {
			t.Errorf("a request right after the move got %v; want status 429", probe)
		}
		// The new owner answers the load (its frontend counts the 429s it
		// sent), and it let through none of the per_second requests a
		// fresh counter would have.
		teststack.WaitFor(t, newOwner.name+" to deny the client", 10*time.Second, func() bool {
			return frontendStat(h.runtime(newOwner, "show stat"), lsn, "hrsp_4xx") >= 2*perSecond
		})
		time.Sleep(time.Second) // a second of load on the new owner, to its first second's end
		l.stop()
		passed, denied := limited(l.since(at))
		newDenied := frontendStat(h.runtime(newOwner, "show stat"), lsn, "hrsp_4xx")
		line := fmt.Sprintf("ratelimit_peers: per_second=%d move_ms=%d new_owner_rate_at_move=%d new_owner_passed=%d new_owner_denied=%d old_owner_passed=%d denied_since_drain=%d",
			perSecond, moved.Milliseconds(), rate, passed[newOwner.ip], newDenied, passed[owner.ip], denied)
		t.Log(line)
		fmt.Println(line)
		if passed[newOwner.ip] >= perSecond/2 {
			t.Errorf("%s let %d requests of a client over its limit through after the VIP moved from %s; a reset counter allows %d: counter not carried over",
				newOwner.name, passed[newOwner.ip], owner.name, perSecond)
		}
	})

	t.Run("OwnerKilled", func(t *testing.T) {
		defer h.use(t)()
		h.killOwners(vip, runs, "failover")
	})
}

// TestHAFailoverMulticast is OwnerKilled for a group whose nodes registered
// no peer address (VRRP's multicast adverts only, no HAProxy peers): every
// node's snapshot still lists the group's three nodes (vrrp.nodes), so
// before each kill their VRRP priorities for the VIP are ranked and
// distinct, keepalived advertises them live (the owner's adverts before the
// kill, the new owner's after it: ranked, plus the holder's bonus once
// settled), and a kill moves the VIP once (one survivor advertises as
// master).
func TestHAFailoverMulticast(t *testing.T) {
	runs := haRuns()
	h := newHANetWith(t, 3, true)
	const backendPort = 8080
	h.startBackend(backendPort)
	_, vip := h.createLB("ha-mc", backendPort)
	h.waitAllReady()
	h.waitOwner(vip, nil)

	t.Run("OwnerKilled", func(t *testing.T) {
		defer h.use(t)()
		if contested := h.killOwners(vip, runs, "failover_multicast"); contested > 0 {
			t.Errorf("%d of %d kills moved the VIP more than once (two survivors advertised as master; timelines above)", contested, runs)
		}
	})
}

// killOwners kills vip's owner (agent, HAProxy, keepalived; kill -9) runs
// times under steady traffic, checking the nodes' priorities before each
// kill, that traffic settles on one survivor, and that the killed node does
// not take the VIP back when it returns; it prints the line label: and
// returns how many kills were contested (more than one survivor advertised
// as master for the VIP's router id).
func (h *haNet) killOwners(vip string, runs int, label string) int {
	t := h.t
	t.Helper()
	l := h.startLoad(vip, loadInterval)
	var gaps []time.Duration
	var slowest time.Duration
	failed, contested := 0, 0
	for i := 0; i < runs; i++ {
		h.waitAllReady()
		owner := h.waitOwner(vip, nil)
		time.Sleep(500 * time.Millisecond)
		prios := h.checkPriorities(vip, owner)
		vrid := routerID(owner.name, vip)
		if prios != nil {
			// keepalived's live priority (the owner's adverts) is the
			// ranked one, with the holder's bonus once settled.
			h.checkAdverts(vrid, owner, prios[owner.name], time.Now(), true)
		}
		at := time.Now()
		h.killNode(owner)
		o := h.measure(l, at, 15*time.Second, 2*time.Second)
		// Who advertised as master for the VIP's router id after the
		// kill: one survivor when the VIP moved once.
		masters := h.wire.masters(at, time.Now(), vrid, owner.name)
		if len(masters) != 1 {
			contested++
			t.Logf("run %d: after %s was killed, %v advertised as master for router id %d:\n%s", i+1, owner.name, masters, vrid,
				h.wire.timeline(at.Add(-200*time.Millisecond), time.Now(), vip, vrid))
		}
		via := h.checkSettledWire(o, vip, at, vrid)
		if via == owner.ip {
			t.Fatalf("run %d: requests still answered through the killed node %s", i+1, owner.name)
		}
		newOwner := h.waitOwner(vip, owner)
		if newOwner.ip != via {
			t.Fatalf("run %d: %s holds the VIP but requests go through %s", i+1, newOwner.name, via)
		}
		if prios != nil {
			h.checkAdverts(vrid, newOwner, prios[newOwner.name], at, false)
		}
		gaps, failed, slowest = append(gaps, o.gap), failed+o.failed, max(slowest, o.slowest)
		t.Logf("run %d: %s killed (agent, HAProxy, keepalived): gap %s, %d failed; %s took the VIP", i+1, owner.name,
			o.gap.Round(time.Millisecond), o.failed, newOwner.name)

		// The killed node comes back: it must not take the VIP back.
		back := time.Now()
		h.startAgent(owner)
		teststack.WaitFor(t, owner.name+" ready again", 30*time.Second, func() bool { return h.ready(owner) })
		time.Sleep(time.Second)
		if now := h.waitOwner(vip, nil); now != newOwner {
			t.Fatalf("run %d: the VIP moved from %s to %s when %s returned (flapping)", i+1, newOwner.name, now.name, owner.name)
		}
		for _, r := range l.since(back) {
			if !r.ok {
				t.Fatalf("run %d: a request failed while %s returned", i+1, owner.name)
			}
		}
	}
	line := fmt.Sprintf("%s: gap_ms_p50=%d gap_ms_max=%d failed=%d runs=%d slowest_request_ms=%d contested=%d", label,
		durationPercentile(gaps, 0.5).Milliseconds(), durationPercentile(gaps, 1).Milliseconds(), failed, runs, slowest.Milliseconds(), contested)
	t.Log(line)
	fmt.Println(line)
	return contested
}

// waitAllReady waits until every node's agent lets keepalived hold VIPs.
func (h *haNet) waitAllReady() {
	h.t.Helper()
	teststack.WaitFor(h.t, "every node ready", 30*time.Second, func() bool {
		for _, n := range h.nodes {
			if !h.ready(n) {
				return false
			}
		}
		return true
	})
}

// waitOwner waits until exactly one node (besides dead, whose kernel may still
// carry the address of a keepalived killed with -9) holds vip.
func (h *haNet) waitOwner(vip string, dead *haNode) *haNode {
	h.t.Helper()
	var owner *haNode
	teststack.WaitFor(h.t, "one owner of "+vip, 15*time.Second, func() bool {
		var alive []*haNode
		for _, n := range h.holders(vip) {
			if n != dead {
				alive = append(alive, n)
			}
		}
		if len(alive) == 1 {
			owner = alive[0]
			return true
		}
		return false
	})
	return owner
}

// checkSettled fails the test when a request failed after traffic resumed
// or requests went through more than one node (flapping); it returns the node
// address that serves.
func (h *haNet) checkSettled(o outage, vip string) string {
	h.t.Helper()
	if len(o.after) == 0 {
		h.t.Fatalf("no request after traffic resumed on %s", vip)
	}
	if o.flaps > 0 {
		h.t.Fatalf("requests to %s failed again after traffic had resumed (%d times: flapping)", vip, o.flaps)
	}
	via := o.after[0].via
	for _, r := range o.after {
		if !r.ok {
			h.t.Fatalf("a request to %s failed after traffic had resumed (flapping)", vip)
		}
		if r.via != via {
			h.t.Fatalf("requests to %s went through %s, then %s after traffic resumed (flapping)", vip, via, r.via)
		}
	}
	return via
}

// checkSettledWire is checkSettled that, when it fails, first logs what the
// client's link carried for the VIP from the fault at on.
func (h *haNet) checkSettledWire(o outage, vip string, at time.Time, vrid int) string {
	h.t.Helper()
	if len(o.after) > 0 && o.flaps == 0 {
		settled := true
		for _, r := range o.after {
			settled = settled && r.ok && r.via == o.after[0].via
		}
		if settled {
			return o.after[0].via
		}
	}
	h.t.Logf("the client's link from 200ms before the fault:\n%s", h.wire.timeline(at.Add(-200*time.Millisecond), time.Now(), vip, vrid))
	return h.checkSettled(o, vip)
}

// describeResults lists requests around a move (until a second after the
// last failure): start relative to at, duration, and the node or the error.
func describeResults(rs []result, at time.Time, h *haNet) string {
	var last time.Time
	for _, r := range rs {
		if !r.ok {
			last = r.at
		}
	}
	var b strings.Builder
	for _, r := range rs {
		if !last.IsZero() && r.at.After(last.Add(time.Second)) {
			break
		}
		who := r.err
		if r.ok {
			if n := h.nodeByIP(r.via); n != nil {
				who = "via " + n.name
			}
		}
		fmt.Fprintf(&b, "  +%v (%v) %s\n", r.at.Sub(at).Round(100*time.Microsecond), r.dur.Round(100*time.Microsecond), who)
	}
	return b.String()
}

// checkAdverts checks the priority keepalived advertises live for vrid on
// n (the wire's adverts from since on; waiting for one when wait): each is
// ranked, the ranked priority n's rank file gives it (checkPriorities), or
// ranked plus the holder's bonus once n has held the VIP a while.
func (h *haNet) checkAdverts(vrid int, n *haNode, ranked int, since time.Time, wait bool) {
	h.t.Helper()
	adverts := func() []int {
		var out []int
		for _, e := range h.wire.since(since) {
			if e.kind == "vrrp" && e.vrid == vrid && e.prio != 0 && h.wire.node(e.mac) == n.name {
				out = append(out, e.prio)
			}
		}
		return out
	}
	if wait {
		teststack.WaitFor(h.t, n.name+"'s adverts for router id "+strconv.Itoa(vrid), 5*time.Second, func() bool { return len(adverts()) > 0 })
	}
	got := adverts()
	if len(got) == 0 {
		h.t.Fatalf("%s holds the VIP of router id %d but sent no advert for it", n.name, vrid)
	}
	var distinct []int
	for _, p := range got {
		if p != ranked && p != ranked+keepalived.HolderBonus {
			h.t.Fatalf("%s advertised priority %d for router id %d; its ranked priority is %d (%d with the holder's bonus)",
				n.name, p, vrid, ranked, ranked+keepalived.HolderBonus)
		}
		if !slices.Contains(distinct, p) {
			distinct = append(distinct, p)
		}
	}
	h.t.Logf("%s advertised router id %d with priority %v (%d adverts)", n.name, vrid, distinct, len(got))
}

// checkPriorities checks that the nodes' VRRP priorities for vip's router id
// (the config's hashed one plus the rank file; the holder's bonus aside) are
// ranked over the group's nodes as each node's snapshot lists them (its
// vrrp.nodes, or its peers from an API without them; a node not listed
// keeps its hashed priority) and, when every node lists all three, distinct,
// so that when owner goes away the other two time out apart and the VIP
// moves once. Without peer addresses (h.noPeerAddress) every node must list
// all three in vrrp.nodes and none any peer. It returns each node's ranked
// priority, nil when not every node lists the three.
func (h *haNet) checkPriorities(vip string, owner *haNode) map[string]int {
	h.t.Helper()
	var got []string
	seen := map[int]string{}
	ranked := map[string]int{}
	all := true // every node lists the three
	for _, n := range h.nodes {
		in := keepalived.Instances(keepalived.Settings{RouterIDMin: 1, RouterIDMax: 255}, n.name, []netip.Addr{netip.MustParseAddr(vip)})[0]
		var p, want, listed, peers int
		teststack.WaitFor(h.t, n.name+"'s rank file for "+in.Name+" to rank it among the nodes its snapshot lists", 10*time.Second, func() bool {
			var state struct {
				Snapshot struct {
					Peers []struct{ Name string }
					Vrrp  *struct{ Nodes *[]string }
				}
			}
			b, err := os.ReadFile(filepath.Join(n.dir, "state", "snapshot.json"))
			if err != nil || json.Unmarshal(b, &state) != nil {
				return false
			}
			var names []string
			if v := state.Snapshot.Vrrp; v != nil && v.Nodes != nil {
				names = *v.Nodes
			} else {
				for _, p := range state.Snapshot.Peers {
					names = append(names, p.Name)
				}
			}
			listed, peers = len(names), len(state.Snapshot.Peers)
			if h.noPeerAddress && listed != len(h.nodes) {
				return false // the group's nodes reach it with its next snapshot
			}
			want = in.Priority
			if r := keepalived.RankedPriority(n.name, in.RouterID, names); r > 0 {
				want = r
			}
			b, err = os.ReadFile(filepath.Join(n.dir, "state", "keepalived", "rank_"+in.Name))
			if err != nil {
				return false
			}
			r, err := strconv.Atoi(strings.TrimSpace(string(b)))
			p = in.Priority + r
			return err == nil && p == want
		})
		if h.noPeerAddress && peers != 0 {
			h.t.Fatalf("%s's snapshot lists %d peers; no node registered a peer address", n.name, peers)
		}
		all = all && listed == len(h.nodes)
		if o, dup := seen[p]; dup && all {
			h.t.Fatalf("%s and %s both have VRRP priority %d for %s", n.name, o, p, vip)
		}
		seen[p] = n.name
		ranked[n.name] = p
		mark := ""
		if n == owner {
			mark = "+bonus"
		}
		got = append(got, fmt.Sprintf("%s=%d%s", n.name, p, mark))
	}
	if !all {
		// The group's nodes reach its nodes late (or partly) from an
		// older API: those not listed keep their hashed priorities.
		h.t.Logf("VRRP priorities for %s: %s (not every node lists the group's three nodes: partly hashed)", vip, strings.Join(got, " "))
		return nil
	}
	h.t.Logf("VRRP priorities for %s: %s", vip, strings.Join(got, " "))
	return ranked
}

// routerID is the VRRP router id vip uses in the harness's group.
func routerID(node, vip string) int {
	in := keepalived.Instances(keepalived.Settings{RouterIDMin: 1, RouterIDMax: 255}, node, []netip.Addr{netip.MustParseAddr(vip)})
	return in[0].RouterID
}

// checkMovedOnce is checkSettled for a VIP that moves away from a node that
// keeps serving until it lets go (a drain, a graceful stop): requests after
// traffic resumed go through from, then through one other node, never back
// (allowing 100 ms of overlap by start time: a request's start and its SYN
// are not ordered exactly on a busy machine). It returns the new node's
// address.
func (h *haNet) checkMovedOnce(o outage, vip string, from *haNode) string {
	h.t.Helper()
	if len(o.after) == 0 {
		h.t.Fatalf("no request after traffic resumed on %s", vip)
	}
	if o.flaps > 0 {
		h.t.Fatalf("requests to %s failed again after traffic had resumed (%d times: flapping)", vip, o.flaps)
	}
	var via string
	var lastOld, firstNew time.Time
	for _, r := range o.after {
		if !r.ok {
			h.t.Fatalf("a request to %s failed after traffic had resumed (flapping)", vip)
		}
		if r.via == from.ip {
			lastOld = r.at
			continue
		}
		if via == "" {
			via, firstNew = r.via, r.at
		} else if r.via != via {
			h.t.Fatalf("requests to %s went through %s, then %s (flapping)", vip, via, r.via)
		}
	}
	if via == "" {
		h.t.Fatalf("requests to %s still go through %s", vip, from.name)
	}
	if d := lastOld.Sub(firstNew); d > 100*time.Millisecond {
		h.t.Fatalf("requests to %s went through %s again %s after %s served them (flapping)", vip, from.name, d, via)
	}
	return via
}

// use makes the harness report to t (a subtest) until the returned func
// runs; that also starts again any agent a failed subtest left stopped, so
// the next subtest starts from three running nodes.
func (h *haNet) use(t *testing.T) func() {
	parent := h.t
	h.t = t
	return func() {
		h.t = parent
		for _, n := range h.nodes {
			n.mu.Lock()
			done := n.done
			n.mu.Unlock()
			select {
			case <-done:
				n.stopOnExit = false
				h.startAgent(n)
			default:
			}
		}
	}
}

// reqRate is the http_req_rate of key in a "show table" answer, 0 when the
// key is not in it.
func reqRate(table, key string) int {
	for _, line := range strings.Split(table, "\n") {
		if !strings.Contains(line, " key="+key+" ") {
			continue
		}
		for _, f := range strings.Fields(line) {
			if v, ok := strings.CutPrefix(f, "http_req_rate("); ok {
				if _, n, ok := strings.Cut(v, ")="); ok {
					r, _ := strconv.Atoi(n)
					return r
				}
			}
		}
	}
	return 0
}

// frontendStat is a field of the frontend's row in a "show stat" answer (CSV
// with a "# pxname,svname,..." header), 0 when absent.
func frontendStat(stat, frontend, field string) int {
	col := -1
	for _, line := range strings.Split(stat, "\n") {
		fs := strings.Split(strings.TrimPrefix(line, "# "), ",")
		if strings.HasPrefix(line, "# ") {
			for i, f := range fs {
				if f == field {
					col = i
				}
			}
			continue
		}
		if col >= 0 && len(fs) > col && fs[0] == frontend && fs[1] == "FRONTEND" {
			n, _ := strconv.Atoi(fs[col])
			return n
		}
	}
	return 0
}
