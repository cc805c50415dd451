package agent

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/fulcrumlb/fulcrum/openapi"
)

// Acknowledgements carried by polls (node protocol 2, issue 10), as a delta
// xDS request carries the version it applied. After an apply without errors
// the poll loop's next poll says which revision the node serves
// (applied=), and the report after the apply is not sent when it would say
// nothing more: the API records the poll's acknowledgement exactly as that
// report. So a clean apply costs the API two requests per node (the woken
// poll, the next poll) instead of three. A report is still sent after an
// apply with load balancer errors, node errors or member health to tell, and
// a nack after an apply that failed; heartbeats carry the revision served
// anyway, so an acknowledgement lost on the way is repaired within one.
//
// Polls carry acknowledgements only to an API that said it records them: its
// answers to polls name the newest protocol it serves in the
// Fulcrum-Agent-Protocol header; an older API (which ignores the parameter)
// gets the reports as before.

// agentProtocol is the node protocol this agent speaks.
const agentProtocol = 2

// agentProtocolHeader names the header the protocol is announced in, by the
// agent in its polls and by the API in its answers.
const agentProtocolHeader = "Fulcrum-Agent-Protocol"

// pollAcks is the poll loop's side of the acknowledgements; a.mu guards it.
type pollAcks struct {
	// supported: the last answer to a poll said the API records
	// acknowledgements carried by polls.
	supported bool
	// pending: the poll loop applies a snapshot and its next poll carries
	// the acknowledgement of what the node then serves.
	pending bool
	// sent is the newest revision a poll carried the acknowledgement of,
	// confirmed the newest of those the API answered (a poll carries it
	// until answered).
	sent, confirmed int64
	// carried counts the polls that carried one.
	carried int64
}

// PollAcks counts the polls that carried an acknowledgement.
func (a *Agent) PollAcks() int64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.pollAck.carried
}

// expectPollAck notes, before the poll loop applies a snapshot, that its
// next poll acknowledges the result when it is clean.
func (a *Agent) expectPollAck() {
	a.mu.Lock()
	a.pollAck.pending = true
	a.mu.Unlock()
}

// pollAckParamsLocked adds to p what the next poll announces and acknowledges;
// a.mu held.
func (a *Agent) pollAckParamsLocked(p *openapi.GetNodeSnapshotParams) {
	proto := strconv.Itoa(agentProtocol)
	p.FulcrumAgentProtocol = &proto
	a.pollAck.pending = false
	if !a.pollAck.supported || !a.cleanLocked() || a.snap.Revision <= a.pollAck.confirmed {
		return
	}
	rev := a.snap.Revision
	p.Applied = &rev
	a.pollAck.sent = max(a.pollAck.sent, rev)
	a.pollAck.carried++
}

// cleanLocked says whether the node serves a snapshot without load
// balancer errors and node errors: what a poll may acknowledge. a.mu held.
func (a *Agent) cleanLocked() bool {
	return a.snap != nil && a.live != nil && len(a.lbErrors) == 0 && len(a.nodeErrors) == 0 && a.failedRev <= a.snap.Revision
}

// polled notes what the API said of the protocol in its answer (200 or
// 304) to a poll sent with p.
func (a *Agent) polled(res *http.Response, p *openapi.GetNodeSnapshotParams) {
	if res == nil {
		return
	}
	a.noteProtocol(res) // stream.go
	v, err := strconv.Atoi(strings.TrimSpace(res.Header.Get(agentProtocolHeader)))
	a.mu.Lock()
	defer a.mu.Unlock()
	a.pollAck.supported = err == nil && v >= agentProtocol
	if a.pollAck.supported && p.Applied != nil {
		a.pollAck.confirmed = max(a.pollAck.confirmed, *p.Applied)
	}
}

// ackedByPoll says whether report body, about to be sent after an apply,
// says nothing a poll does not: a clean acknowledgement of the revision
// served, which the poll loop's next poll carries (or a poll carried).
func (a *Agent) ackedByPoll(body *openapi.NodeReport) bool {
	if body.Status != openapi.Ack || len(valueOf(body.LoadBalancerErrors)) > 0 || len(valueOf(body.NodeErrors)) > 0 ||
		len(valueOf(body.Members)) > 0 || len(valueOf(body.Stats)) > 0 || body.Vips != nil || body.Message != nil {
		return false
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.pollAck.supported && a.cleanLocked() && a.snap.Revision == body.Revision &&
		(a.pollAck.pending || a.pollAck.sent >= body.Revision)
}

func valueOf[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}
