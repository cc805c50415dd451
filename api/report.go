package api

import (
	"context"
	"encoding/json"
	"net/netip"
	"time"

	"github.com/fulcrumlb/fulcrum/api/problem"
	"github.com/fulcrumlb/fulcrum/api/store"
	"github.com/fulcrumlb/fulcrum/api/validate"
	"github.com/fulcrumlb/fulcrum/openapi"
)

// ReportNode takes a node's report off the write path (issue 10): one short
// transaction, without the write lock and without a revision, writes what is
// the node's own (its row, its errors, its load balancer errors, the
// counters that changed, in one statement); the deriver (deriver.go) then
// derives its group's statuses when the report changed something they depend
// on. A heartbeat that changes nothing does only the first part.
func (h *handlers) ReportNode(ctx context.Context, r openapi.ReportNodeRequestObject) (openapi.ReportNodeResponseObject, error) {
	scope, err := nodeCaller(ctx)
	if err != nil {
		return nil, err
	}
	countReport(ctx, string(r.Body.Status)) // metrics.go
	b := r.Body
	if b.Vips != nil {
		for i, v := range *b.Vips {
			if _, err := netip.ParseAddr(v); err != nil {
				return nil, problem.InvalidField(validate.Index("vips", i), "must be an IP address")
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
	var (
		node    *store.Node
		changed bool
	)
	err = h.st.WriteReport(ctx, func(tx *store.Tx) error {
		changed = false
		n, err := nodeByName(ctx, tx, r.Id, scope, true)
		if err != nil {
			return err
		}
		node = n
		// A node that did not count (never reported, down, failing,
		// cordoned, draining) may count again: its group is derived.
		state, serving, err := store.NodeServing(ctx, tx, n.ID)
		if err != nil {
			return err
		}
		changed = state != store.NodeOnline || !serving
		now := time.Now()
		cols := []store.Column{{Name: "last_seen_at", Value: now}, {Name: "status", Value: "online"}}
		// The last apply error stays in status_message while the failure lasts.
		if stillFailing := b.Status == openapi.Ack && n.ApplyFailingSince != nil && b.Revision < n.ApplyFailingRevision; !stillFailing {
			cols = append(cols, store.Column{Name: "status_message", Value: deref(b.Message)})
		}
		if b.Status == openapi.Ack && b.Revision > n.AppliedRevision {
			cols = append(cols, store.Column{Name: "applied_revision", Value: b.Revision})
			changed = true
		}
		// A nack starts (or continues) a failure; an ack of the failed
		// revision or a newer one ends it. Acks of an older revision (the
		// agent's periodic reports of what it still serves) do not.
		switch {
		case b.Status == openapi.Nack:
			since := now
			if n.ApplyFailingSince != nil {
				since = *n.ApplyFailingSince
			}
			cols = append(cols, store.Column{Name: "apply_failing_since", Value: since},
				store.Column{Name: "apply_failing_revision", Value: max(n.ApplyFailingRevision, b.Revision)})
			changed = true
		case n.ApplyFailingSince != nil && b.Revision >= n.ApplyFailingRevision:
			cols = append(cols, store.Column{Name: "apply_failing_since", Value: nil}, store.Column{Name: "apply_failing_revision", Value: int64(0)})
			changed = true
		}
		if b.Vips != nil {
			cols = append(cols, store.Column{Name: "vips", Value: *b.Vips})
		}
		if _, err := store.RecordNodeHeartbeat(ctx, tx, n.ID, cols); err != nil {
			return err
		}
		if nodeErrs != nil && !sameNodeErrors(n.Errors, nodeErrs) {
			if _, err := store.ReplaceNodeErrors(ctx, tx, n, nodeErrs, now); err != nil {
				return err
			}
			changed = true
		}
		if b.LoadBalancerErrors != nil {
			c, err := store.NodeLBErrorsReplace(ctx, tx, n.ID, n.NodeGroupID, lbErrs)
			if err != nil {
				return err
			}
			changed = changed || c
		}
		return store.LoadBalancerStatsUpsertBatch(ctx, tx, n.ID, n.NodeGroupID, counters)
	})
	if err != nil {
		return nil, err
	}
	h.deriver.reported(node.NodeGroupID, node.ID, changed, members)
	return openapi.ReportNode204Response{}, nil
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
