package api

import (
	"net/http"
	"runtime"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/fulcrumlb/fulcrum/api/problem"
)

// Node reports are admitted a few at a time: a fleet's agents starting
// together each send a full report (every member's health and counters, up
// to hundreds of KB at 1,000 load balancers), and a replica that took them
// all at once would spend its CPU on them while nothing, writes and snapshot
// polls included, got answered. A report that finds no slot within
// reportAdmitWait is answered 503 with Retry-After before its body is read;
// the agent keeps what it had to say and sends it with its next report.

// reportAdmitWait is how long a report waits for a slot.
const reportAdmitWait = time.Second

// reportSlots is how many reports one replica processes at once.
func reportSlots() int { return max(4, 2*runtime.GOMAXPROCS(0)) }

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
		t := time.NewTimer(reportAdmitWait)
		defer t.Stop()
		select {
		case s.reports <- struct{}{}:
		case <-t.C:
			countReport(r.Context(), "shed") // metrics.go: fulcrum_api_node_reports_total{status="shed"}
			return problem.Unavailable(1, "This API replica is busy with other nodes' reports; send this one again after the Retry-After seconds.")
		case <-r.Context().Done():
			return r.Context().Err()
		}
		defer func() { <-s.reports }()
		return next(c)
	}
}
