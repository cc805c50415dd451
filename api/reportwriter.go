package api

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/metric"

	"github.com/fulcrumlb/fulcrum/api/store"
)

// Group commit of node reports (issue 10). Every report of a replica goes to
// its report writer, which gathers the reports that arrive within
// reportBatchWindow of the first (or those queued while the previous batch
// was written, up to reportBatchMax reports and reportBatchRows rows) and
// writes them in one transaction (store.WriteReportBatch). A report's handler waits for its batch's commit:
// an answered report is durable, and the statuses derived after it see it.
// Its counters are not in the batch: they go to the writer's counter merge
// (counters.go), written about every second.

const (
	// reportBatchWindow is how long a lane waits for more reports after
	// the first of a batch.
	reportBatchWindow = 3 * time.Millisecond
	// ackBatchWindow is how long the light lane waits for more after an
	// acknowledgement started a batch: nobody waits for acknowledgements
	// (statuses are derived at most every DeriveInterval), and at 1,000
	// nodes a write's arrive over a few hundred milliseconds, so a longer
	// window writes them in fewer statements.
	ackBatchWindow = 10 * time.Millisecond
	// reportBatchMax bounds the reports of one batch.
	reportBatchMax = 256
	// reportBatchRows bounds the rows (load balancer errors) a batch
	// writes besides the nodes' own: a batch of reports of failing nodes
	// stays short.
	reportBatchRows = 8192
	// reportHeavyRows: a report writing more rows than this besides its
	// node's goes to the heavy lane, so that heartbeats and acks never wait
	// behind full reports.
	reportHeavyRows = 64
	// reportQueue is how many reports may wait in each lane.
	reportQueue = 4096
	// reportBatchTimeout bounds one batch's transaction.
	reportBatchTimeout = 10 * time.Second
	// reportBatchSlow: a batch slower than this is logged.
	reportBatchSlow = time.Second
)

// fulcrum_api_node_report_batches_total: transactions that wrote node
// reports (reports/batches ⇒ reports per transaction).
var reportBatches, _ = meter.Int64Counter("fulcrum.api.node.report_batches",
	metric.WithDescription("Transactions that wrote node reports (each writes a batch of reports)."))

// reportJob is one report waiting for its batch.
type reportJob struct {
	ctx  context.Context
	item store.ReportItem
	// rows is what the report writes besides its node's row.
	rows int
	// lbReplace says it replaces its node's load balancer errors, by
	// lbErrors of them.
	lbReplace bool
	lbErrors  int
	// done receives the report's result once its batch is written (or
	// failed); a job nobody waits for (an acknowledgement, ackbatch.go)
	// has after instead.
	done  chan reportDone
	after func(store.ReportResult, error)
}

// finish answers j with its result.
func (j *reportJob) finish(d reportDone) {
	if j.done != nil {
		j.done <- d
		return
	}
	j.after(d.res, d.err)
}

type reportDone struct {
	res store.ReportResult
	err error
}

// reportWriter writes the replica's reports in batches, in two lanes that
// write at the same time: light reports (heartbeats, acks, a few counters)
// and heavy ones (full reports).
//
// A heartbeat that changes nothing but its node's last_seen_at is
// acknowledged at once, without a batch (ReportNode, seenNode): its
// last_seen_at is written with the others every reportSeenFlush.
type reportWriter struct {
	st           *store.Store
	log          *slog.Logger
	light, heavy chan *reportJob
	// batches and written count the transactions and the reports they
	// wrote (refused ones included); acked counts the heartbeats
	// acknowledged without a batch.
	batches, written, acked atomic.Int64

	mu sync.Mutex
	// nodes maps the id or name reports were sent for to the node as the
	// last batch (or heartbeat flush) left it, while it surely counts as up.
	nodes map[string]*seenNode
	// seen holds the last_seen_at of heartbeats acknowledged without a
	// batch, by node id, until flushed.
	seen map[string]time.Time

	// counters holds the reports' counters until written (counters.go).
	counters *counterMerge

	// acks holds the acknowledgements of polls and streams until the
	// light lane's next batch takes them (ackbatch.go); ackReady wakes it.
	acks     map[ackKey]ackPending
	ackReady chan struct{}
	// streamAcks counts the acknowledgements streams received since the
	// last batch took them (fulcrum_api_node_reports_total, poll_ack):
	// counted per batch, not per message.
	streamAcks atomic.Int64
	// ackJob makes an acknowledgement's job (handlers.ackJob); ackMarked
	// marks a group whose nodes' applied revisions writeAcks raised, to
	// be derived.
	ackJob    func(ackKey, int64, time.Time) *reportJob
	ackMarked func(groupID string)
	// fastBuf and ackItems are the light lane's buffers of the
	// acknowledgements of plain nodes (takeAcks, writeAcks).
	fastBuf  []fastAck
	ackItems []store.AckWrite
}

// reportSeenFlush is how often the last_seen_at of heartbeats acknowledged
// without a batch are written.
const reportSeenFlush = 500 * time.Millisecond

// seenNode is a node as its last report left it in the database.
type seenNode struct {
	node store.Node
	// until is when it would be down without another report written (half
	// its group's down timeout after the last write of its last_seen_at):
	// a heartbeat acknowledged without a batch after that is not.
	until time.Time
	// noLBErrors says it has no load balancer errors.
	noLBErrors bool
	// downTimeout is its group's down timeout as of the last batch.
	downTimeout time.Duration
}

func newReportWriter(st *store.Store, log *slog.Logger) *reportWriter {
	return &reportWriter{st: st, log: log, light: make(chan *reportJob, reportQueue), heavy: make(chan *reportJob, reportQueue),
		nodes: map[string]*seenNode{}, seen: map[string]time.Time{}, counters: newCounterMerge(st, log, counterMergeMaxBytes),
		acks: map[ackKey]ackPending{}, ackReady: make(chan struct{}, 1)}
}

// cached returns the node reports for key were last written for, while it
// surely counts as up, online and serving (no admin state, no errors, no
// failing apply).
func (w *reportWriter) cached(key string, now time.Time) (store.Node, bool, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := w.nodes[key]
	if n == nil || now.After(n.until) {
		return store.Node{}, false, false
	}
	return n.node, n.noLBErrors, true
}

// touch records a heartbeat of node id (reported as key) acknowledged
// without a batch.
func (w *reportWriter) touch(id string, at time.Time) {
	w.acked.Add(1)
	w.mu.Lock()
	w.seen[id] = at
	w.mu.Unlock()
}

// remember keeps what batch job j (its result res) left of its node.
func (w *reportWriter) remember(j *reportJob, res store.ReportResult, written time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := res.Node
	if n == nil || n.AdminState != "" || len(n.Errors) > 0 || n.ApplyFailingSince != nil || res.DownTimeout <= 0 {
		delete(w.nodes, j.item.Key)
		return
	}
	prev := w.nodes[j.item.Key]
	noLB := prev != nil && prev.noLBErrors && prev.node.ID == n.ID
	if j.lbReplace {
		noLB = j.lbErrors == 0
	}
	w.nodes[j.item.Key] = &seenNode{node: *n, until: written.Add(res.DownTimeout / 2), noLBErrors: noLB, downTimeout: res.DownTimeout}
}

// flushSeen writes the last_seen_at of the heartbeats acknowledged without
// a batch.
func (w *reportWriter) flushSeen(ctx context.Context) error {
	w.mu.Lock()
	seen := w.seen
	w.seen = map[string]time.Time{}
	w.mu.Unlock()
	if len(seen) == 0 {
		return nil
	}
	ids, times := make([]string, 0, len(seen)), make([]time.Time, 0, len(seen))
	for id, at := range seen {
		ids, times = append(ids, id), append(times, at)
	}
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), reportBatchTimeout)
	defer cancel()
	_, plain, err := w.st.NodesSeen(fctx, ids, times)
	// On failure, those nodes' next heartbeats go through a batch. A node
	// deleted (its name may come back as another node), or no longer plain
	// (an admin cordoned it, another replica wrote its errors), goes through
	// a batch as well, which reads its row. The others stay acknowledged
	// without a batch: this write of their last_seen_at counts as the last,
	// as a batch's would (reportWriter.remember), and the row shows nothing
	// the cached node does not. So a node whose heartbeats change nothing
	// never waits for a commit, rather than once every half down timeout:
	// at 1,000 nodes on a 2 s heartbeat and a 10 s down timeout, that was
	// 200 heartbeats a second through batches.
	w.mu.Lock()
	for key, n := range w.nodes {
		at, ok := seen[n.node.ID]
		if !ok {
			continue
		}
		if err != nil || !plain[n.node.ID] {
			delete(w.nodes, key)
			continue
		}
		if until := at.Add(n.downTimeout / 2); until.After(n.until) {
			n.until = until
		}
	}
	w.mu.Unlock()
	return err
}

// runFlush flushes the heartbeats acknowledged without a batch every
// reportSeenFlush until ctx ends.
func (w *reportWriter) runFlush(ctx context.Context) {
	t := time.NewTicker(reportSeenFlush)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			_ = w.flushSeen(ctx)
			return
		case <-t.C:
		}
		if err := w.flushSeen(ctx); err != nil && ctx.Err() == nil {
			w.log.Warn("record heartbeats", "err", err)
		}
	}
}

// write queues a report writing rows rows besides its node's and waits
// until its batch is written. The error is the batch's (the database's) or
// ctx's; a report refused by its Decide has its error in the result's Err.
func (w *reportWriter) write(ctx context.Context, item store.ReportItem, rows int, lbReplace bool, lbErrors int) (store.ReportResult, error) {
	j := &reportJob{ctx: ctx, item: item, rows: rows, lbReplace: lbReplace, lbErrors: lbErrors, done: make(chan reportDone, 1)}
	lane := w.light
	if rows > reportHeavyRows {
		lane = w.heavy
	}
	select {
	case lane <- j:
	case <-ctx.Done():
		return store.ReportResult{}, ctx.Err()
	}
	select {
	case d := <-j.done:
		return d.res, d.err
	case <-ctx.Done():
		return store.ReportResult{}, ctx.Err()
	}
}

// run writes batches of both lanes, heartbeats and counters until ctx
// ends, flushes the heartbeats and counters once more and closes its store.
func (w *reportWriter) run(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Add(3)
	go func() { defer wg.Done(); w.runFlush(ctx) }()
	go func() { defer wg.Done(); w.counters.run(ctx) }()
	go func() { defer wg.Done(); w.runLane(ctx, w.heavy, nil) }()
	w.runLane(ctx, w.light, w.ackReady)
	wg.Wait()
	w.st.Close()
}

// runLane writes the batches of one lane until ctx ends: what queued while
// the last batch was written, or what arrives within reportBatchWindow of
// the first, up to reportBatchMax reports and reportBatchRows rows. With
// acks (the light lane), the pending acknowledgements fill the rest of each
// batch, and their arrival starts one as a report's does.
func (w *reportWriter) runLane(ctx context.Context, in chan *reportJob, acks <-chan struct{}) {
	batch := make([]*reportJob, 0, reportBatchMax)
	var carry *reportJob // taken from the lane, for the next batch
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		batch = batch[:0]
		rows := 0
		window := reportBatchWindow
		if carry == nil {
			select {
			case <-ctx.Done():
				return
			case carry = <-in:
			case <-acks:
				window = ackBatchWindow
			}
		}
		if carry != nil {
			batch, rows, carry = append(batch, carry), carry.rows, nil
		}
		// add takes j into the batch, or keeps it for the next one; it
		// says whether the batch can take more.
		add := func(j *reportJob) bool {
			if rows+j.rows > reportBatchRows {
				carry = j
				return false
			}
			batch, rows = append(batch, j), rows+j.rows
			return len(batch) < reportBatchMax
		}
		more := len(batch) < reportBatchMax && rows < reportBatchRows
	drain:
		for more {
			select {
			case j := <-in:
				more = add(j)
			default:
				break drain
			}
		}
		if more {
			timer.Reset(window)
		gather:
			for more {
				select {
				case j := <-in:
					more = add(j)
				case <-timer.C:
					break gather
				case <-ctx.Done():
					break gather
				}
			}
			timer.Stop()
		}
		if acks != nil {
			jobs, fast := w.takeAcks(reportBatchMax - len(batch))
			batch = append(batch, jobs...)
			if len(fast) > 0 {
				w.writeAcks(ctx, fast) // ackbatch.go
			}
		}
		if len(batch) == 0 {
			continue
		}
		w.writeBatch(ctx, batch, rows)
	}
}

// writeBatch writes one batch and answers its reports.
func (w *reportWriter) writeBatch(ctx context.Context, batch []*reportJob, rows int) {
	items := make([]store.ReportItem, 0, len(batch))
	jobs := make([]*reportJob, 0, len(batch))
	for _, j := range batch {
		if j.ctx != nil && j.ctx.Err() != nil {
			j.finish(reportDone{err: j.ctx.Err()}) // its handler has given up
			continue
		}
		items = append(items, j.item)
		jobs = append(jobs, j)
	}
	if len(items) == 0 {
		return
	}
	bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), reportBatchTimeout)
	t0 := time.Now()
	res, err := w.st.WriteReportBatch(bctx, items)
	took := time.Since(t0)
	cancel()
	if took > reportBatchSlow {
		w.log.Info("slow batch of node reports", "reports", len(items), "rows", rows, "took", took)
	}
	w.batches.Add(1)
	w.written.Add(int64(len(items)))
	reportBatches.Add(ctx, 1)
	if err != nil && ctx.Err() == nil {
		w.log.Warn("write node reports", "reports", len(items), "err", err)
	}
	for i, j := range jobs {
		if err != nil {
			w.mu.Lock()
			delete(w.nodes, j.item.Key)
			w.mu.Unlock()
			j.finish(reportDone{err: err})
			continue
		}
		w.remember(j, res[i], t0)
		j.finish(reportDone{res: res[i]})
	}
}
