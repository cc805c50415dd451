package agent

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/fulcrumlb/fulcrum/dataplane/haproxy"
	"github.com/fulcrumlb/fulcrum/internal/atomicfile"
	"github.com/fulcrumlb/fulcrum/openapi"
)

// counters are the cumulative counters of one object (a listener's
// frontend, a pool's backend or a member's server).
type counters struct {
	Connections, Requests, BytesIn, BytesOut int64 `json:",omitempty"`
	R1xx, R2xx, R3xx, R4xx, R5xx, Errors     int64 `json:",omitempty"`
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

// reading is one object's row of `show stat` in the running worker:
// counters since the worker started and live values.
type reading struct {
	counters
	Current, Peak int64 // scur, smax
	RTime, TTime  int64 // rtime, ttime (backends and servers)
}

func proxyReading(p haproxy.ProxyStat) reading {
	return reading{counters: counters{Connections: p.TotalSessions, Requests: p.Requests, BytesIn: p.BytesIn, BytesOut: p.BytesOut,
		R1xx: p.HRsp1xx, R2xx: p.HRsp2xx, R3xx: p.HRsp3xx, R4xx: p.HRsp4xx, R5xx: p.HRsp5xx, Errors: p.Errors},
		Current: p.CurrentSessions, Peak: p.MaxSessions, RTime: p.RTime, TTime: p.TTime}
}

// serverReading reads a server row. HAProxy counts no requests for servers;
// in HTTP mode every request is a session (stream) of the server, so its
// sessions are its requests.
func serverReading(s haproxy.ServerStat, http bool) reading {
	r := reading{counters: counters{Connections: s.TotalSessions, BytesIn: s.BytesIn, BytesOut: s.BytesOut,
		R1xx: s.HRsp1xx, R2xx: s.HRsp2xx, R3xx: s.HRsp3xx, R4xx: s.HRsp4xx, R5xx: s.HRsp5xx, Errors: s.ConnectionErrors + s.ResponseErrors},
		Current: s.CurrentSessions, Peak: s.MaxSessions, RTime: s.RTime, TTime: s.TTime}
	if http {
		r.Requests = s.TotalSessions
	}
	return r
}

// Kinds of statEntry.
const (
	kindListener = "" // files written before pools and members were counted hold listeners only
	kindPool     = "pool"
	kindMember   = "member"
)

// statObject is what a `show stat` row counts for: a listener (frontend),
// pool (backend) or member (server) of a load balancer.
type statObject struct {
	Kind, LoadBalancerID, PoolID string
}

// statEntry is one object's counters: Base sums what earlier HAProxy
// workers counted, Last is the newest reading of the current worker.
type statEntry struct {
	LoadBalancerID string   `json:"load_balancer_id"`
	Kind           string   `json:"kind,omitempty"`
	PoolID         string   `json:"pool_id,omitempty"` // members
	Base           counters `json:"base"`
	Last           counters `json:"last"`
	// Peak is the most sessions at once any worker showed.
	Peak int64 `json:"peak,omitempty"`
	// RTime and TTime are the newest averages of a worker that had served
	// the object (a new worker's zeros do not replace them).
	RTime int64 `json:"rtime,omitempty"`
	TTime int64 `json:"ttime,omitempty"`
	// Current is the running worker's sessions (not kept).
	Current int64 `json:"-"`
}

// total is everything counted so far.
func (e *statEntry) total() counters {
	c := e.Base
	c.add(e.Last)
	return c
}

// statsStore keeps per-object counters monotonic across HAProxy reloads
// (each new worker starts from zero) and agent restarts (kept in a file in
// the state directory): the stats of a load balancer do not drop when any
// load balancer on the node reloads. Each object's counters are its own: a
// reset of one (a member re-added) does not touch the others.
type statsStore struct {
	mu      sync.Mutex
	path    string
	Worker  string                `json:"worker"` // pid of the worker last read
	Entries map[string]*statEntry `json:"entries"`

	// sent is each load balancer's stats as the API last took them, and
	// fullAt when it last took all of them: reports carry only what changed.
	sent   map[string][]byte
	fullAt time.Time
	// pending: readings newer than the file; savedAt: when it was written.
	pending bool
	savedAt time.Time
	// async (while Run runs): saveLocked marks the file due and wakes
	// writeLoop, which writes it off the caller's path (statsWriter).
	async bool
	due   bool
	kick  chan struct{}
	// writeMu orders the writes of the file (the newest copy is written
	// last).
	writeMu sync.Mutex
}

// statsFile is what stats.json holds.
type statsFile struct {
	Worker  string               `json:"worker"`
	Entries map[string]statEntry `json:"entries"`
}

// loadStats reads the counters saved at path; a missing or unreadable file
// starts from nothing.
func loadStats(path string) *statsStore {
	s := &statsStore{path: path, Entries: map[string]*statEntry{}, kick: make(chan struct{}, 1)}
	if b, err := os.ReadFile(path); err == nil {
		_ = json.Unmarshal(b, s)
		if s.Entries == nil {
			s.Entries = map[string]*statEntry{}
		}
	}
	return s
}

// statObjects maps the listener, pool and member ids of cfg (frontend,
// backend and server names) to what they are.
func statObjects(cfg *haproxy.Config) map[string]statObject {
	objs := map[string]statObject{}
	if cfg == nil {
		return objs
	}
	for _, lb := range cfg.LoadBalancers {
		for _, l := range lb.Listeners {
			objs[l.ID] = statObject{Kind: kindListener, LoadBalancerID: lb.ID}
		}
		for _, p := range lb.Pools {
			objs[p.ID] = statObject{Kind: kindPool, LoadBalancerID: lb.ID}
			for _, m := range p.Members {
				objs[m.ID] = statObject{Kind: kindMember, LoadBalancerID: lb.ID, PoolID: p.ID}
			}
		}
	}
	return objs
}

// readings picks the rows of `show stat` that count for objs.
func readings(proxies []haproxy.ProxyStat, servers []haproxy.ServerStat, objs map[string]statObject) map[string]reading {
	out := map[string]reading{}
	httpPool := map[string]bool{}
	for _, p := range proxies {
		o, ok := objs[p.Name]
		if !ok || (o.Kind == kindListener) != (p.Type == "frontend") || (o.Kind == kindPool) != (p.Type == "backend") {
			continue
		}
		out[p.Name] = proxyReading(p)
		httpPool[p.Name] = p.Type == "backend" && p.Mode == "http"
	}
	for _, s := range servers {
		if o, ok := objs[s.Server]; ok && o.Kind == kindMember && o.PoolID == s.Backend {
			out[s.Server] = serverReading(s, httpPool[s.Backend])
		}
	}
	return out
}

// observe folds the readings of worker into the counters (objs says what
// the objects served are; entries of objects no longer served are dropped)
// and returns a copy of every entry by object id.
func (s *statsStore) observe(worker string, read map[string]reading, objs map[string]statObject) map[string]statEntry {
	s.mu.Lock()
	defer s.mu.Unlock()
	dirty := false // what a restart of HAProxy with the agent would lose: saved now
	moved := false // newer readings only: saved within statsSaveEvery
	if worker != "" && s.Worker != "" && worker != s.Worker {
		// A new worker (a reload, or HAProxy restarted): what the old one
		// counted moves into the base.
		for _, e := range s.Entries {
			e.Base.add(e.Last)
			e.Last = counters{}
		}
		dirty = true
	}
	if worker != "" && worker != s.Worker {
		s.Worker = worker
		dirty = true
	}
	for id, e := range s.Entries {
		o, ok := objs[id]
		if !ok || o.Kind != e.Kind || o.LoadBalancerID != e.LoadBalancerID || o.PoolID != e.PoolID {
			delete(s.Entries, id)
			dirty = true
			continue
		}
		e.Current = 0
	}
	for id, r := range read {
		o := objs[id]
		e := s.Entries[id]
		if e == nil {
			e = &statEntry{LoadBalancerID: o.LoadBalancerID, Kind: o.Kind, PoolID: o.PoolID}
			s.Entries[id] = e
			dirty = true
		}
		reset, m := e.fold(r)
		dirty = dirty || reset
		moved = moved || m
	}
	s.pending = s.pending || moved
	if dirty || (s.pending && time.Since(s.savedAt) >= statsSaveEvery) {
		s.saveLocked()
	}
	out := make(map[string]statEntry, len(s.Entries))
	for id, e := range s.Entries {
		out[id] = *e
	}
	return out
}

// statsSaveEvery bounds how often newer readings of the same worker are
// written to stats.json (a marshal and fsync of every object's counters: at
// 1,000 load balancers of 10 members, hundreds of KB). They matter only when
// HAProxy and the agent both stop before the next write — the worker still
// running counts them otherwise — and the agent writes them when it stops
// (flush). A new worker, an object added, removed or reset is written at once.
const statsSaveEvery = 30 * time.Second

// statsWriteGap is the least time between two writes of stats.json by
// writeLoop: what changes meanwhile is one write of the newest counters.
const statsWriteGap = 250 * time.Millisecond

// saveLocked has stats.json written; s.mu held. While Run runs (async) the
// write is writeLoop's: the caller — an apply right after its reload, with
// the apply's lock held, or a report — only marks the file due. A write is
// a marshal of every object's counters and an fsync (hundreds of KB at
// 1,000 load balancers of 10 members): on the apply's path it delayed the
// apply's end and any apply or sample waiting for it by the disk's latency,
// hundreds of ms when other work fills the disk. The writes stay crash-safe
// (atomicfile: the old file or the new one) and ordered, the newest counters
// win, and one copy of them at most waits; a crash before the write loses
// the counts since the last one, which is what statsSaveEvery accepts for
// newer readings already (a new worker's move of the counts into the base
// is written within statsWriteGap instead of at once). Without Run (tests
// calling Apply) it writes before it returns, releasing s.mu meanwhile (its
// callers read the entries again after it).
func (s *statsStore) saveLocked() {
	if s.async {
		s.due = true
		select {
		case s.kick <- struct{}{}:
		default: // a write is on its way; it takes the newest counters
		}
		return
	}
	s.due = true
	s.mu.Unlock()
	s.write()
	s.mu.Lock()
}

// write writes stats.json when due: the counters are copied under s.mu,
// marshalled and written outside it.
func (s *statsStore) write() {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	s.mu.Lock()
	if !s.due {
		s.mu.Unlock()
		return
	}
	f := statsFile{Worker: s.Worker, Entries: make(map[string]statEntry, len(s.Entries))}
	for id, e := range s.Entries {
		f.Entries[id] = *e
	}
	s.due, s.pending, s.savedAt = false, false, time.Now()
	s.mu.Unlock()
	b, err := json.Marshal(f)
	if err == nil {
		err = atomicfile.Write(s.path, b, 0o600)
	}
	if err != nil {
		s.mu.Lock()
		s.pending, s.savedAt = true, time.Time{} // the next reading writes again
		s.mu.Unlock()
	}
}

// writeLoop writes stats.json whenever saveLocked marks it due, at most
// once per statsWriteGap, until ctx ends (Run's leave then writes what is
// left: flushNow).
func (s *statsStore) writeLoop(ctx context.Context) {
	s.mu.Lock()
	s.async = true
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.async = false
		s.mu.Unlock()
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.kick:
		}
		s.write()
		select {
		case <-ctx.Done():
			return
		case <-time.After(statsWriteGap):
		}
	}
}

// flush has what is not written yet written (by writeLoop while Run runs).
func (s *statsStore) flush() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pending {
		s.saveLocked()
	}
}

// flushNow writes what is not written yet before it returns (after any
// write on its way).
func (s *statsStore) flushNow() {
	s.mu.Lock()
	if s.pending {
		s.due = true
	}
	s.mu.Unlock()
	s.write()
}

// observeSome folds readings of some objects (objs: those of a few load
// balancers) into the counters of the same worker, leaving every other
// entry as it is, and returns copies of the entries of objs.
func (s *statsStore) observeSome(worker string, read map[string]reading, objs map[string]statObject) map[string]statEntry {
	s.mu.Lock()
	defer s.mu.Unlock()
	moved := false
	for id, r := range read {
		o := objs[id]
		e := s.Entries[id]
		if e == nil || e.Kind != o.Kind || e.LoadBalancerID != o.LoadBalancerID || e.PoolID != o.PoolID {
			e = &statEntry{LoadBalancerID: o.LoadBalancerID, Kind: o.Kind, PoolID: o.PoolID}
			s.Entries[id] = e
		}
		_, m := e.fold(r)
		moved = moved || m
	}
	s.pending = s.pending || moved
	if s.pending && time.Since(s.savedAt) >= statsSaveEvery {
		s.saveLocked()
	}
	return s.entriesLocked(objs)
}

// sameWorker reports whether worker is the one the counters were last read from.
func (s *statsStore) sameWorker(worker string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return worker != "" && worker == s.Worker
}

// fullDue reports whether the next unsent returns every load balancer.
func (s *statsStore) fullDue(now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return now.Sub(s.fullAt) >= fullStatsEvery
}

// unsentOf keeps those of some load balancers' stats that changed since the
// API last took them; sent marks them taken.
func (s *statsStore) unsentOf(some []openapi.LoadBalancerStats) (out []openapi.LoadBalancerStats, sent func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out, enc := s.changedLocked(some, false)
	return out, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.sent == nil {
			return
		}
		for id, b := range enc {
			s.sent[id] = b
		}
	}
}

// workerPid is the pid of the HAProxy worker the runtime socket talks to.
func (a *Agent) workerPid(ctx context.Context) (string, error) {
	w, err := a.workerInfo(ctx)
	return w.pid, err
}

// worker is what `show info` says of the running worker: its pid, the
// connections it accepted since it started (CumConns: clients' and every
// CLI exchange, that one included) and the clients' connections open now
// (CurrConns: CLI exchanges are not counted there); -1 when not shown.
type worker struct {
	pid                 string
	cumConns, currConns int64
}

// workerInfo reads the running worker's `show info`.
func (a *Agent) workerInfo(ctx context.Context) (worker, error) {
	w := worker{cumConns: -1, currConns: -1}
	out, err := a.runtime.Command(ctx, "show info")
	if err != nil {
		return w, err
	}
	for line := range strings.SplitSeq(out, "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		switch k {
		case "Pid":
			w.pid = v
		case "CumConns":
			if n, err := strconv.ParseInt(v, 10, 64); err == nil {
				w.cumConns = n
			}
		case "CurrConns":
			if n, err := strconv.ParseInt(v, 10, 64); err == nil {
				w.currConns = n
			}
		}
	}
	if w.pid == "" {
		return w, errors.New("no Pid in show info")
	}
	return w, nil
}

// quietMark is a worker as `show info` showed it when a sample of its
// counters began, with no client connection open, and the agent's own CLI
// exchanges (a.runtime.Exchanges) right after, none in flight: while the
// worker accepts no connection but the agent's exchanges and holds none
// open, its counters stay as that sample read them (unmovedSince).
type quietMark struct {
	worker
	answered, failed int64
}

// markQuiet is the mark of w, just read, when it can serve as one.
func (a *Agent) markQuiet(w worker) *quietMark {
	e := a.runtime.Exchanges
	if e == nil || w.currConns != 0 || w.cumConns < 0 {
		return nil
	}
	inFlight, answered, failed := e.Counts()
	if inFlight != 0 {
		return nil // one of them may have been accepted before w was read, or after
	}
	return &quietMark{worker: w, answered: answered, failed: failed}
}

// unmovedSince reports whether the worker of m has counted nothing since
// m: it still runs, holds no client connection open, and every connection
// it accepted since is one of the agent's CLI exchanges answered since m
// (plus the `show info` asking). A client's connection, or an exchange of
// anyone else or one the agent still has in flight or saw fail, makes the
// count of accepted connections differ and the answer false: it errs only
// towards reading again. (Counters move only on connections: a client's
// request, bytes or error come on a connection open at m, which m
// excludes, or accepted since, which the count shows.)
func (a *Agent) unmovedSince(ctx context.Context, m *quietMark) bool {
	e := a.runtime.Exchanges
	if m == nil || e == nil {
		return false
	}
	inFlight, answered, failed := e.Counts()
	if inFlight != 0 || failed != m.failed {
		return false
	}
	now, err := a.workerInfo(ctx)
	if err != nil || now.pid != m.pid || now.currConns != 0 || now.cumConns < 0 {
		return false
	}
	return now.cumConns-m.cumConns == answered-m.answered+1
}

// sampleStats reads the running worker's counters into the store before a
// reload replaces the worker, so that its final counts are kept. It reads
// what moved only: all traffic enters through a frontend, so it reads the
// frontends' rows (`show stat -1 1 -1`, 248 KB at 1,000 load balancers)
// and then, whole (frontends, backends, servers: `show stat <name> -1 -1`),
// only the load balancers whose frontends show sessions, or counts other
// than the store holds for them (movedLBs). The others' counters are as
// the store holds them — zero when HAProxy's worker is not the one the
// store last read (a reload or restart the agent did not make, since): a
// frontend without counts in a new worker carried no traffic in it. Beyond
// maxScopedPools such load balancers it reads everything (3.3 MB at 1,000
// load balancers). It returns how many load balancers it read (-1: all).
func (a *Agent) sampleStats(ctx context.Context, live *haproxy.Config) int {
	n, _ := a.sampleStatsMarked(ctx, live)
	return n
}

// sampleStatsMarked is sampleStats, and the worker's quiet mark when its
// sample began (nil when it cannot tell, or the sample failed).
func (a *Agent) sampleStatsMarked(ctx context.Context, live *haproxy.Config) (int, *quietMark) {
	if live == nil {
		return 0, nil
	}
	w, err := a.workerInfo(ctx)
	if err != nil {
		return 0, nil
	}
	mark := a.markQuiet(w)
	fronts, err := a.runtime.FrontendStats(ctx)
	if err != nil {
		return 0, nil
	}
	moved := a.stats.movedLBs(w.pid, fronts, live)
	if len(moved) > maxScopedPools {
		proxies, servers, err := a.runtime.Stats(ctx)
		if err != nil {
			return 0, nil
		}
		objs := statObjects(live)
		a.stats.sample(w.pid, readings(proxies, servers, objs), objs, false) // written after the reload (reloadTo)
		return -1, mark
	}
	proxies, servers, err := a.statsOfLBs(ctx, live, moved)
	if err != nil {
		return 0, nil
	}
	objs := statObjects(subConfig(live, moved))
	a.stats.sample(w.pid, readings(proxies, servers, objs), objs, false) // written after the reload (reloadTo)
	return len(moved), mark
}

// earlySample is a sample of the running worker's counters taken while
// `haproxy -c` checks the candidate of an apply that reloads (sampleEarly).
type earlySample struct {
	live    *haproxy.Config // what the worker sampled serves
	started bool            // by the apply's first check (startEarlySample)
	done    chan struct{}
	mark    *quietMark // set before done closes
}

// sampleEarly has the counters of the worker serving live read while the
// apply's candidate is checked: `haproxy -c` is one process busy on one
// core for 100–500 ms at 1,000 load balancers, and the sample (`show
// info`, the frontends' rows and those of the load balancers that moved,
// 15–20 ms) was the largest part of the agent's own work between the check
// and the reload. It starts with the check (startEarlySample), not before:
// the render of the candidate is on the path too. Before the reload,
// sampleBeforeReload reads again only when the worker may have counted
// anything since.
func (a *Agent) sampleEarly(live *haproxy.Config) *earlySample {
	return &earlySample{live: live, done: make(chan struct{})}
}

// startEarlySample starts the apply's early sample when it has not
// started yet: its first `haproxy -c` is about to run. a.mu held.
func (a *Agent) startEarlySample(ctx context.Context) {
	s := a.early
	if s == nil || s.started {
		return
	}
	s.started = true
	go func() {
		defer close(s.done)
		_, s.mark = a.sampleStatsMarked(ctx, s.live)
	}()
}

// sampleBeforeReload has the old worker's final counts in the store before
// a reload replaces it: the apply's early sample when the worker has
// counted nothing since it began (unmovedSince: one `show info`), else a
// sample now. a.mu held.
func (a *Agent) sampleBeforeReload(ctx context.Context) {
	if s := a.early; s != nil && s.started {
		a.early = nil
		<-s.done
		if s.live == a.live && a.unmovedSince(ctx, s.mark) {
			return
		}
	}
	a.early = nil
	a.sampleStats(ctx, a.live)
}

// endEarlySample waits for the apply's early sample, when one is still
// held (the apply did not reload). a.mu held.
func (a *Agent) endEarlySample() {
	if s := a.early; s != nil && s.started {
		<-s.done
	}
	a.early = nil
}

// subConfig is the load balancers lbs of cfg.
func subConfig(cfg *haproxy.Config, lbs map[string]bool) *haproxy.Config {
	sub := &haproxy.Config{Global: cfg.Global}
	for i := range cfg.LoadBalancers {
		if lbs[cfg.LoadBalancers[i].ID] {
			sub.LoadBalancers = append(sub.LoadBalancers, cfg.LoadBalancers[i])
		}
	}
	return sub
}

// statsOfLBs reads the rows of the load balancers lbs of live whole: their
// frontends, backends and servers (`show stat <name> -1 -1` each).
func (a *Agent) statsOfLBs(ctx context.Context, live *haproxy.Config, lbs map[string]bool) ([]haproxy.ProxyStat, []haproxy.ServerStat, error) {
	var proxies []haproxy.ProxyStat
	var servers []haproxy.ServerStat
	for i := range live.LoadBalancers {
		lb := &live.LoadBalancers[i]
		if !lbs[lb.ID] {
			continue
		}
		names := make([]string, 0, len(lb.Listeners)+len(lb.Pools))
		for _, l := range lb.Listeners {
			names = append(names, l.ID)
		}
		for _, p := range lb.Pools {
			names = append(names, p.ID)
		}
		for _, n := range names {
			px, sv, err := a.runtime.StatsOf(ctx, n)
			if err != nil {
				var ce *haproxy.CommandError
				if errors.As(err, &ce) {
					continue // not in this worker (a pool no listener uses, say)
				}
				return nil, nil, err
			}
			proxies, servers = append(proxies, px...), append(servers, sv...)
		}
	}
	return proxies, servers, nil
}

// movedLBs are the load balancers of live whose frontends, in fronts (the
// frontends' rows of worker), show sessions now or counters other than the
// store holds for this worker (zero when it last read another): those whose
// counters may differ from the store's.
func (s *statsStore) movedLBs(worker string, fronts []haproxy.ProxyStat, live *haproxy.Config) map[string]bool {
	owner := make(map[string]string, len(live.LoadBalancers)) // listener id → LB id
	for i := range live.LoadBalancers {
		for _, l := range live.LoadBalancers[i].Listeners {
			owner[l.ID] = live.LoadBalancers[i].ID
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	same := worker != "" && worker == s.Worker
	out := map[string]bool{}
	for _, p := range fronts {
		lb, ok := owner[p.Name]
		if !ok || p.Type != "frontend" {
			continue
		}
		r := proxyReading(p)
		var held counters
		if e := s.Entries[p.Name]; same && e != nil && e.Kind == kindListener && e.LoadBalancerID == lb {
			held = e.Last
		}
		if r.Current > 0 || r.counters != held {
			out[lb] = true
		}
	}
	return out
}

// sample folds readings of worker of some objects (objs: those of the load
// balancers read) into the counters, leaving every other entry as it is;
// when worker is not the one last read, every entry's counts first move
// into its base (the new worker counts from zero). Unlike observe it
// neither drops entries of objects no longer served nor copies the
// entries; what changed is written now when save, else by the next flush
// (a reload's sample: reloadTo flushes after the reload). It returns
// copies of the entries of objs.
func (s *statsStore) sample(worker string, read map[string]reading, objs map[string]statObject, save bool) map[string]statEntry {
	s.mu.Lock()
	defer s.mu.Unlock()
	dirty, moved := false, false
	if worker != "" && s.Worker != "" && worker != s.Worker {
		for _, e := range s.Entries {
			e.Base.add(e.Last)
			e.Last = counters{}
			e.Current = 0
		}
		dirty = true
	}
	if worker != "" && worker != s.Worker {
		s.Worker = worker
		dirty = true
	}
	for id, r := range read {
		o := objs[id]
		e := s.Entries[id]
		if e == nil || e.Kind != o.Kind || e.LoadBalancerID != o.LoadBalancerID || e.PoolID != o.PoolID {
			e = &statEntry{LoadBalancerID: o.LoadBalancerID, Kind: o.Kind, PoolID: o.PoolID}
			s.Entries[id] = e
			dirty = true
		}
		reset, m := e.fold(r)
		dirty, moved = dirty || reset, moved || m
	}
	s.pending = s.pending || dirty || moved
	if save && (dirty || (s.pending && time.Since(s.savedAt) >= statsSaveEvery)) {
		s.saveLocked()
	}
	return s.entriesLocked(objs)
}

// lbStats is the report's counters per load balancer, listener, pool and
// member: cumulative across reloads and restarts, plus the running worker's
// sessions and response times.
func (a *Agent) lbStats(ctx context.Context, proxies []haproxy.ProxyStat, servers []haproxy.ServerStat, live *haproxy.Config) []openapi.LoadBalancerStats {
	worker, _ := a.workerPid(ctx)
	objs := statObjects(live)
	return buildStats(a.stats.observe(worker, readings(proxies, servers, objs), objs), live)
}

// nz is v, or nil for 0: zeros are left out of reports (the API reads a
// missing counter as 0), which keeps reports of idle objects small.
func nz(v int64) *int64 {
	if v == 0 {
		return nil
	}
	return &v
}

// fill sets f from an object's counters, sessions, peak and times.
func fill(f openapi.StatsFields, c counters, current, peak, rtime, ttime int64) {
	*f.ConnectionsCurrent, *f.ConnectionsPeak, *f.ConnectionsTotal, *f.RequestsTotal = nz(current), nz(peak), nz(c.Connections), nz(c.Requests)
	*f.BytesIn, *f.BytesOut = nz(c.BytesIn), nz(c.BytesOut)
	*f.Responses1xx, *f.Responses2xx, *f.Responses3xx, *f.Responses4xx, *f.Responses5xx = nz(c.R1xx), nz(c.R2xx), nz(c.R3xx), nz(c.R4xx), nz(c.R5xx)
	*f.Errors = nz(c.Errors)
	*f.ResponseTimeMs, *f.TotalTimeMs = nz(rtime), nz(ttime)
}

// poolTimes averages the response and total times of pools, weighted by
// their sessions (requests for HTTP).
func poolTimes(entries map[string]statEntry, pools []string) (rtime, ttime int64) {
	var w, r, t int64
	for _, id := range pools {
		e, ok := entries[id]
		if !ok {
			continue
		}
		n := e.total().Connections
		w, r, t = w+n, r+n*e.RTime, t+n*e.TTime
	}
	if w == 0 {
		return 0, 0
	}
	return r / w, t / w
}

// buildStats turns the entries into the report's stats of the load
// balancers of cfg that have any: a load balancer's counters are the sums
// of its listeners' (its peak too: an upper bound when they peaked at
// different times), and its and a listener's times those of the pools they
// send to.
func buildStats(entries map[string]statEntry, cfg *haproxy.Config) []openapi.LoadBalancerStats {
	if cfg == nil {
		return []openapi.LoadBalancerStats{}
	}
	out := []openapi.LoadBalancerStats{}
	for _, lb := range cfg.LoadBalancers {
		st := openapi.LoadBalancerStats{LoadBalancerId: lb.ID}
		var total counters
		var current, peak int64
		found := false
		for _, l := range lb.Listeners {
			e, ok := entries[l.ID]
			if !ok {
				continue
			}
			found = true
			pools := []string{}
			if l.DefaultPoolID != "" {
				pools = append(pools, l.DefaultPoolID)
			}
			for _, r := range l.Rules {
				for _, p := range r.Action.Pools {
					pools = append(pools, p.PoolID)
				}
			}
			sort.Strings(pools)
			rtime, ttime := poolTimes(entries, slices.Compact(pools))
			ls := openapi.ListenerStats{Id: l.ID}
			fill(ls.Fields(), e.total(), e.Current, e.Peak, rtime, ttime)
			total.add(e.total())
			current += e.Current
			peak += e.Peak
			if st.Listeners == nil {
				st.Listeners = &[]openapi.ListenerStats{}
			}
			*st.Listeners = append(*st.Listeners, ls)
		}
		poolIDs := make([]string, 0, len(lb.Pools))
		for _, p := range lb.Pools {
			poolIDs = append(poolIDs, p.ID)
			e, ok := entries[p.ID]
			if !ok {
				continue
			}
			found = true
			ps := openapi.PoolStats{Id: p.ID}
			fill(ps.Fields(), e.total(), e.Current, e.Peak, e.RTime, e.TTime)
			for _, m := range p.Members {
				me, ok := entries[m.ID]
				if !ok {
					continue
				}
				ms := openapi.MemberStats{Id: m.ID}
				fill(ms.Fields(), me.total(), me.Current, me.Peak, me.RTime, me.TTime)
				if ps.Members == nil {
					ps.Members = &[]openapi.MemberStats{}
				}
				*ps.Members = append(*ps.Members, ms)
			}
			if st.Pools == nil {
				st.Pools = &[]openapi.PoolStats{}
			}
			*st.Pools = append(*st.Pools, ps)
		}
		if !found {
			continue
		}
		if st.Listeners != nil {
			sort.Slice(*st.Listeners, func(i, j int) bool { return (*st.Listeners)[i].Id < (*st.Listeners)[j].Id })
		}
		rtime, ttime := poolTimes(entries, poolIDs)
		fill(st.Fields(), total, current, peak, rtime, ttime)
		out = append(out, st)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].LoadBalancerId < out[j].LoadBalancerId })
	return out
}

// fullStatsEvery is how often a report carries every load balancer's stats,
// changed or not (the API may have lost some: a node deleted and registered
// again).
const fullStatsEvery = quietEvery

// changedLocked keeps those of list whose encoding differs from what the API
// last took (every one when every), with their encodings by load balancer.
func (s *statsStore) changedLocked(list []openapi.LoadBalancerStats, every bool) ([]openapi.LoadBalancerStats, map[string][]byte) {
	out := make([]openapi.LoadBalancerStats, 0, len(list))
	enc := map[string][]byte{}
	for _, st := range list {
		b, err := json.Marshal(st)
		if err == nil && !every && string(b) == string(s.sent[st.LoadBalancerId]) {
			continue
		}
		out = append(out, st)
		enc[st.LoadBalancerId] = b
	}
	return out, enc
}

// unsent keeps the stats of all that changed since the API last took them
// (all of them after fullStatsEvery, and after an agent restart); sent marks
// them taken, to be called when the API accepted the report.
func (s *statsStore) unsent(all []openapi.LoadBalancerStats, now time.Time) (out []openapi.LoadBalancerStats, sent func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	full := now.Sub(s.fullAt) >= fullStatsEvery
	out, enc := s.changedLocked(all, full)
	return out, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if full || s.sent == nil {
			s.sent = map[string][]byte{} // forgets load balancers no longer served
			s.fullAt = now
		}
		for id, b := range enc {
			s.sent[id] = b
		}
	}
}

// fold takes reading r into e: reset says r is below what e last read (a
// reset of this object the worker id did not show: what was counted moves
// into the base), moved that a counter, the peak or the timings changed.
func (e *statEntry) fold(r reading) (reset, moved bool) {
	if r.lessThan(e.Last) {
		e.Base.add(e.Last)
		reset = true
	}
	if r.counters != e.Last || r.Peak > e.Peak {
		moved = true
	}
	e.Last = r.counters
	e.Peak = max(e.Peak, r.Peak)
	e.Current = r.Current
	if r.Connections > 0 && (e.RTime != r.RTime || e.TTime != r.TTime) {
		e.RTime, e.TTime = r.RTime, r.TTime
		moved = true
	}
	return reset, moved
}

// entriesLocked copies the counters held for objs.
func (s *statsStore) entriesLocked(objs map[string]statObject) map[string]statEntry {
	out := make(map[string]statEntry, len(objs))
	for id := range objs {
		if e, ok := s.Entries[id]; ok {
			out[id] = *e
		}
	}
	return out
}
