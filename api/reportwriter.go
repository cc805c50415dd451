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
// reportBatchWindow of the first (or reportBatchMax of them, or those queued
// while the previous batch was written) and writes them in one transaction
// (store.WriteReportBatch). A report's handler waits for its batch's commit:
// an answered report is durable, and the statuses derived after it see it.

const (
	// reportBatchWindow is how long the writer waits for more reports
	// after the first of a batch.
	reportBatchWindow = 3 * time.Millisecond
	// reportBatchMax bounds the reports of one batch.
	reportBatchMax = 256
	// reportQueue is how many reports may wait for the writer.
	reportQueue = 4096
	// reportBatchTimeout bounds one batch's transaction.
	reportBatchTimeout = 10 * time.Second
)

// fulcrum_api_node_report_batches_total: transactions that wrote node
// reports (reports/batches ⇒ reports per transaction).
var reportBatches, _ = meter.Int64Counter("fulcrum.api.node.report_batches",
	metric.WithDescription("Transactions that wrote node reports (each writes a batch of reports)."))

// reportJob is one report waiting for its batch.
type reportJob struct {
	ctx  context.Context
	item store.ReportItem
	// done receives the report's result once its batch is written (or
	// failed).
	done chan reportDone
}

type reportDone struct {
	res store.ReportResult
	err error
}

// reportWriter writes the replica's reports in batches.
type reportWriter struct {
	st  *store.Store
	log *slog.Logger
	in  chan *reportJob
	// batches and written count the transactions and the reports they
	// wrote (refused ones included).
	batches, written atomic.Int64
}

func newReportWriter(st *store.Store, log *slog.Logger) *reportWriter {
	return &reportWriter{st: st, log: log, in: make(chan *reportJob, reportQueue)}
}

// write queues a report and waits until its batch is written. The error is
// the batch's (the database's) or ctx's; a report refused by its Decide
// has its error in the result's Err.
func (w *reportWriter) write(ctx context.Context, item store.ReportItem) (store.ReportResult, error) {
	j := &reportJob{ctx: ctx, item: item, done: make(chan reportDone, 1)}
	select {
	case w.in <- j:
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

// run writes batches until ctx ends.
func (w *reportWriter) run(ctx context.Context) {
	batch := make([]*reportJob, 0, reportBatchMax)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		batch = batch[:0]
		select {
		case <-ctx.Done():
			return
		case j := <-w.in:
			batch = append(batch, j)
		}
		// What queued while the last batch was written goes at once.
	drain:
		for len(batch) < reportBatchMax {
			select {
			case j := <-w.in:
				batch = append(batch, j)
			default:
				break drain
			}
		}
		if len(batch) < reportBatchMax {
			timer.Reset(reportBatchWindow)
		gather:
			for len(batch) < reportBatchMax {
				select {
				case j := <-w.in:
					batch = append(batch, j)
				case <-timer.C:
					break gather
				case <-ctx.Done():
					break gather
				}
			}
			timer.Stop()
		}
		w.writeBatch(ctx, batch)
	}
}

// writeBatch writes one batch and answers its reports.
func (w *reportWriter) writeBatch(ctx context.Context, batch []*reportJob) {
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
	res, err := w.st.WriteReportBatch(bctx, items)
	cancel()
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
