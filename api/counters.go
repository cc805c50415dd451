package api

import (
	clist "container/list"
	"context"
	"hash/maphash"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/metric"

	"github.com/fulcrumlb/fulcrum/api/store"
)

// Counters off the answer path (issue 10). A report's counters (the
// cumulative readings of a node's load balancers, each sent when it changed)
// are not written with its batch: the replica keeps the newest reading of
// each (node, load balancer) in memory and writes those it holds about every
// counterFlush in one set-based statement (store.StoreCounters), skipping
// those unchanged (here by a hash of the reading last written, and in the
// statement by comparing with the row). Stats read from the database (GET …/stats) lag the
// reports by at most about counterFlush (plus the flush itself). The memory
// is bounded: over counterMergeMaxBytes the oldest readings are dropped
// (counted in fulcrum_api_node_counters_dropped_total); the node sends them
// again when they change, and every five minutes in full.

const (
	// counterFlush is how often the merged counters are written.
	counterFlush = time.Second
	// counterMergeMaxBytes bounds the bytes of the readings waiting.
	counterMergeMaxBytes = 128 << 20
	// counterChunk bounds the rows of one statement.
	counterChunk = 20000
	// counterEntryOverhead is what an entry counts besides its bytes.
	counterEntryOverhead = 160
	// counterWrittenMax bounds the hashes of the readings written (about
	// 40 bytes each): over it they are forgotten (the database then
	// compares the next readings itself).
	counterWrittenMax = 1 << 20
)

// fulcrum_api_node_counters_dropped_total: counter readings dropped before
// they were written, the replica holding too many.
var countersDropped, _ = meter.Int64Counter("fulcrum.api.node.counters_dropped",
	metric.WithDescription("Node counter readings dropped before they were written (too many waiting)."))

// fulcrum_api_node_counters_written_total: counter rows written (changed).
var countersWritten, _ = meter.Int64Counter("fulcrum.api.node.counters_written",
	metric.WithDescription("Rows of node counters written (those unchanged are not)."))

type counterKey struct{ node, lb string }

// counterReading is the newest reading of one (node, load balancer).
type counterReading struct {
	key counterKey
	val []byte
	at  time.Time
}

func (r *counterReading) size() int {
	return len(r.key.node) + len(r.key.lb) + len(r.val) + counterEntryOverhead
}

// counterMerge holds the counter readings not yet written.
type counterMerge struct {
	st  *store.Store
	log *slog.Logger
	// flushMu makes flushes one at a time.
	flushMu sync.Mutex

	mu sync.Mutex
	// pending maps each key to its element of order (a *counterReading),
	// the least recently updated first.
	pending map[counterKey]*clist.Element
	order   *clist.List
	bytes   int
	max     int

	// seed and last hold, by hash of (node, load balancer), the hash of
	// the reading last written: a reading sent again unchanged (an agent
	// sends all its counters every five minutes) is not sent to the database.
	// Used under flushMu.
	seed maphash.Seed
	last map[uint64]uint64

	// dropped and written count readings dropped and rows written.
	dropped, written atomic.Int64
}

func newCounterMerge(st *store.Store, log *slog.Logger, maxBytes int) *counterMerge {
	return &counterMerge{st: st, log: log, pending: map[counterKey]*clist.Element{}, order: clist.New(), max: maxBytes,
		seed: maphash.MakeSeed(), last: map[uint64]uint64{}}
}

// hashes is the hash of r's key and that of its reading.
func (m *counterMerge) hashes(r *counterReading) (key, val uint64) {
	var h maphash.Hash
	h.SetSeed(m.seed)
	_, _ = h.WriteString(r.key.node)
	_ = h.WriteByte(0)
	_, _ = h.WriteString(r.key.lb)
	return h.Sum64(), maphash.Bytes(m.seed, r.val)
}

// add merges node's readings received at at: the newest reading of a load
// balancer wins.
func (m *counterMerge) add(ctx context.Context, node string, counters map[string][]byte, at time.Time) {
	if len(counters) == 0 {
		return
	}
	m.mu.Lock()
	for lb, val := range counters {
		m.putLocked(&counterReading{key: counterKey{node, lb}, val: val, at: at})
	}
	dropped := m.trimLocked()
	m.mu.Unlock()
	if dropped > 0 {
		m.dropped.Add(int64(dropped))
		countersDropped.Add(ctx, int64(dropped))
	}
}

// putLocked keeps r unless a newer reading of its key is waiting.
func (m *counterMerge) putLocked(r *counterReading) {
	if e, ok := m.pending[r.key]; ok {
		old := e.Value.(*counterReading)
		if old.at.After(r.at) {
			return
		}
		m.bytes += r.size() - old.size()
		e.Value = r
		m.order.MoveToBack(e)
		return
	}
	m.pending[r.key] = m.order.PushBack(r)
	m.bytes += r.size()
}

// trimLocked drops the oldest readings while over the limit; it returns
// how many.
func (m *counterMerge) trimLocked() int {
	n := 0
	for m.bytes > m.max && m.order.Len() > 0 {
		r := m.order.Remove(m.order.Front()).(*counterReading)
		delete(m.pending, r.key)
		m.bytes -= r.size()
		n++
	}
	return n
}

// flush writes the readings waiting. Those of a statement that failed wait
// again (unless newer ones came meanwhile).
func (m *counterMerge) flush(ctx context.Context) error {
	m.flushMu.Lock()
	defer m.flushMu.Unlock()
	m.mu.Lock()
	order := m.order
	m.pending, m.order, m.bytes = map[counterKey]*clist.Element{}, clist.New(), 0
	m.mu.Unlock()
	if order.Len() == 0 {
		return nil
	}
	readings := make([]*counterReading, 0, order.Len())
	for e := order.Front(); e != nil; e = e.Next() {
		r := e.Value.(*counterReading)
		if k, v := m.hashes(r); m.last[k] == v && v != 0 {
			continue // written before, unchanged
		}
		readings = append(readings, r)
	}
	var firstErr error
	for start := 0; start < len(readings); start += counterChunk {
		chunk := readings[start:min(start+counterChunk, len(readings))]
		rows := make([]store.CounterRow, len(chunk))
		for i, r := range chunk {
			rows[i] = store.CounterRow{Node: r.key.node, LoadBalancer: r.key.lb, Counters: r.val}
		}
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), reportBatchTimeout)
		n, err := m.st.StoreCounters(fctx, rows)
		cancel()
		if err != nil {
			if firstErr == nil {
				firstErr = err
			}
			m.mu.Lock()
			for _, r := range chunk {
				m.putLocked(r)
			}
			dropped := m.trimLocked()
			m.mu.Unlock()
			m.dropped.Add(int64(dropped))
			continue
		}
		m.written.Add(n)
		countersWritten.Add(ctx, n)
		if len(m.last)+len(chunk) > counterWrittenMax {
			m.last = map[uint64]uint64{}
		}
		for _, r := range chunk {
			k, v := m.hashes(r)
			m.last[k] = v
		}
	}
	return firstErr
}

// run flushes every counterFlush until ctx ends, then once more.
func (m *counterMerge) run(ctx context.Context) {
	t := time.NewTicker(counterFlush)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			if err := m.flush(ctx); err != nil {
				m.log.Warn("write node counters on shutdown", "err", err)
			}
			return
		case <-t.C:
		}
		t0 := time.Now()
		if err := m.flush(ctx); err != nil && ctx.Err() == nil {
			m.log.Warn("write node counters", "err", err)
		}
		if took := time.Since(t0); took > reportBatchSlow {
			m.log.Info("slow write of node counters", "took", took)
		}
	}
}
