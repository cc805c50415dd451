package acceptance

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/fulcrumlb/fulcrum/internal/pgtest"
	"github.com/fulcrumlb/fulcrum/internal/teststack"
)

// objectStats is the part of a stats object the test reads.
type objectStats struct {
	ID              string `json:"id"`
	RequestsTotal   int64  `json:"requests_total"`
	ConnectionsPeak int64  `json:"connections_peak"`
	Responses2xx    int64  `json:"responses_2xx"`
	BytesOut        int64  `json:"bytes_out"`
}

type lbStats struct {
	objectStats
	Listeners []objectStats `json:"listeners"`
	Pools     []struct {
		objectStats
		Members []objectStats `json:"members"`
	} `json:"pools"`
}

// counts flattens s to requests by object ("" for the load balancer).
func (s lbStats) counts() map[string]int64 {
	out := map[string]int64{"": s.RequestsTotal}
	for _, l := range s.Listeners {
		out[l.ID] = l.RequestsTotal
	}
	for _, p := range s.Pools {
		out[p.ID] = p.RequestsTotal
		for _, m := range p.Members {
			out[m.ID] = m.RequestsTotal
		}
	}
	return out
}

// TestStatsPerListenerAndMember: real traffic through a load balancer with
// two members is counted per listener and per member (the members' requests
// sum to the listener's, and each matches what its backend served), peaks
// are at least 1, and a reload for another load balancer resets nothing:
// traffic after it adds to the counts from before.
func TestStatsPerListenerAndMember(t *testing.T) {
	t.Parallel()
	s := newStack(t, pgtest.NewDatabase(t))
	const node = "stats-detail-node"
	s.StartAgent(node)
	b1, b2 := teststack.StartBackend(t, "one"), teststack.StartBackend(t, "two")
	lb := s.buildLB("detail", poolSpec{Port: 8000, Members: []int{b1.Port, b2.Port}})
	listener, pool := lb.Listeners[0], lb.Pools[0]
	m1, m2 := lb.Members[0][0], lb.Members[0][1]
	cl := teststack.NewClient(nil)
	send := func(n int) {
		t.Helper()
		for i := range n {
			if _, err := teststack.Fetch(cl, lb.url(8000, "/")); err != nil {
				t.Fatalf("request %d through the VIP: %v", i, err)
			}
		}
	}
	read := func() lbStats {
		t.Helper()
		code, raw := s.Call("GET", "/v1/load-balancers/"+lb.LB+"/stats", nil)
		if code != 200 {
			t.Fatalf("stats: %d %v", code, raw)
		}
		b, _ := json.Marshal(raw)
		var st lbStats
		if err := json.Unmarshal(b, &st); err != nil {
			t.Fatal(err)
		}
		return st
	}
	// waitFor reads the stats until every object has its count (reports
	// come every 300 ms in the test stack).
	waitFor := func(what string, want map[string]int64) lbStats {
		t.Helper()
		var st lbStats
		for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
			st = read()
			got, ok := st.counts(), true
			for id, n := range want {
				ok = ok && got[id] == n
			}
			if ok {
				return st
			}
		}
		t.Fatalf("%s: requests by object %v, want %v", what, st.counts(), want)
		return st
	}

	const n = 60
	send(n)
	h1, h2 := b1.Hits.Load(), b2.Hits.Load()
	if h1+h2 != n || h1 == 0 || h2 == 0 {
		t.Fatalf("backends served %d and %d of %d requests", h1, h2, n)
	}
	st := waitFor("after the traffic", map[string]int64{"": n, listener: n, pool: n, m1: int64(h1), m2: int64(h2)})
	if st.Listeners[0].ConnectionsPeak < 1 || st.ConnectionsPeak < 1 || st.Pools[0].Members[0].ConnectionsPeak < 1 {
		t.Errorf("peak sessions below 1: %+v", st)
	}
	if st.Listeners[0].Responses2xx != n || st.Listeners[0].BytesOut == 0 {
		t.Errorf("listener: %d 2xx responses, %d bytes out; want %d and some", st.Listeners[0].Responses2xx, st.Listeners[0].BytesOut, n)
	}
	peak := st.Listeners[0].ConnectionsPeak
	t.Logf("after %d requests: %v, listener peak %d", n, st.counts(), peak)

	// An unrelated load balancer: HAProxy reloads, its new worker counts
	// from zero. Nothing of this load balancer drops, over several reports.
	s.buildLB("unrelated", poolSpec{Port: 8001, Members: []int{teststack.StartBackend(t, "three").Port}})
	want := map[string]int64{"": n, listener: n, pool: n, m1: int64(h1), m2: int64(h2)}
	for range 8 {
		time.Sleep(250 * time.Millisecond)
		st = read()
		got := st.counts()
		for id, c := range want {
			if got[id] != c {
				t.Fatalf("after another load balancer reloaded HAProxy: %q has %d requests, want %d (all: %v)", id, got[id], c, got)
			}
		}
		if len(st.Listeners) == 0 || st.Listeners[0].ConnectionsPeak < peak {
			t.Fatalf("after the reload the listener's peak went from %d to %+v", peak, st.Listeners)
		}
	}

	// Traffic after the reload adds to the counts from before it.
	send(n)
	h1, h2 = b1.Hits.Load(), b2.Hits.Load()
	st = waitFor("after traffic following the reload", map[string]int64{"": 2 * n, listener: 2 * n, pool: 2 * n, m1: int64(h1), m2: int64(h2)})
	t.Logf("after %d more requests: %v", n, st.counts())
}
