package agent

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	snapconv "github.com/fulcrumlb/fulcrum/dataplane/snapshot"
	"github.com/fulcrumlb/fulcrum/openapi"
)

// Incremental snapshots and the versioned protocol (issue 10). The agent
// announces the newest snapshot format it understands (snapconv.FormatMax)
// in every poll and, when it holds the complete snapshot at the revision it
// asks after, asks for a delta: only the load balancers changed since, and
// the ids of those removed. It merges a delta into the complete snapshot it
// holds (snapconv.Merge) and applies the merged, complete result; Apply is
// unchanged. A delta that does not apply to what it holds makes the next poll
// ask for a complete snapshot (after=0). A snapshot of a format it does not
// know is not applied: the node keeps serving what it has and reports a
// snapshot_format error.

// deltaState is what the poll loop keeps for deltas; a.mu guards it.
type deltaState struct {
	// held is the newest complete snapshot received (applied or not): the
	// base the next delta merges into. Nil until the first one, in which
	// case the snapshot served (from disk after a restart) stands in.
	held *openapi.Snapshot
	// needFull makes the next poll ask for a complete snapshot from scratch.
	needFull bool
	// deltas and fulls count the snapshots received of each kind.
	deltas, fulls int64
}

// SnapshotsReceived counts the snapshots the agent received since it
// started: deltas (merged into what it held) and complete ones.
func (a *Agent) SnapshotsReceived() (deltas, fulls int64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.delta.deltas, a.delta.fulls
}

// pollParams are the next poll's parameters, asking after revision after.
func (a *Agent) pollParams(after int64, wait string) *openapi.GetNodeSnapshotParams {
	format := strconv.Itoa(snapconv.FormatMax)
	p := &openapi.GetNodeSnapshotParams{After: &after, Wait: &wait, FulcrumAgentFormat: &format}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.pollAckParamsLocked(p) // pollack.go
	after, delta := a.deltaAfterLocked(after)
	p.After = &after
	if delta {
		p.Delta = &delta
	}
	return p
}

// deltaAfterLocked is the revision to ask after, when the agent's newest is
// after, and whether to ask for a delta (polls and streams alike). a.mu held.
func (a *Agent) deltaAfterLocked(after int64) (int64, bool) {
	if a.delta.needFull {
		return 0, false
	}
	// A base from an API that sent no format 2 (one from before deltas)
	// asks for no delta: that API would not know the parameter.
	base := a.baseLocked()
	return after, base != nil && after > 0 && base.Revision == after && base.FormatVersion >= snapconv.FormatDelta
}

// baseLocked is the complete snapshot a delta merges into: the newest
// received, or the one served. One whose private keys did not all come back
// from disk cannot be a base. a.mu held.
func (a *Agent) baseLocked() *openapi.Snapshot {
	base := a.delta.held
	if base == nil {
		base = a.snap
	}
	if base == nil {
		return nil
	}
	for _, c := range base.Certificates {
		if c.PrivateKey == "" {
			return nil
		}
	}
	return base
}

// receive turns a snapshot the API sent into the complete snapshot to apply,
// or nil when there is none: a format the agent does not know (reported as a
// node error; what runs stays) or a delta it cannot merge (the next poll asks
// for a complete snapshot).
func (a *Agent) receive(ctx context.Context, snap *openapi.Snapshot) *openapi.Snapshot {
	a.mu.Lock()
	defer a.mu.Unlock()
	if snap.FormatVersion > snapconv.FormatMax {
		msg := fmt.Sprintf("the API sent snapshot revision %d in format %d; this agent understands formats up to %d and keeps serving revision %d: upgrade the agent",
			snap.Revision, snap.FormatVersion, snapconv.FormatMax, a.servedLocked())
		a.log.ErrorContext(ctx, "snapshot format not understood; serving what we have", "revision", snap.Revision,
			"format_version", snap.FormatVersion, "understood", snapconv.FormatMax)
		a.nodeErrors[openapi.SnapshotFormat] = msg
		a.failedRev = max(a.failedRev, snap.Revision) // not fetched again until a newer revision exists
		a.notifyReport()
		return nil
	}
	full, err := snapconv.Merge(a.baseLocked(), snap)
	if err != nil {
		a.delta.needFull = true
		if !errors.Is(err, snapconv.ErrNoBase) {
			a.log.ErrorContext(ctx, "merge snapshot delta; asking for a complete snapshot", "revision", snap.Revision, "err", err)
		} else {
			a.log.WarnContext(ctx, "snapshot delta does not apply; asking for a complete snapshot", "revision", snap.Revision, "err", err)
		}
		return nil
	}
	a.delta.held, a.delta.needFull = full, false
	if snapconv.IsDelta(snap) {
		a.delta.deltas++
	} else {
		a.delta.fulls++
	}
	delete(a.nodeErrors, openapi.SnapshotFormat)
	return full
}

// servedLocked is the revision served; a.mu held.
func (a *Agent) servedLocked() int64 {
	if a.snap == nil {
		return 0
	}
	return a.snap.Revision
}
