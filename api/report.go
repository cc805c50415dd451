package api

import (
	"context"
	"encoding/json"
	"net/netip"
	"slices"
	"time"

	"github.com/fulcrumlb/fulcrum/api/problem"
	"github.com/fulcrumlb/fulcrum/api/store"
	"github.com/fulcrumlb/fulcrum/api/validate"
	"github.com/fulcrumlb/fulcrum/openapi"
)

// ReportNode takes a node's report off the write path (issue 10): the
// replica's report writer (reportwriter.go) writes it with the other reports
// that arrived at the same time, in one transaction without the write lock
// and without a revision, and only what is the node's own (its row, its
// errors, its load balancer errors; its counters are merged and written
// within about a second, counters.go); the deriver
// (deriver.go) then derives its group's statuses when the report changed
// something they depend on. The report is answered once its batch committed.
func (h *handlers) ReportNode(ctx context.Context, r openapi.ReportNodeRequestObject) (openapi.ReportNodeResponseObject, error) {
	scope, err := nodeCaller(ctx)
	if err != nil {
		return nil, err
	}
	countReport(ctx, string(r.Body.Status)) // metrics.go
	if err := h.takeReport(ctx, r.Id, scope, r.Body); err != nil {
		return nil, err
	}
	return openapi.ReportNode204Response{}, nil
}

// takeReport records report b of node name (as scope may act for): the
// body of ReportNode, and of the acknowledgements polls carry
// (node_protocol.go). It returns once the report is durable (or needs no
// write: see below).
func (h *handlers) takeReport(ctx context.Context, name string, scope nodeScope, b *openapi.NodeReport) error {
	if b.Vips != nil {
		for i, v := range *b.Vips {
			if _, err := netip.ParseAddr(v); err != nil {
				return problem.InvalidField(validate.Index("vips", i), "must be an IP address")
			}
		}
	}
	var nodeErrs []store.NodeError
	if b.NodeErrors != nil {
		nodeErrs = make([]store.NodeError, 0, len(*b.NodeErrors))
		for _, e := range *b.NodeErrors {
			nodeErrs = append(nodeErrs, store.NodeError{Kind: string(e.Kind), Message: e.Message})
		}
	}
	var lbErrs []store.LBError
	for _, e := range deref(b.LoadBalancerErrors) {
		lbErrs = append(lbErrs, store.LBError{LoadBalancerID: e.LoadBalancerId, ObjectID: deref(e.ObjectId),
			Field: deref(e.Field), Message: e.Message})
	}
	var members map[string]string
	if b.Members != nil {
		members = make(map[string]string, len(*b.Members))
		for _, m := range *b.Members {
			members[m.Id] = string(m.Status)
		}
	}
	counters := make(map[string][]byte, len(deref(b.Stats)))
	for _, s := range deref(b.Stats) {
		c, _ := json.Marshal(s)
		counters[s.LoadBalancerId] = c
	}
	// A heartbeat that changes nothing but last_seen_at (and counters), of
	// a node whose last report this replica wrote and which surely counts
	// as up, is acknowledged at once; its last_seen_at is written within
	// reportSeenFlush (reportwriter.go). Counters are never waited for:
	// they are merged and written within about counterFlush (counters.go).
	now := time.Now()
	if n, noLBErrors, ok := h.reportw.cached(name, now); ok && (b.LoadBalancerErrors == nil || len(lbErrs) == 0 && noLBErrors) &&
		nodeInScope(ctx, name, &n, scope) == nil {
		w := decideReport(b, &n, store.NodeOnline, true, nodeErrs, lbErrs, now)
		if !w.Changed && w.StatusMessage == n.StatusMessage && slices.Equal(w.VIPs, n.VIPs) {
			h.reportw.touch(n.ID, now)
			h.reportw.counters.add(ctx, n.ID, counters, now)
			h.deriver.reported(n.NodeGroupID, n.ID, false, members)
			return nil
		}
	}
	res, err := h.reportw.write(ctx, store.ReportItem{Key: name, Decide: func(n *store.Node, state string, serving bool) (*store.ReportWrite, error) {
		if err := nodeInScope(ctx, name, n, scope); err != nil {
			return nil, err
		}
		return decideReport(b, n, state, serving, nodeErrs, lbErrs, time.Now()), nil
	}}, len(lbErrs), b.LoadBalancerErrors != nil, len(lbErrs))
	if err == nil {
		err = res.Err
	}
	if err != nil {
		return err
	}
	h.reportw.counters.add(ctx, res.Node.ID, counters, now)
	h.deriver.reported(res.Node.NodeGroupID, res.Node.ID, res.Changed, members)
	return nil
}

// decideReport is what report b makes of node n (its row as locked, its
// state and whether it counts for its group), received at now.
func decideReport(b *openapi.NodeReport, n *store.Node, state string, serving bool, nodeErrs []store.NodeError,
	lbErrs []store.LBError, now time.Time) *store.ReportWrite {
	w := &store.ReportWrite{SeenAt: now, StatusMessage: n.StatusMessage, AppliedRevision: n.AppliedRevision,
		ApplyFailingSince: n.ApplyFailingSince, ApplyFailingRevision: n.ApplyFailingRevision, VIPs: n.VIPs, Errors: n.Errors}
	// A node that did not count (never reported, down, failing, cordoned,
	// draining) may count again: its group is derived.
	w.Changed = state != store.NodeOnline || !serving
	// The last apply error stays in status_message while the failure lasts.
	if stillFailing := b.Status == openapi.Ack && n.ApplyFailingSince != nil && b.Revision < n.ApplyFailingRevision; !stillFailing {
		w.StatusMessage = deref(b.Message)
	}
	if b.Status == openapi.Ack && b.Revision > n.AppliedRevision {
		w.AppliedRevision = b.Revision
		w.Changed = true
	}
	// A nack starts (or continues) a failure; an ack of the failed revision
	// or a newer one ends it. Acks of an older revision (the agent's
	// periodic reports of what it still serves) do not.
	switch {
	case b.Status == openapi.Nack:
		since := now
		if n.ApplyFailingSince != nil {
			since = *n.ApplyFailingSince
		}
		w.ApplyFailingSince, w.ApplyFailingRevision = &since, max(n.ApplyFailingRevision, b.Revision)
		w.Changed = true
	case n.ApplyFailingSince != nil && b.Revision >= n.ApplyFailingRevision:
		w.ApplyFailingSince, w.ApplyFailingRevision = nil, 0
		w.Changed = true
	}
	if b.Vips != nil {
		w.VIPs = *b.Vips
	}
	if nodeErrs != nil && !sameNodeErrors(n.Errors, nodeErrs) {
		w.Errors = store.NodeErrorsSince(n.Errors, nodeErrs, now)
		w.Changed = true
	}
	if b.LoadBalancerErrors != nil {
		w.ReplaceLBErrors, w.LBErrors = true, lbErrs
	}
	return w
}

// sameNodeErrors says whether a report's node errors are those stored
// (kinds and messages, in order).
func sameNodeErrors(stored, reported []store.NodeError) bool {
	if len(stored) != len(reported) {
		return false
	}
	for i := range stored {
		if stored[i].Kind != reported[i].Kind || stored[i].Message != reported[i].Message {
			return false
		}
	}
	return true
}
