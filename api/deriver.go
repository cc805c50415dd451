package api

import (
	"context"
	"hash/fnv"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fulcrumlb/fulcrum/api/store"
)

// Status derivation off the report path (issue 10). A report that changes
// something statuses depend on marks its node group dirty here; the
// replica's deriver derives each dirty group (store.DeriveGroup, which reads
// what every node of the group reported from the database, whichever replica
// took the report) at most every DeriveInterval. Member health, which agents
// send whole in every report, is kept here until derived and only when it
// differs from what that node sent last. Some statuses change with time
// alone (a node goes down, stays behind, fails past its grace): every
// DeriveSweepInterval the sweep reads each reporting group's node states in
// one query over the nodes (store.NodeGroupStates) and derives the groups
// whose digest moved or that may have a node behind; every
// sweepFullEvery-th sweep derives every reporting group anyway, and whole
// (store.DeriveGroupAll), a bound on what a missed mark could cost. Other
// derivations are incremental (store.DeriveGroup: the objects whose inputs
// may have changed, not the group's whole tree). An idle group whose nodes
// are current costs no derivation.

// Defaults of the deriver's Config fields.
const (
	DeriveIntervalDefault      = 100 * time.Millisecond
	DeriveSweepIntervalDefault = 2 * time.Second
	PurgeIntervalDefault       = 1 * time.Second
)

// sweepFullEvery is how many sweeps apart every reporting group is derived
// whatever its node states (at the default interval, every 30 s).
const sweepFullEvery = 15

// deriveLockTimeout is how long a derivation waits for a row a write holds
// before it gives up (and retries): the write goes first.
const deriveLockTimeout = 200 * time.Millisecond

// deriveTimeout bounds one group's derivation.
const deriveTimeout = 10 * time.Second

// deriver batches status derivation per node group.
type deriver struct {
	st       *store.Store
	log      *slog.Logger
	interval time.Duration
	sweep    time.Duration
	// wake has room for one signal: some group became dirty.
	wake chan struct{}

	mu sync.Mutex
	// dirty maps the groups to derive to the member health reported since
	// their last derivation (member id → status; the latest report wins).
	dirty map[string]map[string]string
	// full holds the dirty groups to derive whole (DeriveGroupAll): the
	// sweep's every sweepFullEvery-th; the others are derived
	// incrementally (DeriveGroup).
	full map[string]bool
	// members maps a node id to a digest of the member health it sent last.
	members map[string]memberDigest
	// busy says a batch of derivations is under way.
	busy bool

	// states is each group's node-state digest at the last sweep, and
	// sweeps counts the sweeps (run's goroutine only).
	states map[string]string
	sweeps int

	// derived counts the groups derived: the purge janitor looks again
	// when it moved (nodes acked, went down, ...).
	derived atomic.Int64
}

// memberDigest identifies a set of (member, status) pairs whatever their order.
type memberDigest struct {
	sum   uint64
	count int
}

func newDeriver(st *store.Store, log *slog.Logger, interval, sweep time.Duration) *deriver {
	return &deriver{st: st, log: log, interval: interval, sweep: sweep, wake: make(chan struct{}, 1),
		dirty: map[string]map[string]string{}, full: map[string]bool{}, members: map[string]memberDigest{}}
}

func digestMembers(members map[string]string) memberDigest {
	d := memberDigest{count: len(members)}
	for id, s := range members {
		h := fnv.New64a()
		h.Write([]byte(id))
		h.Write([]byte{0})
		h.Write([]byte(s))
		d.sum += h.Sum64()
	}
	return d
}

// reported takes a committed report of node nodeID of group groupID:
// changed says whether it changed something statuses depend on; members is
// the member health it carried (nil when none was sent). The group is marked
// dirty when changed, or when the node's member health differs from what it
// sent last.
func (d *deriver) reported(groupID, nodeID string, changed bool, members map[string]string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if members != nil {
		dg := digestMembers(members)
		if last, ok := d.members[nodeID]; !ok || last != dg {
			d.members[nodeID] = dg
			changed = true
		} else {
			members = nil
		}
	}
	if !changed {
		return
	}
	d.markLocked(groupID, members, true)
}

// mark marks groupID dirty with members (may be nil).
func (d *deriver) mark(groupID string, members map[string]string, newer bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.markLocked(groupID, members, newer)
}

// markFull marks groupID dirty, to be derived whole.
func (d *deriver) markFull(groupID string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.full[groupID] = true
	d.markLocked(groupID, nil, false)
}

// markLocked marks groupID dirty, merging members into what waits: newer
// ones override it, older ones (put back after a failed derivation) do not.
func (d *deriver) markLocked(groupID string, members map[string]string, newer bool) {
	pending, ok := d.dirty[groupID]
	if !ok {
		pending = map[string]string{}
		d.dirty[groupID] = pending
	}
	for id, s := range members {
		if _, has := pending[id]; newer || !has {
			pending[id] = s
		}
	}
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// deriveQuiet is how long the deriver, woken from idle, waits for marks to
// stop before it derives (at most its interval). A write fanned out to
// 1,000 nodes brings their acknowledgements over tens of milliseconds, in
// several batches, each marking the group: derived at the first, the group
// was derived twice per write (the first time before its nodes had all
// acknowledged, so for nothing), each derivation a transaction of about
// fifteen statements.
const deriveQuiet = 20 * time.Millisecond

// run derives dirty groups until ctx ends: when the marks of a group woken
// from idle stop for deriveQuiet (within interval), then at most every
// interval.
func (d *deriver) run(ctx context.Context) {
	sweep := time.NewTicker(d.sweep)
	defer sweep.Stop()
	pause := time.NewTimer(0)
	defer pause.Stop()
	quiet := time.NewTimer(time.Hour)
	quiet.Stop()
	defer quiet.Stop()
	for {
		d.mu.Lock()
		waited := len(d.dirty) > 0
		d.mu.Unlock()
		if waited {
			// Marked during the last pause (or a failed derivation):
			// they have waited long enough. A sweep due goes along.
			select {
			case <-d.wake:
			default:
			}
			select {
			case <-sweep.C:
				d.markAll(ctx)
			default:
			}
		} else {
			select {
			case <-ctx.Done():
				return
			case <-d.wake:
				if !d.gather(ctx, quiet) {
					return
				}
			case <-sweep.C:
				d.markAll(ctx)
			}
		}
		d.deriveDirty(ctx)
		pause.Reset(d.interval)
		select {
		case <-ctx.Done():
			return
		case <-pause.C:
		}
	}
}

// gather waits, after a mark woke the deriver from idle, until no group
// was marked for deriveQuiet, at most interval in all; false when ctx
// ended.
func (d *deriver) gather(ctx context.Context, quiet *time.Timer) bool {
	wait := min(deriveQuiet, d.interval)
	end := time.Now().Add(d.interval)
	for {
		left := time.Until(end)
		if left <= 0 {
			return true
		}
		quiet.Reset(min(wait, left))
		select {
		case <-ctx.Done():
			quiet.Stop()
			return false
		case <-d.wake:
			quiet.Stop()
		case <-quiet.C:
			return true
		}
	}
}

// markAll marks dirty the reporting groups whose node states moved since
// the last sweep or that may have a node behind, and every sweepFullEvery-th
// sweep every reporting group.
func (d *deriver) markAll(ctx context.Context) {
	lctx, cancel := context.WithTimeout(ctx, deriveTimeout)
	defer cancel()
	states, err := d.st.NodeGroupStates(lctx)
	if err != nil {
		if ctx.Err() == nil {
			d.log.Warn("list node groups to derive", "err", err)
		}
		return
	}
	full := d.sweeps%sweepFullEvery == 0
	d.sweeps++
	digests := make(map[string]string, len(states))
	for g, st := range states {
		digests[g] = st.Digest
		if full {
			d.markFull(g)
		} else if st.Lagging || d.states[g] != st.Digest {
			d.mark(g, nil, false)
		}
	}
	d.states = digests
}

// deriveDirty derives every group dirty now; one that fails stays dirty.
func (d *deriver) deriveDirty(ctx context.Context) {
	d.mu.Lock()
	dirty, full := d.dirty, d.full
	d.dirty, d.full = map[string]map[string]string{}, map[string]bool{}
	d.busy = true
	d.mu.Unlock()
	defer func() {
		d.mu.Lock()
		d.busy = false
		d.mu.Unlock()
	}()
	for groupID, members := range dirty {
		if ctx.Err() != nil {
			return
		}
		gctx, cancel := context.WithTimeout(ctx, deriveTimeout)
		derive := d.st.DeriveGroup
		if full[groupID] {
			derive = d.st.DeriveGroupAll
		}
		err := derive(gctx, groupID, members, deriveLockTimeout)
		cancel()
		if err == nil {
			d.derived.Add(1)
		} else {
			if ctx.Err() == nil {
				d.log.Warn("derive node group statuses; will retry", "node_group_id", groupID, "err", err)
			}
			d.mu.Lock()
			if full[groupID] {
				d.full[groupID] = true
			}
			d.markLocked(groupID, members, false)
			d.mu.Unlock()
		}
	}
}

// waitIdle waits until no group is left to derive and no derivation runs.
func (d *deriver) waitIdle(ctx context.Context) error {
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for {
		d.mu.Lock()
		idle := len(d.dirty) == 0 && !d.busy
		d.mu.Unlock()
		if idle {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// purgeIdleEvery is how often the purge janitor looks even when nothing
// told it to (a bound on what a missed signal costs).
const purgeIdleEvery = time.Minute

// purgeJanitor purges deleted objects every node of their group dropped
// (one replica at a time does it), looking at most every interval until ctx
// ends, and only when what can be purged may have changed: after a write
// (a wake-up of the notifier, whichever replica wrote), after a derivation
// (nodes acked, went down, ...; see deriver.derived), after a failed look,
// and every purgeIdleEvery. An idle API runs no purge query.
func (s *Server) purgeJanitor(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	var (
		mark    uint64
		derived int64
		last    time.Time
		again   = true // look at the next tick whatever the signals
	)
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		m, d := s.notify.Mark(), s.deriver.derived.Load()
		if !again && m == mark && d == derived && time.Since(last) < purgeIdleEvery {
			continue
		}
		mark, derived, last, again = m, d, time.Now(), false
		pctx, cancel := context.WithTimeout(ctx, deriveTimeout)
		err := s.st.PurgeDeleted(pctx)
		cancel()
		if err != nil && ctx.Err() == nil {
			again = true
			s.log.Warn("purge deleted objects", "err", err)
		}
	}
}
