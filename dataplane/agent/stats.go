package agent

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"sort"
	"strings"
	"sync"

	"github.com/fulcrumlb/fulcrum/dataplane/haproxy"
	"github.com/fulcrumlb/fulcrum/internal/atomicfile"
	"github.com/fulcrumlb/fulcrum/openapi"
)

// counters are the cumulative counters of one frontend (a listener).
type counters struct {
	Connections, Requests, BytesIn, BytesOut int64
	R1xx, R2xx, R3xx, R4xx, R5xx, Errors     int64
}

func (c *counters) add(o counters) {
	c.Connections += o.Connections
	c.Requests += o.Requests
	c.BytesIn += o.BytesIn
	c.BytesOut += o.BytesOut
	c.R1xx += o.R1xx
	c.R2xx += o.R2xx
	c.R3xx += o.R3xx
	c.R4xx += o.R4xx
	c.R5xx += o.R5xx
	c.Errors += o.Errors
}

// lessThan reports whether any counter of c is below o's: the worker that
// counted o is gone.
func (c counters) lessThan(o counters) bool {
	return c.Connections < o.Connections || c.Requests < o.Requests || c.BytesIn < o.BytesIn || c.BytesOut < o.BytesOut ||
		c.R1xx < o.R1xx || c.R2xx < o.R2xx || c.R3xx < o.R3xx || c.R4xx < o.R4xx || c.R5xx < o.R5xx || c.Errors < o.Errors
}

func proxyCounters(p haproxy.ProxyStat) counters {
	return counters{Connections: p.TotalSessions, Requests: p.Requests, BytesIn: p.BytesIn, BytesOut: p.BytesOut,
		R1xx: p.HRsp1xx, R2xx: p.HRsp2xx, R3xx: p.HRsp3xx, R4xx: p.HRsp4xx, R5xx: p.HRsp5xx, Errors: p.Errors}
}

// statEntry is one listener's counters: Base sums what earlier HAProxy
// workers counted, Last is the newest reading of the current worker.
type statEntry struct {
	LoadBalancerID string   `json:"load_balancer_id"`
	Base           counters `json:"base"`
	Last           counters `json:"last"`
}

// statsStore keeps per-listener counters monotonic across HAProxy reloads
// (each new worker starts from zero) and agent restarts (kept in a file in
// the state directory): the stats of a load balancer do not drop when any
// load balancer on the node reloads.
type statsStore struct {
	mu      sync.Mutex
	path    string
	Worker  string                `json:"worker"` // pid of the worker last read
	Entries map[string]*statEntry `json:"entries"`
}

// loadStats reads the counters saved at path; a missing or unreadable file
// starts from nothing.
func loadStats(path string) *statsStore {
	s := &statsStore{path: path, Entries: map[string]*statEntry{}}
	if b, err := os.ReadFile(path); err == nil {
		_ = json.Unmarshal(b, s)
		if s.Entries == nil {
			s.Entries = map[string]*statEntry{}
		}
	}
	return s
}

// observe folds a reading of the frontends of worker (lbOf maps listener
// ids to load balancers; frontends not in it are ignored, entries of load
// balancers no longer in it dropped) and returns the cumulative counters per
// load balancer.
func (s *statsStore) observe(worker string, proxies []haproxy.ProxyStat, lbOf map[string]string) map[string]counters {
	s.mu.Lock()
	defer s.mu.Unlock()
	if worker != "" && s.Worker != "" && worker != s.Worker {
		// A new worker (a reload, or HAProxy restarted): what the old one
		// counted moves into the base.
		for _, e := range s.Entries {
			e.Base.add(e.Last)
			e.Last = counters{}
		}
	}
	if worker != "" {
		s.Worker = worker
	}
	for _, p := range proxies {
		lbID, ok := lbOf[p.Name]
		if !ok || p.Type != "frontend" {
			continue
		}
		cur := proxyCounters(p)
		e := s.Entries[p.Name]
		if e == nil {
			e = &statEntry{}
			s.Entries[p.Name] = e
		}
		e.LoadBalancerID = lbID
		if cur.lessThan(e.Last) {
			e.Base.add(e.Last) // a reset the worker id did not show
		}
		e.Last = cur
	}
	live := map[string]bool{}
	for _, lb := range lbOf {
		live[lb] = true
	}
	out := map[string]counters{}
	for name, e := range s.Entries {
		if !live[e.LoadBalancerID] {
			delete(s.Entries, name)
			continue
		}
		c := out[e.LoadBalancerID]
		c.add(e.Base)
		c.add(e.Last)
		out[e.LoadBalancerID] = c
	}
	if b, err := json.Marshal(s); err == nil {
		_ = atomicfile.Write(s.path, b, 0o600)
	}
	return out
}

// workerPid is the pid of the HAProxy worker the runtime socket talks to.
func (a *Agent) workerPid(ctx context.Context) (string, error) {
	out, err := a.runtime.Command(ctx, "show info")
	if err != nil {
		return "", err
	}
	for line := range strings.SplitSeq(out, "\n") {
		if v, ok := strings.CutPrefix(line, "Pid:"); ok {
			return strings.TrimSpace(v), nil
		}
	}
	return "", errors.New("no Pid in show info")
}

// listenerLBs maps the listener ids (frontend names) of cfg to their load
// balancers.
func listenerLBs(cfg *haproxy.Config) map[string]string {
	lbOf := map[string]string{}
	if cfg == nil {
		return lbOf
	}
	for _, lb := range cfg.LoadBalancers {
		for _, l := range lb.Listeners {
			lbOf[l.ID] = lb.ID
		}
	}
	return lbOf
}

// sampleStats reads the current worker's counters into the store; called
// before a reload so the old worker's final counts are kept.
func (a *Agent) sampleStats(ctx context.Context, live *haproxy.Config) {
	worker, err := a.workerPid(ctx)
	if err != nil {
		return
	}
	proxies, _, err := a.runtime.Stats(ctx)
	if err != nil {
		return
	}
	a.stats.observe(worker, proxies, listenerLBs(live))
}

// lbStats is the report's per-load-balancer counters: cumulative across
// reloads and restarts, plus the current sessions of the running worker.
func (a *Agent) lbStats(ctx context.Context, proxies []haproxy.ProxyStat, live *haproxy.Config) []openapi.LoadBalancerStats {
	worker, _ := a.workerPid(ctx)
	lbOf := listenerLBs(live)
	totals := a.stats.observe(worker, proxies, lbOf)
	current := map[string]int64{}
	for _, p := range proxies {
		if lbID, ok := lbOf[p.Name]; ok && p.Type == "frontend" {
			current[lbID] += p.CurrentSessions
		}
	}
	ids := make([]string, 0, len(totals))
	for id := range totals {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	out := make([]openapi.LoadBalancerStats, 0, len(ids))
	for _, id := range ids {
		c, cur := totals[id], current[id]
		out = append(out, openapi.LoadBalancerStats{LoadBalancerId: id, ConnectionsCurrent: &cur, ConnectionsTotal: &c.Connections,
			RequestsTotal: &c.Requests, BytesIn: &c.BytesIn, BytesOut: &c.BytesOut, Responses1xx: &c.R1xx, Responses2xx: &c.R2xx,
			Responses3xx: &c.R3xx, Responses4xx: &c.R4xx, Responses5xx: &c.R5xx, Errors: &c.Errors})
	}
	return out
}
