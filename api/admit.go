package api

import (
	"context"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"
	"golang.org/x/sync/semaphore"

	"github.com/fulcrumlb/fulcrum/api/problem"
)

// Node reports are admitted by size: a fleet's agents starting together each
// send a full report (every member's health and counters, up to hundreds of
// KB at 1,000 load balancers), and a replica that took them all at once
// would hold them all in memory and spend its CPU on them while nothing,
// writes and snapshot polls included, got answered. The reports being
// processed (read, checked, waiting for their batch: reportwriter.go) may
// hold at most reportBudget bytes of bodies between them, each counting at
// least reportMinCost: thousands of heartbeats at once, a few dozen full
// reports. Large reports (over reportLargeBody, or of unknown length) have
// a budget of their own, reportLargeBudget: a fleet starting sends a burst
// of them, and those admitted are answered quickly while the others wait
// (up to reportLargeAdmitWait) or are told to come back, rather than all
// waiting for tens of seconds behind one another (or holding back
// heartbeats and acks, which never wait for room behind them). Since a
// report's counters are no longer written before it is answered
// (counters.go), a full report costs its reading and checking only (tens of
// milliseconds at 1,000 load balancers), so dozens are processed at once and
// the burst waits rather than being shed. A report that finds no room
// within its wait is answered 503 with Retry-After before its body is read;
// the agent keeps what it had to say and sends it with its next report.

const (
	// reportAdmitWait is how long a report waits for room.
	reportAdmitWait = time.Second
	// reportLargeAdmitWait is how long a large report waits for room: the
	// large ones admitted are answered in tens of milliseconds each.
	reportLargeAdmitWait = 3 * time.Second
	// reportBudget bounds the bytes of the reports processed at once.
	reportBudget = 32 << 20
	// reportMinCost is what a report counts at least (and what one sent
	// without a Content-Length counts on top of reportUnknownCost).
	reportMinCost = 16 << 10
	// reportUnknownCost is what a report without a Content-Length counts.
	reportUnknownCost = 1 << 20
	// reportLargeBody: a report larger than this is a large one.
	reportLargeBody = 64 << 10
	// reportLargeBudget bounds the bytes of the large reports processed at
	// once: about 38 full reports of 1,000 load balancers (430 KB each).
	reportLargeBudget = 16 << 20
)

// newReportBudgets makes the budgets of reports: all but large ones, large ones.
func newReportBudgets() (reports, large *semaphore.Weighted) {
	return semaphore.NewWeighted(reportBudget), semaphore.NewWeighted(reportLargeBudget)
}

// reportCost is what a report of contentLength bytes (-1: unknown) counts.
func reportCost(contentLength int64) int64 {
	if contentLength < 0 {
		return reportUnknownCost
	}
	return min(max(contentLength, reportMinCost), reportBudget)
}

// isReportPath says whether path is a node's reports (POST /v1/nodes/{name}/reports).
func isReportPath(path string) bool {
	_, sub, ok := nodeProtocolPath(path) // ratelimit.go
	return ok && sub == "reports"
}

// admitReports bounds the reports processed at once (see above). It runs
// after authentication and the rate limit, before the request is checked
// against the document (which reads and decodes the body).
func (s *Server) admitReports(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		if r.Method != http.MethodPost || !isReportPath(r.URL.Path) {
			return next(c)
		}
		cost, budget, wait := reportCost(r.ContentLength), s.reports, reportAdmitWait
		if r.ContentLength < 0 || r.ContentLength > reportLargeBody {
			cost, budget, wait = min(cost, reportLargeBudget), s.largeReports, reportLargeAdmitWait
		}
		if err := acquireReport(r.Context(), budget, cost, wait); err != nil {
			if r.Context().Err() != nil {
				return r.Context().Err()
			}
			countReport(r.Context(), "shed") // metrics.go: fulcrum_api_node_reports_total{status="shed"}
			return problem.Unavailable(1, "This API replica is busy with other nodes' reports; send this one again after the Retry-After seconds.")
		}
		defer budget.Release(cost)
		return next(c)
	}
}

// acquireReport takes cost of budget, waiting up to wait for room. A report
// is shed for want of room only, never for time alone: when there is room
// it is taken however late the report got here (on a loaded machine, more
// than wait may pass between the deadline's start and the semaphore's
// look, and the deadline's end fails even an Acquire that would not wait).
func acquireReport(ctx context.Context, budget *semaphore.Weighted, cost int64, wait time.Duration) error {
	if budget.TryAcquire(cost) {
		return nil
	}
	wctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	return budget.Acquire(wctx, cost)
}
