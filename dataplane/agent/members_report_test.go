package agent

import (
	"testing"
	"time"

	"github.com/fulcrumlb/fulcrum/openapi"
)

// TestMemberReportsCarryOnlyChanges: the first report carries every member,
// later ones only those whose health changed since the API acknowledged it,
// an unacknowledged report is sent again, and all of them once a minute.
func TestMemberReportsCarryOnlyChanges(t *testing.T) {
	l7ok, l4con := "L7OK", "L4CON"
	up := func(id string) reportMember {
		return reportMember{Id: id, Status: openapi.NodeReportMembersStatusOnline, Check: &l7ok}
	}
	down := func(id string) reportMember {
		return reportMember{Id: id, Status: openapi.NodeReportMembersStatusOffline, Check: &l4con}
	}
	ids := func(ms []reportMember) []string {
		var out []string
		for _, m := range ms {
			out = append(out, m.Id)
		}
		return out
	}
	var r memberReports
	t0 := time.Now()
	out, sent := r.unsent([]reportMember{up("a"), up("b")}, t0)
	if len(out) != 2 {
		t.Fatalf("first report: %v, want every member", ids(out))
	}
	sent()
	if out, _ := r.unsent([]reportMember{up("a"), up("b")}, t0.Add(time.Second)); len(out) != 0 {
		t.Fatalf("nothing changed: %v, want none", ids(out))
	}
	out, _ = r.unsent([]reportMember{up("a"), down("b")}, t0.Add(2*time.Second))
	if len(out) != 1 || out[0].Id != "b" {
		t.Fatalf("b went down: %v, want [b]", ids(out))
	}
	// Not acknowledged (the report failed): sent again.
	out, sent = r.unsent([]reportMember{up("a"), down("b"), up("c")}, t0.Add(3*time.Second))
	if len(out) != 2 || out[0].Id != "b" || out[1].Id != "c" {
		t.Fatalf("after a failed report: %v, want [b c]", ids(out))
	}
	sent()
	if out, _ := r.unsent([]reportMember{up("a"), down("b"), up("c")}, t0.Add(4*time.Second)); len(out) != 0 {
		t.Fatalf("acknowledged: %v, want none", ids(out))
	}
	if out, _ := r.unsent([]reportMember{up("a"), down("b"), up("c")}, t0.Add(fullMembersEvery+time.Second)); len(out) != 3 {
		t.Fatalf("a minute later: %v, want every member", ids(out))
	}
}
