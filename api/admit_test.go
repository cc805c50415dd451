package api

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	"golang.org/x/sync/semaphore"

	"github.com/fulcrumlb/fulcrum/api/problem"
)

// TestAdmitReports: reports beyond the replica's budget wait, then get a 503
// with Retry-After before their body is read; other requests never wait,
// and small reports never wait behind large ones.
func TestAdmitReports(t *testing.T) {
	for path, want := range map[string]bool{"/v1/nodes/n1/reports": true, "/v1/nodes/n1/snapshot": false,
		"/v1/nodes/n1": false, "/v1/nodes//reports": false, "/v1/load-balancers": false} {
		if got := isReportPath(path); got != want {
			t.Errorf("isReportPath(%q) = %v, want %v", path, got, want)
		}
	}
	s := &Server{}
	s.reports, s.largeReports = newReportBudgets()
	e := echo.New()
	ran := 0
	h := s.admitReports(func(echo.Context) error { ran++; return nil })
	call := func(method, path string) error {
		return h(e.NewContext(httptest.NewRequest(method, path, nil), httptest.NewRecorder()))
	}
	if err := call(http.MethodPost, "/v1/nodes/n1/reports"); err != nil || ran != 1 {
		t.Fatalf("a report with a free slot: %v (ran %d)", err, ran)
	}
	if !s.reports.TryAcquire(reportBudget - reportMinCost + 1) { // no room for one more
		t.Fatal("the budget is taken")
	}
	err := call(http.MethodPost, "/v1/nodes/n2/reports")
	var p *problem.Problem
	if !errors.As(err, &p) || p.Status != http.StatusServiceUnavailable {
		t.Fatalf("a report with no slot: %v, want a 503 problem", err)
	}
	if ran != 1 {
		t.Fatal("the refused report reached its handler")
	}
	if err := call(http.MethodGet, "/v1/nodes/n2/snapshot"); err != nil || ran != 2 {
		t.Fatalf("a snapshot poll while reports are busy: %v (ran %d)", err, ran)
	}

	// Large reports have a budget of their own: with it taken, a large one
	// is refused and a small one goes.
	s = &Server{}
	s.reports, s.largeReports = newReportBudgets()
	h = s.admitReports(func(echo.Context) error { ran++; return nil })
	sized := func(n int64) error {
		r := httptest.NewRequest(http.MethodPost, "/v1/nodes/n3/reports", nil)
		r.ContentLength = n
		return h(e.NewContext(r, httptest.NewRecorder()))
	}
	if !s.largeReports.TryAcquire(reportLargeBudget - reportLargeBody) {
		t.Fatal("the large budget is taken")
	}
	if err := sized(2 * reportLargeBody); !errors.As(err, &p) || p.Status != http.StatusServiceUnavailable {
		t.Fatalf("a large report with no room: %v, want a 503 problem", err)
	}
	ran = 0
	if err := sized(100); err != nil || ran != 1 {
		t.Fatalf("a small report while large ones are busy: %v (ran %d)", err, ran)
	}
}

// TestAdmitReportsShedsForRoomOnly: a report that finds room is admitted
// however late it got to the budget (its wait already over: on a loaded
// machine the goroutine may run long after the deadline started), and one
// that finds none waits, then is shed. TestReportsDoNotBlockWrites saw 503s
// with 200 small reports in a budget of 2,048 under -race on a loaded machine.
func TestAdmitReportsShedsForRoomOnly(t *testing.T) {
	budget := semaphore.NewWeighted(2 * reportMinCost)
	if err := acquireReport(context.Background(), budget, reportMinCost, 0); err != nil {
		t.Fatalf("room for the report, its wait over: %v, want admitted", err)
	}
	if err := acquireReport(context.Background(), budget, reportMinCost, -time.Second); err != nil {
		t.Fatalf("room for the report, its wait long over: %v, want admitted", err)
	}
	start := time.Now()
	if err := acquireReport(context.Background(), budget, reportMinCost, 50*time.Millisecond); err == nil {
		t.Fatal("no room left: admitted, want shed after the wait")
	}
	t.Logf("shed after %s", time.Since(start))
	budget.Release(reportMinCost)
	if err := acquireReport(context.Background(), budget, reportMinCost, 0); err != nil {
		t.Fatalf("room again: %v", err)
	}
}
