package api

import (
	"time"

	"github.com/fulcrumlb/fulcrum/api/store"
	"github.com/fulcrumlb/fulcrum/openapi"
)

// Acknowledgements carried by polls and streams (issue 10) go straight into
// the light lane's next batch of the report writer: no goroutine, context
// or wait per acknowledgement. Only the highest revision a node acknowledged
// since its last batch matters (a report acknowledging a revision only ever
// raises the node's applied revision; decideReport), so those that arrive
// together coalesce into one entry per node. Each is recorded exactly as a
// report acknowledging that revision with no load balancer errors and no
// node errors (takeReport: the same decision, the same derivation), and one
// that fails (the database away, the replica stopping) is repaired by the
// node's next heartbeat, which carries the revision it serves.

// ackKey is a node's acknowledgements as one caller may make them: its
// name, the caller's scope and the node its token is bound to ("" for none).
type ackKey struct {
	name  string
	scope nodeScope
	bound string
}

// ackPending is the highest revision acknowledged for a key since the
// last batch took it.
type ackPending struct {
	applied int64
	at      time.Time
}

// addAck records that key acknowledged revision applied, for the light
// lane's next batch.
func (w *reportWriter) addAck(key ackKey, applied int64, at time.Time) {
	w.mu.Lock()
	p, ok := w.acks[key]
	if !ok || applied > p.applied {
		w.acks[key] = ackPending{applied: applied, at: at}
	}
	w.mu.Unlock()
	select {
	case w.ackReady <- struct{}{}:
	default:
	}
}

// takeAcks takes up to room pending acknowledgements as jobs (none for
// those that change nothing: see ackJob). What is left wakes the lane
// again.
func (w *reportWriter) takeAcks(room int) []*reportJob {
	if room <= 0 || w.ackJob == nil {
		return nil
	}
	w.mu.Lock()
	type taken struct {
		key ackKey
		p   ackPending
	}
	keys := make([]taken, 0, min(room, len(w.acks)))
	for k, p := range w.acks {
		if len(keys) == room {
			break
		}
		keys = append(keys, taken{k, p})
		delete(w.acks, k)
	}
	left := len(w.acks) > 0
	w.mu.Unlock()
	if left {
		select {
		case w.ackReady <- struct{}{}:
		default:
		}
	}
	jobs := make([]*reportJob, 0, len(keys))
	for _, t := range keys {
		if j := w.ackJob(t.key, t.p.applied, t.p.at); j != nil {
			jobs = append(jobs, j)
		}
	}
	return jobs
}

// ackReport is the report an acknowledgement of a poll or stream stands
// for: revision applied, no load balancer errors, no node errors.
func ackReport(applied int64) *openapi.NodeReport {
	noLB, noNode := []openapi.LoadBalancerError{}, []openapi.NodeError{}
	return &openapi.NodeReport{Revision: applied, Status: openapi.Ack, LoadBalancerErrors: &noLB, NodeErrors: &noNode}
}

// recordAck queues node name's acknowledgement of revision applied, made
// by a caller with scope and a token bound to node bound.
func (h *handlers) recordAck(name string, scope nodeScope, bound string, applied int64) {
	h.reportw.addAck(ackKey{name: name, scope: scope, bound: bound}, applied, time.Now())
}

// ackJob is the batch job of key's acknowledgement of revision applied
// (received at at), as takeReport makes of the same report; nil when it
// changes nothing but last_seen_at (acknowledged as such a heartbeat).
func (h *handlers) ackJob(key ackKey, applied int64, at time.Time) *reportJob {
	if n, noLBErrors, ok := h.reportw.cached(key.name, at); ok && noLBErrors && nodeInScopeOf(key.bound, key.name, &n, key.scope) == nil {
		if n.AppliedRevision >= applied && n.ApplyFailingSince == nil && n.StatusMessage == "" {
			h.reportw.touch(n.ID, at)
			h.deriver.reported(n.NodeGroupID, n.ID, false, nil)
			return nil
		}
	}
	b := ackReport(applied)
	return &reportJob{
		item: store.ReportItem{Key: key.name, Decide: func(n *store.Node, state string, serving bool) (*store.ReportWrite, error) {
			if err := nodeInScopeOf(key.bound, key.name, n, key.scope); err != nil {
				return nil, err
			}
			return decideReport(b, n, state, serving, []store.NodeError{}, nil, time.Now()), nil
		}},
		lbReplace: true,
		after: func(res store.ReportResult, err error) {
			if err == nil {
				err = res.Err
			}
			if err != nil {
				h.log.Debug("acknowledgement not recorded; the node's next report carries it", "node", key.name,
					"revision", applied, "err", err)
				return
			}
			h.deriver.reported(res.Node.NodeGroupID, res.Node.ID, res.Changed, nil)
		},
	}
}
