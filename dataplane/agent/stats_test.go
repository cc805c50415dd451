package agent

import (
	"path/filepath"
	"testing"

	"github.com/fulcrumlb/fulcrum/dataplane/haproxy"
)

func TestStatsStoreAccumulatesAcrossWorkers(t *testing.T) {
	path := filepath.Join(t.TempDir(), "stats.json")
	lbOf := map[string]string{"lst_a": "lb_1", "lst_b": "lb_1", "lst_c": "lb_2"}
	fe := func(name string, req int64) haproxy.ProxyStat {
		return haproxy.ProxyStat{Name: name, Type: "frontend", Requests: req, TotalSessions: req}
	}
	s := loadStats(path)
	s.observe("100", []haproxy.ProxyStat{fe("lst_a", 10), fe("lst_b", 5), fe("lst_c", 7)}, lbOf)
	// A reload: a new worker counts from zero.
	got := s.observe("200", []haproxy.ProxyStat{fe("lst_a", 1), fe("lst_b", 0), fe("lst_c", 2)}, lbOf)
	if got["lb_1"].Requests != 16 || got["lb_2"].Requests != 9 {
		t.Errorf("after a reload: %+v, want lb_1 16 and lb_2 9 requests", got)
	}
	// A reset the pid does not show (counters went down).
	got = s.observe("200", []haproxy.ProxyStat{fe("lst_a", 0), fe("lst_b", 0), fe("lst_c", 3)}, lbOf)
	if got["lb_1"].Requests != 16 {
		t.Errorf("after a silent reset: lb_1 %d requests, want 16", got["lb_1"].Requests)
	}
	// A restart of the agent reads the saved counters.
	s = loadStats(path)
	got = s.observe("300", []haproxy.ProxyStat{fe("lst_a", 4)}, lbOf)
	if got["lb_1"].Requests != 20 || got["lb_2"].Requests != 10 {
		t.Errorf("after a restart: %+v, want lb_1 20 and lb_2 10 requests", got)
	}
	// A load balancer that is gone is forgotten.
	got = s.observe("300", nil, map[string]string{"lst_a": "lb_1"})
	if _, ok := got["lb_2"]; ok || got["lb_1"].Requests != 20 {
		t.Errorf("after lb_2 went away: %+v", got)
	}
}
