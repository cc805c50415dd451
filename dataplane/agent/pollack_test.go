package agent

import (
	"net/http"
	"testing"

	"github.com/fulcrumlb/fulcrum/openapi"
)

// The poll after a clean apply carries its acknowledgement, once the API
// said it records them, until a poll carrying it is answered; the report
// after such an apply is not sent unless it says more (errors, member
// health, counters); an API that does not name protocol 2 gets reports.
func TestPollAcks(t *testing.T) {
	a, _ := testAgent(t, "")
	answer := func(proto string) *http.Response {
		h := http.Header{}
		if proto != "" {
			h.Set(agentProtocolHeader, proto)
		}
		return &http.Response{StatusCode: http.StatusNotModified, Header: h}
	}
	params := func() *openapi.GetNodeSnapshotParams { return a.pollParams(a.pollAfter(), "30s") }
	ack := func(rev int64) *openapi.NodeReport {
		none, noNode := []openapi.LoadBalancerError{}, []openapi.NodeError{}
		return &openapi.NodeReport{Revision: rev, Status: openapi.Ack, LoadBalancerErrors: &none, NodeErrors: &noNode}
	}

	p := params()
	if p.FulcrumAgentProtocol == nil || *p.FulcrumAgentProtocol != "2" || p.Applied != nil {
		t.Fatalf("first poll: protocol %v, applied %v; want 2, none", p.FulcrumAgentProtocol, p.Applied)
	}
	a.expectPollAck()
	if !receiveApply(t, a, &openapi.Snapshot{FormatVersion: 2, Revision: 5, LoadBalancers: []openapi.SnapshotLoadBalancer{lbWith("lb_a", "127.0.0.2", 80)}}) {
		t.Fatal("not applied")
	}
	// The API has not said it records acknowledgements in polls.
	if a.ackedByPoll(ack(5)) {
		t.Fatal("report after an apply skipped before the API said it serves protocol 2")
	}
	if p := params(); p.Applied != nil {
		t.Fatalf("a poll carried an acknowledgement to an API of protocol 1: %d", *p.Applied)
	}

	// An API of protocol 2.
	a.polled(answer("2"), p)
	a.expectPollAck() // the poll loop applies a snapshot …
	if !receiveApply(t, a, &openapi.Snapshot{FormatVersion: 2, Revision: 7, LoadBalancers: []openapi.SnapshotLoadBalancer{lbWith("lb_a", "127.0.0.2", 80, 81)}}) {
		t.Fatal("not applied")
	}
	// … the report after it says nothing more: not sent.
	if !a.ackedByPoll(ack(7)) {
		t.Fatal("clean report after an apply sent although the next poll carries it")
	}
	// One with member health, a nack or errors is sent.
	withMembers := ack(7)
	withMembers.Members = &[]reportMember{{Id: "mbr_1", Status: openapi.NodeReportMembersStatusOnline}}
	nack := ack(7)
	nack.Status = openapi.Nack
	withErr := ack(7)
	withErr.LoadBalancerErrors = &[]openapi.LoadBalancerError{{LoadBalancerId: "lb_a", Message: "no"}}
	for what, b := range map[string]*openapi.NodeReport{"member health": withMembers, "nack": nack, "load balancer errors": withErr} {
		if a.ackedByPoll(b) {
			t.Errorf("a report with %s was not sent", what)
		}
	}
	p = params()
	if p.Applied == nil || *p.Applied != 7 {
		t.Fatalf("poll after a clean apply: applied %v, want 7", p.Applied)
	}
	if !a.ackedByPoll(ack(7)) {
		t.Fatal("report of a revision a poll carried sent")
	}
	// Until answered, every poll carries it; then none.
	if p2 := params(); p2.Applied == nil || *p2.Applied != 7 {
		t.Fatalf("poll after one not answered: applied %v, want 7", p2.Applied)
	}
	a.polled(answer("2"), p)
	if p := params(); p.Applied != nil {
		t.Fatalf("poll after the acknowledgement was answered: applied %d", *p.Applied)
	}

	// An apply that left load balancer errors: acknowledged by report only.
	a.expectPollAck()
	if !receiveApply(t, a, &openapi.Snapshot{FormatVersion: 2, Revision: 9, LoadBalancers: []openapi.SnapshotLoadBalancer{lbWith("lb_a", "127.0.0.2", 80, 81, 82)}}) {
		t.Fatal("not applied")
	}
	a.mu.Lock()
	a.lbErrors["lb_a"] = lbFailure{Message: "cannot bind"}
	a.mu.Unlock()
	if a.ackedByPoll(ack(9)) {
		t.Fatal("report of an apply with load balancer errors skipped")
	}
	if p := params(); p.Applied != nil {
		t.Fatalf("a poll acknowledged an apply with load balancer errors: %d", *p.Applied)
	}
	a.mu.Lock()
	a.lbErrors = map[string]lbFailure{}
	a.mu.Unlock()

	// The API answers without the header (an older replica) a poll that
	// carried the acknowledgement of 9: reports again.
	a.polled(answer(""), params())
	a.expectPollAck()
	if !receiveApply(t, a, &openapi.Snapshot{FormatVersion: 2, Revision: 11, LoadBalancers: []openapi.SnapshotLoadBalancer{lbWith("lb_a", "127.0.0.2", 80)}}) {
		t.Fatal("not applied")
	}
	if a.ackedByPoll(ack(11)) {
		t.Fatal("report skipped after an API of protocol 1 answered")
	}
	if p := params(); p.Applied != nil {
		t.Fatalf("a poll carried an acknowledgement after an API of protocol 1 answered: %d", *p.Applied)
	}
	if a.PollAcks() != 3 {
		t.Errorf("%d polls carried an acknowledgement, want 3 (7 twice, 9)", a.PollAcks())
	}
}
