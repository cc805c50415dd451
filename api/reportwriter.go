package api

import (
	"context"
	"log/slog"
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

const (
	// reportBatchWindow is how long a lane waits for more reports after
	// the first of a batch.
	reportBatchWindow = 3 * time.Millisecond
	// reportBatchMax bounds the reports of one batch.
	reportBatchMax = 256
	// reportBatchRows bounds the rows (counters, load balancer errors) a
	// batch writes besides the nodes' own: a batch of full reports (a
	// fleet starting: hundreds of counters each) stays short.
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
	reportBatchSlow = 200 * time.Millisecond
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
	// done receives the report's result once its batch is written (or
	// failed).
	done chan reportDone
}

type reportDone struct {
	res store.ReportResult
	err error
}

// reportWriter writes the replica's reports in batches, in two lanes that
// write at the same time: light reports (heartbeats, acks, a few counters)
// and heavy ones (full reports).
type reportWriter struct {
	st           *store.Store
	log          *slog.Logger
	light, heavy chan *reportJob
	// batches and written count the transactions and the reports they
	// wrote (refused ones included).
	batches, written atomic.Int64
}

func newReportWriter(st *store.Store, log *slog.Logger) *reportWriter {
	return &reportWriter{st: st, log: log, light: make(chan *reportJob, reportQueue), heavy: make(chan *reportJob, reportQueue)}
}

// write queues a report writing rows rows besides its node's and waits
// until its batch is written. The error is the batch's (the database's) or
// ctx's; a report refused by its Decide has its error in the result's Err.
func (w *reportWriter) write(ctx context.Context, item store.ReportItem, rows int) (store.ReportResult, error) {
	j := &reportJob{ctx: ctx, item: item, rows: rows, done: make(chan reportDone, 1)}
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

// run writes batches of both lanes until ctx ends.
func (w *reportWriter) run(ctx context.Context) {
	go w.runLane(ctx, w.heavy)
	w.runLane(ctx, w.light)
}

// runLane writes the batches of one lane until ctx ends: what queued while
// the last batch was written, or what arrives within reportBatchWindow of
// the first, up to reportBatchMax reports and reportBatchRows rows.
func (w *reportWriter) runLane(ctx context.Context, in chan *reportJob) {
	batch := make([]*reportJob, 0, reportBatchMax)
	var carry *reportJob // taken from the lane, for the next batch
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		batch = batch[:0]
		rows := 0
		if carry == nil {
			select {
			case <-ctx.Done():
				return
			case carry = <-in:
			}
		}
		batch, rows, carry = append(batch, carry), carry.rows, nil
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
			timer.Reset(reportBatchWindow)
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
		w.writeBatch(ctx, batch, rows)
	}
}

// writeBatch writes one batch and answers its reports.
func (w *reportWriter) writeBatch(ctx context.Context, batch []*reportJob, rows int) {
	items := make([]store.ReportItem, 0, len(batch))
	jobs := make([]*reportJob, 0, len(batch))
	for _, j := range batch {
		if err := j.ctx.Err(); err != nil {
			j.done <- reportDone{err: err} // its handler has given up
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
			j.done <- reportDone{err: err}
			continue
		}
		j.done <- reportDone{res: res[i]}
	}
}
