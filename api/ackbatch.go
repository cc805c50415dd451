package api

import (
	"context"
	"slices"
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

// addAcks records the acknowledgements read together (ackReader), received
// at at, under one lock: as addAck each.
func (w *reportWriter) addAcks(items []ackItem, at time.Time) {
	w.mu.Lock()
	for _, it := range items {
		p, ok := w.acks[it.key]
		if !ok || it.applied > p.applied {
			w.acks[it.key] = ackPending{applied: it.applied, at: at}
		}
	}
	w.mu.Unlock()
	select {
	case w.ackReady <- struct{}{}:
	default:
	}
}

// fastAck is an acknowledgement of a node the writer knows plain (its
// cached row: no node errors, no failing apply, no load balancer errors,
// surely up), written without reading its row back (store.WriteAcks).
type fastAck struct {
	key     ackKey
	nodeID  string
	groupID string
	applied int64
	at      time.Time
}

// ackFastMax bounds the acknowledgements of one WriteAcks statement.
const ackFastMax = 4096

// takeAcks takes the pending acknowledgements: those of nodes known plain
// that change nothing but last_seen_at are acknowledged as such heartbeats
// (touch); the others of nodes known plain (up to ackFastMax) are returned
// as fast, to be written by writeAcks; the rest (up to room) as jobs, as
// takeReport makes of the same report. What is left wakes the lane again.
func (w *reportWriter) takeAcks(room int) (jobs []*reportJob, fast []fastAck) {
	if w.ackJob == nil {
		return nil, nil
	}
	if n := w.streamAcks.Swap(0); n > 0 {
		nodeReports.Add(context.Background(), n, reportStatusOpts["poll_ack"]) // metrics.go
	}
	w.mu.Lock()
	type taken struct {
		key ackKey
		p   ackPending
	}
	var slow []taken
	// The lane's buffer (writeAcks keeps nothing of it): a write fanned
	// out to 1,000 nodes brings 1,000 acknowledgements.
	fast = w.fastBuf[:0]
	for k, p := range w.acks {
		if len(slow) >= room && len(fast) >= ackFastMax {
			break
		}
		if n := w.nodes[k.name]; n != nil && !p.at.After(n.until) && n.noLBErrors && n.node.ApplyFailingSince == nil &&
			nodeInScopeOf(k.bound, k.name, &n.node, k.scope) == nil {
			if n.node.AppliedRevision >= p.applied && n.node.StatusMessage == "" {
				// Nothing but last_seen_at: a heartbeat acknowledged
				// without a batch (ReportNode's shortcut).
				w.acked.Add(1)
				w.seen[n.node.ID] = p.at
				delete(w.acks, k)
				continue
			}
			if len(fast) < ackFastMax {
				fast = append(fast, fastAck{key: k, nodeID: n.node.ID, groupID: n.node.NodeGroupID, applied: p.applied, at: p.at})
				delete(w.acks, k)
			}
			continue
		}
		if len(slow) < room {
			slow = append(slow, taken{k, p})
			delete(w.acks, k)
		}
	}
	left := len(w.acks) > 0
	w.mu.Unlock()
	w.fastBuf = fast[:0]
	if left {
		select {
		case w.ackReady <- struct{}{}:
		default:
		}
	}
	jobs = make([]*reportJob, 0, len(slow))
	for _, t := range slow {
		if j := w.ackJob(t.key, t.p.applied, t.p.at); j != nil {
			jobs = append(jobs, j)
		}
	}
	return jobs, fast
}

// writeAcks writes the acknowledgements of nodes known plain in one
// statement (store.WriteAcks) and marks their groups to derive, as the
// batch of the same reports would (each raised its node's applied
// revision). Those the store did not write (the node is no longer plain,
// moved or gone) are forgotten as plain and taken again as jobs; those of
// a failed statement are lost, as a failed batch's: each node's next
// heartbeat carries the revision it serves.
func (w *reportWriter) writeAcks(ctx context.Context, fast []fastAck) {
	items := w.ackItems[:0]
	for _, f := range fast {
		items = append(items, store.AckWrite{NodeID: f.nodeID, GroupID: f.groupID, Applied: f.applied, At: f.at})
	}
	w.ackItems = items[:0]
	bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), reportBatchTimeout)
	t0 := time.Now()
	missed, err := w.st.WriteAcks(bctx, items)
	took := time.Since(t0)
	cancel()
	if took > reportBatchSlow {
		w.log.Info("slow batch of acknowledgements", "acks", len(items), "took", took)
	}
	w.batches.Add(1)
	w.written.Add(int64(len(items)))
	reportBatches.Add(ctx, 1)
	if err != nil && ctx.Err() == nil {
		w.log.Warn("write acknowledgements", "acks", len(items), "err", err)
	}
	var miss map[string]bool // usually none
	if len(missed) > 0 {
		miss = make(map[string]bool, len(missed))
		for _, id := range missed {
			miss[id] = true
		}
	}
	var groups []string // usually one
	again := false
	w.mu.Lock()
	for _, f := range fast {
		n := w.nodes[f.key.name]
		if err != nil || miss[f.nodeID] {
			if n != nil && n.node.ID == f.nodeID {
				delete(w.nodes, f.key.name)
			}
			if err == nil {
				// Taken again as a job, which reads the node's row.
				if p, ok := w.acks[f.key]; !ok || p.applied < f.applied {
					w.acks[f.key] = ackPending{applied: f.applied, at: f.at}
				}
				again = true
			}
			continue
		}
		if len(groups) == 0 || groups[len(groups)-1] != f.groupID {
			groups = append(groups, f.groupID)
		}
		if n == nil || n.node.ID != f.nodeID {
			continue
		}
		n.node.AppliedRevision = max(n.node.AppliedRevision, f.applied)
		n.node.StatusMessage = ""
		if n.node.LastSeenAt == nil || f.at.After(*n.node.LastSeenAt) {
			at := f.at
			n.node.LastSeenAt = &at
		}
		if until := f.at.Add(n.downTimeout / 2); until.After(n.until) {
			n.until = until
		}
	}
	w.mu.Unlock()
	if again {
		select {
		case w.ackReady <- struct{}{}:
		default:
		}
	}
	slices.Sort(groups)
	groups = slices.Compact(groups)
	if w.ackMarked != nil {
		for _, g := range groups {
			w.ackMarked(g)
		}
	}
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
