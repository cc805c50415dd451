package agent

import (
	"context"
	"sync"
	"time"

	"github.com/fulcrumlb/fulcrum/dataplane/haproxy"
)

// A member leaves service when it is disabled or deleted (on its own, or with
// its pool or load balancer). HAProxy sends it no new requests from then on,
// but lets requests in flight finish for as long as they take — on the
// current worker, and on the workers a reload left behind until
// hard-stop-after. A drain bounds that by the pool's drain_timeout_ms: once
// it has passed, the member's remaining sessions are shut down on every
// worker that still has them. Each drain runs on its own timer, so the apply
// loop never waits for one; a member enabled again before its timeout keeps
// its connections.
//
// Members set to weight 0 are not drains in this sense: they keep the
// sessions that persistence sends them, without a deadline.

// serverKey names a server as HAProxy does: backend (pool id) and server
// (member id).
type serverKey struct{ backend, server string }

// drain is one member leaving service.
type drain struct {
	deadline time.Time
	// del: the current worker still has the server (deleted through the
	// runtime API, which only put it in maintenance); the drain deletes it
	// there once it has no connections left.
	del    bool
	cancel context.CancelFunc
}

// drains are the members leaving service. The zero value is ready.
type drains struct {
	mu sync.Mutex
	m  map[serverKey]*drain
}

// rendered is a server HAProxy runs for a config, with its pool.
type rendered struct {
	pool   haproxy.Pool
	member haproxy.Member
}

// renderedServers lists the servers of the enabled load balancers of lbs
// (disabled ones are not rendered at all).
func renderedServers(lbs []haproxy.LoadBalancer) map[serverKey]rendered {
	out := map[serverKey]rendered{}
	for _, lb := range lbs {
		if !lb.Enabled {
			continue
		}
		for _, p := range lb.Pools {
			for _, m := range p.Members {
				out[serverKey{p.ID, m.ID}] = rendered{pool: p, member: m}
			}
		}
	}
	return out
}

// drainPlan is what startDrains does for one server.
type drainPlan struct {
	key      serverKey
	timeout  time.Duration
	del      bool
	keepDate bool // an earlier drain of the server sets the deadline
}

// planDrains compares the config HAProxy ran (old) with the one it runs now
// (new, reached by a reload or through the runtime API) and returns the
// servers that left service, and those back in service.
func planDrains(old, new haproxy.Config, reloaded bool) (leaving []drainPlan, back []serverKey) {
	// Load balancers that did not change (by identity: the apply keeps
	// what runs) have no server leaving or coming back.
	was, is := changedLBs(old.LoadBalancers, new.LoadBalancers)
	before, after := renderedServers(was), renderedServers(is)
	for k, s := range after {
		if s.member.Enabled {
			back = append(back, k)
		}
	}
	for k, b := range before {
		a, present := after[k]
		if present && a.member.Enabled {
			continue
		}
		// Through the runtime API a deleted server stays in the worker
		// (in maintenance) until its drain deletes it.
		del := !reloaded && !present
		if !b.member.Enabled && !del {
			continue // was out of service already; an earlier drain carries on
		}
		p := b.pool
		if present {
			p = a.pool
		}
		leaving = append(leaving, drainPlan{key: k, timeout: time.Duration(max(p.DrainTimeoutMS, 0)) * time.Millisecond,
			del: del, keepDate: !b.member.Enabled})
	}
	return leaving, back
}

// changedLBs are the load balancers of old and of new but those that are
// in both, identical (haproxy.Identical), by id. Configurations list their
// load balancers sorted by id: one pass then, without the maps of 1,000
// load balancers a member change cost before; others go through a map.
func changedLBs(old, new []haproxy.LoadBalancer) (was, is []haproxy.LoadBalancer) {
	if !uniqueSortedByID(old) || !uniqueSortedByID(new) {
		prev := make(map[string]haproxy.LoadBalancer, len(old))
		for _, lb := range old {
			prev[lb.ID] = lb
		}
		same := map[string]bool{}
		for _, lb := range new {
			if o, ok := prev[lb.ID]; ok && haproxy.Identical(o, lb) {
				same[lb.ID] = true
			}
		}
		for _, lb := range old {
			if !same[lb.ID] {
				was = append(was, lb)
			}
		}
		for _, lb := range new {
			if !same[lb.ID] {
				is = append(is, lb)
			}
		}
		return was, is
	}
	i, j := 0, 0
	for i < len(old) || j < len(new) {
		switch {
		case j == len(new) || (i < len(old) && old[i].ID < new[j].ID):
			was = append(was, old[i])
			i++
		case i == len(old) || new[j].ID < old[i].ID:
			is = append(is, new[j])
			j++
		default:
			if !haproxy.Identical(old[i], new[j]) {
				was, is = append(was, old[i]), append(is, new[j])
			}
			i++
			j++
		}
	}
	return was, is
}

// uniqueSortedByID reports whether lbs are sorted by id, each id once.
func uniqueSortedByID(lbs []haproxy.LoadBalancer) bool {
	for i := 1; i < len(lbs); i++ {
		if lbs[i-1].ID >= lbs[i].ID {
			return false
		}
	}
	return true
}

// startDrains starts a drain for every member that left service between old
// and new, and stops those of members back in service. It does not block.
// Call it wherever the config HAProxy runs (a.live) is replaced, with the
// config before and after and whether the change was a reload; calling it
// again for the same change does nothing more.
func (a *Agent) startDrains(ctx context.Context, old *haproxy.Config, new haproxy.Config, reloaded bool) {
	if old == nil {
		return
	}
	leaving, back := planDrains(*old, new, reloaded)
	ds := &a.drains
	ds.mu.Lock()
	defer ds.mu.Unlock()
	if ds.m == nil {
		ds.m = map[serverKey]*drain{}
	}
	for _, k := range back {
		if d, ok := ds.m[k]; ok {
			d.cancel()
			delete(ds.m, k)
		}
	}
	now := time.Now()
	for _, pl := range leaving {
		deadline := now.Add(pl.timeout)
		if d, ok := ds.m[pl.key]; ok {
			if d.del || !pl.del {
				continue // already draining, and deleting where needed
			}
			if pl.keepDate {
				deadline = d.deadline
			}
			d.cancel()
		}
		dctx, cancel := context.WithCancel(ctx)
		d := &drain{deadline: deadline, del: pl.del, cancel: cancel}
		ds.m[pl.key] = d
		a.log.Info("member draining", "pool", pl.key.backend, "member", pl.key.server, "drain_timeout", pl.timeout, "delete", pl.del)
		go a.runDrain(dctx, pl.key, d)
	}
}

// runDrain waits for the drain's deadline (deleting the server from the
// current worker as soon as it has no connections, when it must go), then
// shuts its remaining sessions down everywhere.
func (a *Agent) runDrain(ctx context.Context, k serverKey, d *drain) {
	defer func() {
		d.cancel()
		a.drains.mu.Lock()
		if a.drains.m[k] == d {
			delete(a.drains.m, k)
		}
		a.drains.mu.Unlock()
	}()
	deleted := false
	if d.del {
		// DelServer retries while the server has connections.
		dctx, cancel := context.WithDeadline(ctx, d.deadline)
		err := a.runtime.DelServer(dctx, k.backend, k.server)
		cancel()
		deleted = err == nil || haproxy.IsNoSuchServer(err)
	}
	t := time.NewTimer(time.Until(d.deadline))
	defer t.Stop()
	select {
	case <-ctx.Done():
		return // back in service, or the agent stops
	case <-t.C:
	}
	a.shutdownSessions(ctx, k)
	if d.del && !deleted {
		dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if err := a.runtime.DelServer(dctx, k.backend, k.server); err != nil && !haproxy.IsNoSuchServer(err) && ctx.Err() == nil {
			a.log.Warn("delete drained member", "pool", k.backend, "member", k.server, "err", err)
		}
	}
}

// shutdownSessions closes the server's sessions on every worker, current
// and old, through the master CLI (old workers have no stats socket of their
// own any more).
func (a *Agent) shutdownSessions(ctx context.Context, k serverKey) {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	workers, err := a.proc.Workers(cctx)
	if err != nil {
		a.log.Warn("drain: list HAProxy workers; closing sessions on the current one only", "err", err)
		if err := a.runtime.ShutdownSessions(cctx, k.backend, k.server); err != nil && !haproxy.IsNoSuchServer(err) {
			a.log.Warn("drain: shut down sessions", "pool", k.backend, "member", k.server, "err", err)
		}
		return
	}
	for _, w := range workers {
		rt := haproxy.Runtime{Socket: a.proc.MasterSocket(), Worker: w.PID}
		if err := rt.ShutdownSessions(cctx, k.backend, k.server); err != nil && !haproxy.IsNoSuchServer(err) {
			a.log.Warn("drain: shut down sessions", "pool", k.backend, "member", k.server, "worker", w.PID, "err", err)
		}
	}
	a.log.Info("member drained: remaining sessions closed", "pool", k.backend, "member", k.server, "workers", len(workers))
}
