package api

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/labstack/echo/v4"

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
