package agent

import (
	"testing"
	"time"

	"github.com/fulcrumlb/fulcrum/openapi"
)

func TestReportIntervalFollowsTheNodeGroup(t *testing.T) {
	a := &Agent{}
	if got := a.reportInterval(); got != DefaultReportInterval {
		t.Fatalf("before any snapshot: %v", got)
	}
	if got := a.AdminState(); got != "in_service" {
		t.Fatalf("admin state before any snapshot: %s", got)
	}
	ms := 250
	a.snap = &openapi.Snapshot{HeartbeatIntervalMs: &ms, Node: &openapi.SnapshotNode{AdminState: openapi.SnapshotNodeAdminStateDraining}}
	if got := a.reportInterval(); got != 250*time.Millisecond {
		t.Fatalf("with the group's 250 ms: %v", got)
	}
	if got := a.AdminState(); got != "draining" {
		t.Fatalf("admin state: %s", got)
	}
	// An explicit interval wins.
	a.cfg.ReportInterval = time.Second
	if got := a.reportInterval(); got != time.Second {
		t.Fatalf("configured 1s: %v", got)
	}
}
