package haproxy

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"
)

// renderBoth renders c with Render and with rc and fails unless the text
// and the error are the same.
func renderBoth(t *testing.T, rc *RenderCache, c Config, step string) bool {
	t.Helper()
	want, werr := Render(c)
	got, gerr := rc.Render(c)
	if fmt.Sprint(werr) != fmt.Sprint(gerr) {
		t.Fatalf("%s: errors differ: Render %v, RenderCache %v", step, werr, gerr)
	}
	if werr == nil && !bytes.Equal(want, got) {
		t.Fatalf("%s: texts differ\n--- Render\n%s\n--- RenderCache\n%s", step, want, got)
	}
	// Appended to a buffer of an earlier render, reused: the same text
	// after what the buffer held; on error the buffer as it was.
	prefix := "# kept\n"
	reused := append(append(appendBuf[:0], prefix...), "stale text of an earlier render"...)[:len(prefix)]
	got, gerr = rc.AppendRender(reused, c)
	if fmt.Sprint(werr) != fmt.Sprint(gerr) {
		t.Fatalf("%s: AppendRender: errors differ: Render %v, AppendRender %v", step, werr, gerr)
	}
	if werr != nil && string(got) != prefix {
		t.Fatalf("%s: AppendRender failed and returned %q, want the buffer as it was", step, got)
	}
	if werr == nil && (string(got[:len(prefix)]) != prefix || !bytes.Equal(want, got[len(prefix):])) {
		t.Fatalf("%s: AppendRender: texts differ\n--- Render\n%s\n--- AppendRender\n%s", step, want, got)
	}
	if cap(got) > cap(appendBuf) {
		appendBuf = got
	}
	return werr == nil
}

// appendBuf is the buffer renderBoth's AppendRender reuses.
var appendBuf []byte

// TestRenderCacheGolden: every golden case renders the same through the
// cache, alone and after the others.
func TestRenderCacheGolden(t *testing.T) {
	rc := &RenderCache{}
	for round := range 2 {
		for _, tc := range goldenCases() {
			renderBoth(t, rc, tc.cfg, fmt.Sprintf("round %d %s", round, tc.name))
			renderBoth(t, &RenderCache{}, tc.cfg, "fresh "+tc.name)
		}
	}
}

// TestRenderCacheRandom: random sequences of configurations made of the
// golden cases' load balancers, edited at random (members, weights, ports,
// VIPs, ids, enabled, drain timeouts, added and removed load balancers,
// clashes the renderer refuses), render byte for byte like Render.
func TestRenderCacheRandom(t *testing.T) {
	type src struct{ cs, lb int }
	cases := goldenCases()
	var all []src
	for i, tc := range cases {
		for j := range tc.cfg.LoadBalancers {
			all = append(all, src{i, j})
		}
	}
	rendered, refused := 0, 0
	for seed := range uint64(20) {
		r := rand.New(rand.NewPCG(seed, 7))
		rc := &RenderCache{}
		for step := range 40 {
			fresh := goldenCases() // fresh slices: edits never reach earlier configs
			c := Config{Global: testGlobal()}
			if r.IntN(4) == 0 {
				c.Global.PrometheusBind = netip.AddrPort{}
			}
			// Access logs and peers change what every load balancer's
			// sections hold: the cache must not serve stale pieces.
			if r.IntN(2) == 0 {
				c.Global.AccessLogSocket = "/run/fulcrum/access.sock"
			}
			if r.IntN(2) == 0 {
				c.Global.Peers = &Peers{Local: "n1", Nodes: []Peer{
					{Name: "n1", Addr: netip.MustParseAddrPort("10.0.0.1:10000")},
					{Name: "n2", Addr: netip.MustParseAddrPort("10.0.0.2:10000")}}}
			}
			for k, s := range all {
				if r.IntN(3) == 0 {
					continue
				}
				lb := fresh[s.cs].cfg.LoadBalancers[s.lb]
				// Distinct VIPs and ids by default, so most configurations render.
				lb.ID = fmt.Sprintf("%s_%d", lb.ID, k)
				lb.VIP = netip.AddrFrom4([4]byte{127, 78, byte(k), 1})
				editLB(r, &lb)
				if r.IntN(2) == 0 {
					lb.TenantID = fmt.Sprintf("tnt_%d", r.IntN(2))
				}
				if len(lb.Listeners) > 0 && r.IntN(2) == 0 {
					ls := append([]Listener(nil), lb.Listeners...)
					ls[0].AccessLog = !ls[0].AccessLog
					lb.Listeners = ls
				}
				c.LoadBalancers = append(c.LoadBalancers, lb)
			}
			r.Shuffle(len(c.LoadBalancers), func(i, j int) { c.LoadBalancers[i], c.LoadBalancers[j] = c.LoadBalancers[j], c.LoadBalancers[i] })
			if renderBoth(t, rc, c, fmt.Sprintf("seed %d step %d", seed, step)) {
				rendered++
			} else {
				refused++
			}
		}
	}
	t.Logf("%d configurations rendered, %d refused alike", rendered, refused)
	if rendered < 100 || refused < 20 {
		t.Fatalf("the random configurations should mostly render and sometimes be refused: %d rendered, %d refused", rendered, refused)
	}
}

// editLB makes a few random edits to lb (with fresh slices).
func editLB(r *rand.Rand, lb *LoadBalancer) {
	lb.Pools = append([]Pool(nil), lb.Pools...)
	lb.Listeners = append([]Listener(nil), lb.Listeners...)
	for range r.IntN(3) {
		switch r.IntN(8) {
		case 0:
			lb.Enabled = !lb.Enabled
		case 1:
			if len(lb.Pools) > 0 {
				p := &lb.Pools[r.IntN(len(lb.Pools))]
				p.Members = append([]Member(nil), p.Members...)
				if len(p.Members) > 0 {
					p.Members[r.IntN(len(p.Members))].Weight = r.IntN(5)
				}
			}
		case 2:
			if len(lb.Pools) > 0 {
				p := &lb.Pools[r.IntN(len(lb.Pools))]
				p.Members = append(append([]Member(nil), p.Members...), member(fmt.Sprintf("mbr_r%d", r.IntN(3)), "10.9.9.9", 80, 1))
			}
		case 3:
			if len(lb.Pools) > 0 {
				lb.Pools[r.IntN(len(lb.Pools))].DrainTimeoutMS = r.IntN(3) * 40000
			}
		case 4:
			if len(lb.Listeners) > 0 {
				lb.Listeners[r.IntN(len(lb.Listeners))].Port = 80 + r.IntN(3)
			}
		case 5:
			lb.VIP = netip.AddrFrom4([4]byte{127, 78, 0, 1}) // may clash with another
		case 6:
			lb.ID = "lb_same" // two with one id
		case 7:
			if len(lb.Listeners) > 0 && r.IntN(2) == 0 {
				lb.Listeners[0].ID = "lsn_shared" // a frontend name taken twice
			}
		}
	}
}
