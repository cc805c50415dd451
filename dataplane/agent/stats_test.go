package agent

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/fulcrumlb/fulcrum/dataplane/haproxy"
	"github.com/fulcrumlb/fulcrum/openapi"
)

// statsConfig is two load balancers: lb_1 with listeners lst_a (to pool_1)
// and lst_b (to pool_2 by a rule), pool_1 with members mbr_1 and mbr_2;
// lb_2 with listener lst_c and pool_3 with mbr_3.
func statsConfig() *haproxy.Config {
	return &haproxy.Config{LoadBalancers: []haproxy.LoadBalancer{
		{ID: "lb_1", Listeners: []haproxy.Listener{
			{ID: "lst_a", DefaultPoolID: "pool_1"},
			{ID: "lst_b", Rules: []haproxy.Rule{{ID: "rule_1", Action: haproxy.Action{Type: "forward", Pools: []haproxy.WeightedPool{{PoolID: "pool_2"}}}}}},
		}, Pools: []haproxy.Pool{
			{ID: "pool_1", Members: []haproxy.Member{{ID: "mbr_1"}, {ID: "mbr_2"}}},
			{ID: "pool_2"},
		}},
		{ID: "lb_2", Listeners: []haproxy.Listener{{ID: "lst_c", DefaultPoolID: "pool_3"}},
			Pools: []haproxy.Pool{{ID: "pool_3", Members: []haproxy.Member{{ID: "mbr_3"}}}}},
	}}
}

// statShow is one `show stat` of a worker: requests per frontend, backend and
// server (sessions = requests), max sessions as given.
type statShow struct {
	fe, be, srv map[string]int64
	smax        map[string]int64
	rtime       map[string]int64
}

func (s statShow) read(cfg *haproxy.Config) map[string]reading {
	var proxies []haproxy.ProxyStat
	var servers []haproxy.ServerStat
	for name, n := range s.fe {
		proxies = append(proxies, haproxy.ProxyStat{Name: name, Type: "frontend", Mode: "http", Requests: n, TotalSessions: n, HRsp2xx: n,
			BytesIn: 100 * n, MaxSessions: s.smax[name]})
	}
	for name, n := range s.be {
		proxies = append(proxies, haproxy.ProxyStat{Name: name, Type: "backend", Mode: "http", Requests: n, TotalSessions: n, HRsp2xx: n,
			MaxSessions: s.smax[name], RTime: s.rtime[name], TTime: 2 * s.rtime[name]})
	}
	objs := statObjects(cfg)
	for name, n := range s.srv {
		servers = append(servers, haproxy.ServerStat{Backend: objs[name].PoolID, Server: name, TotalSessions: n, HRsp2xx: n,
			MaxSessions: s.smax[name], RTime: s.rtime[name], TTime: 2 * s.rtime[name]})
	}
	return readings(proxies, servers, objs)
}

// statsOf returns the stats of lb and of the listener, pool or member id in out.
func statsOf(t *testing.T, out []openapi.LoadBalancerStats, lb, id string) openapi.StatsFields {
	t.Helper()
	for i := range out {
		st := &out[i]
		if st.LoadBalancerId != lb {
			continue
		}
		if id == "" {
			return st.Fields()
		}
		for j := range deref(st.Listeners) {
			if l := &(*st.Listeners)[j]; l.Id == id {
				return l.Fields()
			}
		}
		for j := range deref(st.Pools) {
			p := &(*st.Pools)[j]
			if p.Id == id {
				return p.Fields()
			}
			for k := range deref(p.Members) {
				if m := &(*p.Members)[k]; m.Id == id {
					return m.Fields()
				}
			}
		}
	}
	t.Fatalf("no stats of %s %s in %+v", lb, id, out)
	return openapi.StatsFields{}
}

func statVal(p **int64) int64 {
	if *p == nil {
		return 0
	}
	return **p
}

func TestStatsAccumulateAcrossReloadsPerObject(t *testing.T) {
	path := filepath.Join(t.TempDir(), "stats.json")
	cfg := statsConfig()
	objs := statObjects(cfg)
	s := loadStats(path)
	observe := func(worker string, sh statShow) []openapi.LoadBalancerStats {
		return buildStats(s.observe(worker, sh.read(cfg), objs), cfg)
	}
	requests := func(out []openapi.LoadBalancerStats, lb, id string) int64 {
		t.Helper()
		return statVal(statsOf(t, out, lb, id).RequestsTotal)
	}
	check := func(what string, out []openapi.LoadBalancerStats, want map[[2]string]int64) {
		t.Helper()
		for k, n := range want {
			if got := requests(out, k[0], k[1]); got != n {
				t.Errorf("%s: %s %s has %d requests, want %d", what, k[0], k[1], got, n)
			}
		}
	}
	out := observe("100", statShow{
		fe:   map[string]int64{"lst_a": 10, "lst_b": 5, "lst_c": 7},
		be:   map[string]int64{"pool_1": 10, "pool_2": 5, "pool_3": 7},
		srv:  map[string]int64{"mbr_1": 6, "mbr_2": 4, "mbr_3": 7},
		smax: map[string]int64{"lst_a": 5, "mbr_1": 3},
	})
	check("first worker", out, map[[2]string]int64{{"lb_1", ""}: 15, {"lb_1", "lst_a"}: 10, {"lb_1", "pool_1"}: 10,
		{"lb_1", "mbr_1"}: 6, {"lb_1", "mbr_2"}: 4, {"lb_2", ""}: 7, {"lb_2", "mbr_3"}: 7})

	// A reload (another load balancer changed): the new worker counts from
	// zero, and its peak is lower.
	out = observe("200", statShow{
		fe:   map[string]int64{"lst_a": 1, "lst_c": 2},
		be:   map[string]int64{"pool_1": 1, "pool_3": 2},
		srv:  map[string]int64{"mbr_1": 1, "mbr_3": 2},
		smax: map[string]int64{"lst_a": 1, "mbr_1": 1},
	})
	check("after a reload", out, map[[2]string]int64{{"lb_1", ""}: 16, {"lb_1", "lst_a"}: 11, {"lb_1", "lst_b"}: 5,
		{"lb_1", "pool_1"}: 11, {"lb_1", "pool_2"}: 5, {"lb_1", "mbr_1"}: 7, {"lb_1", "mbr_2"}: 4, {"lb_2", ""}: 9, {"lb_2", "mbr_3"}: 9})
	if got := statVal(statsOf(t, out, "lb_1", "lst_a").ConnectionsPeak); got != 5 {
		t.Errorf("peak of lst_a after a reload: %d, want 5 (the first worker's)", got)
	}
	if got := statVal(statsOf(t, out, "lb_1", "mbr_1").ConnectionsPeak); got != 3 {
		t.Errorf("peak of mbr_1 after a reload: %d, want 3 (the first worker's)", got)
	}
	// A higher live peak wins.
	out = observe("200", statShow{fe: map[string]int64{"lst_a": 1}, smax: map[string]int64{"lst_a": 9}})
	if got := statVal(statsOf(t, out, "lb_1", "lst_a").ConnectionsPeak); got != 9 {
		t.Errorf("peak of lst_a: %d, want the live 9", got)
	}

	// A restart of the agent reads the saved counters (it writes what is
	// pending when it stops); HAProxy restarted too.
	s.flush()
	s = loadStats(path)
	out = observe("300", statShow{fe: map[string]int64{"lst_a": 4}, be: map[string]int64{"pool_1": 4}, srv: map[string]int64{"mbr_2": 4}})
	check("after a restart", out, map[[2]string]int64{{"lb_1", "lst_a"}: 15, {"lb_1", "mbr_1"}: 7, {"lb_1", "mbr_2"}: 8, {"lb_2", "lst_c"}: 9})
	if got := statVal(statsOf(t, out, "lb_1", "lst_a").ConnectionsPeak); got != 9 {
		t.Errorf("peak of lst_a after a restart: %d, want 9", got)
	}

	// A load balancer that is gone is forgotten; a member removed too.
	cfg.LoadBalancers = cfg.LoadBalancers[:1]
	cfg.LoadBalancers[0].Pools[0].Members = cfg.LoadBalancers[0].Pools[0].Members[:1]
	objs = statObjects(cfg)
	out = observe("300", statShow{})
	if len(out) != 1 || out[0].LoadBalancerId != "lb_1" || requests(out, "lb_1", "") != 20 {
		t.Errorf("after lb_2 went away: %+v", out)
	}
	if n := len(deref((*out[0].Pools)[0].Members)); n != 1 {
		t.Errorf("pool_1 has %d members' stats after mbr_2 went away, want 1", n)
	}
}

func TestStatsMemberResetTouchesNoOther(t *testing.T) {
	cfg := statsConfig()
	objs := statObjects(cfg)
	s := loadStats(filepath.Join(t.TempDir(), "stats.json"))
	sh := statShow{fe: map[string]int64{"lst_a": 30}, be: map[string]int64{"pool_1": 30}, srv: map[string]int64{"mbr_1": 20, "mbr_2": 10}}
	s.observe("100", sh.read(cfg), objs)
	// mbr_2 was deleted and added again at runtime (same worker): its
	// counters start over; nothing else moved.
	sh.srv = map[string]int64{"mbr_1": 20, "mbr_2": 1}
	out := buildStats(s.observe("100", sh.read(cfg), objs), cfg)
	for id, want := range map[string]int64{"": 30, "lst_a": 30, "pool_1": 30, "mbr_1": 20, "mbr_2": 11} {
		if got := statVal(statsOf(t, out, "lb_1", id).RequestsTotal); got != want {
			t.Errorf("%q: %d requests, want %d", id, got, want)
		}
	}
}

func TestStatsResponseTimesAndOldFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "stats.json")
	// A file written before pools and members were counted: listeners only.
	old := `{"worker":"100","entries":{"lst_a":{"load_balancer_id":"lb_1","base":{"Requests":40,"Connections":40},"last":{"Requests":2,"Connections":2}}}}`
	if err := os.WriteFile(path, []byte(old), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := statsConfig()
	objs := statObjects(cfg)
	s := loadStats(path)
	sh := statShow{fe: map[string]int64{"lst_a": 3, "lst_b": 1}, be: map[string]int64{"pool_1": 3, "pool_2": 1},
		srv: map[string]int64{"mbr_1": 3}, rtime: map[string]int64{"pool_1": 10, "pool_2": 50, "mbr_1": 10}}
	out := buildStats(s.observe("100", sh.read(cfg), objs), cfg)
	if got := statVal(statsOf(t, out, "lb_1", "lst_a").RequestsTotal); got != 43 {
		t.Errorf("lst_a after the old file: %d requests, want 43", got)
	}
	if got := statVal(statsOf(t, out, "lb_1", "lst_a").ResponseTimeMs); got != 10 {
		t.Errorf("lst_a response time %d, want pool_1's 10", got)
	}
	if got := statVal(statsOf(t, out, "lb_1", "lst_b").ResponseTimeMs); got != 50 {
		t.Errorf("lst_b response time %d, want pool_2's 50 (by its rule)", got)
	}
	// (3×10 + 1×50) / 4
	if got := statVal(statsOf(t, out, "lb_1", "").ResponseTimeMs); got != 20 {
		t.Errorf("lb_1 response time %d, want 20 (weighted by requests)", got)
	}
	if got := statVal(statsOf(t, out, "lb_1", "mbr_1").TotalTimeMs); got != 20 {
		t.Errorf("mbr_1 total time %d, want 20", got)
	}
	// A reload: the new worker has served nothing yet, its zeros do not
	// replace the last times.
	out = buildStats(s.observe("200", statShow{fe: map[string]int64{"lst_a": 0}, be: map[string]int64{"pool_1": 0}}.read(cfg), objs), cfg)
	if got := statVal(statsOf(t, out, "lb_1", "pool_1").ResponseTimeMs); got != 10 {
		t.Errorf("pool_1 response time after a reload %d, want the last 10", got)
	}
	// Zeros are left out of the report.
	if m := statsOf(t, out, "lb_1", "mbr_1"); *m.ConnectionsCurrent != nil || *m.Errors != nil {
		t.Errorf("mbr_1's zeros are in the report")
	}
}

func TestStatsReportsCarryOnlyChanges(t *testing.T) {
	s := loadStats(filepath.Join(t.TempDir(), "stats.json"))
	n := func(v int64) *int64 { return &v }
	all := []openapi.LoadBalancerStats{{LoadBalancerId: "lb_1", RequestsTotal: n(1)}, {LoadBalancerId: "lb_2", RequestsTotal: n(2)}}
	ids := func(out []openapi.LoadBalancerStats) []string {
		var ids []string
		for _, st := range out {
			ids = append(ids, st.LoadBalancerId)
		}
		return ids
	}
	now := time.Now()
	out, sent := s.unsent(all, now)
	if len(out) != 2 {
		t.Fatalf("first report: %v, want both", ids(out))
	}
	sent()
	if out, _ := s.unsent(all, now.Add(time.Second)); len(out) != 0 {
		t.Errorf("nothing changed: %v sent again", ids(out))
	}
	all[0].RequestsTotal = n(5)
	out, _ = s.unsent(all, now.Add(2*time.Second))
	if len(out) != 1 || out[0].LoadBalancerId != "lb_1" {
		t.Errorf("lb_1 changed: sent %v", ids(out))
	}
	// That report failed (sent not called): the change goes again.
	out, sent = s.unsent(all, now.Add(3*time.Second))
	if len(out) != 1 || out[0].LoadBalancerId != "lb_1" {
		t.Errorf("after a failed report: sent %v, want lb_1", ids(out))
	}
	sent()
	if out, _ := s.unsent(all, now.Add(fullStatsEvery)); len(out) != 2 {
		t.Errorf("after %s: sent %v, want all", fullStatsEvery, ids(out))
	}
}

func deref[T any](p *T) T {
	if p == nil {
		var zero T
		return zero
	}
	return *p
}
