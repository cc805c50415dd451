package api

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/fulcrumlb/fulcrum/api/problem"
	"github.com/fulcrumlb/fulcrum/api/snapshot"
	"github.com/fulcrumlb/fulcrum/api/store"
	"github.com/fulcrumlb/fulcrum/openapi"
)

// The versioned snapshot protocol (issue 10): an agent announces the format
// it understands in the Fulcrum-Agent-Format header (none: format 1, full
// snapshots only) and, from format 2, asks for a delta with delta=true.
// GetNodeSnapshot (node_protocol.go) takes the node's complete snapshot from
// the cache; snapshotAnswer sends it whole or as a delta filtered from it
// (api/snapshot/delta.go).

// agentFormatHeader names the header an agent announces its format in.
const agentFormatHeader = "Fulcrum-Agent-Format"

// snapshotRequest reads what the agent asks for; a format this API does not
// serve, or a delta asked in format 1, is a 400 naming the field.
func snapshotRequest(p openapi.GetNodeSnapshotParams) (snapshot.Request, error) {
	req := snapshot.Request{After: deref(p.After), Format: snapshot.FormatFull, Delta: deref(p.Delta)}
	if p.FulcrumAgentFormat != nil {
		v := strings.TrimSpace(*p.FulcrumAgentFormat)
		f, err := strconv.Atoi(v)
		if err != nil || f < snapshot.FormatMin || f > snapshot.FormatMax {
			return req, problem.BadRequest(agentFormatHeader, "must be a snapshot format this API serves (%d to %d), not %q: upgrade the API replicas before the agents (deploy/UPGRADE.md)",
				snapshot.FormatMin, snapshot.FormatMax, v)
		}
		req.Format = f
	}
	if req.Delta && req.Format < snapshot.FormatDelta {
		return req, problem.BadRequest("delta", "needs %s %d or newer", agentFormatHeader, snapshot.FormatDelta)
	}
	return req, nil
}

// deltaBase is what the database says of the deletes since the agent's
// revision, read in the poll's transaction when the agent asked for a delta.
type deltaBase struct {
	asked   bool
	purged  int64    // the newest delete forgotten (purged) in the group
	deleted []string // the load balancers deleted since req.After
}

// readDeltaBase reads, in tx, what a delta after req.After needs.
func readDeltaBase(ctx context.Context, tx *store.Tx, groupID string, req snapshot.Request) (deltaBase, error) {
	if !req.Delta || req.Format < snapshot.FormatDelta || req.After <= 0 {
		return deltaBase{}, nil
	}
	purged, err := store.GroupPurgedRevision(ctx, tx, groupID)
	if err != nil {
		return deltaBase{}, err
	}
	if purged > req.After {
		return deltaBase{asked: true, purged: purged}, nil
	}
	deleted, err := store.LoadBalancersDeletedSince(ctx, tx, groupID, req.After)
	if err != nil {
		return deltaBase{}, fmt.Errorf("delta: %w", err)
	}
	return deltaBase{asked: true, purged: purged, deleted: deleted}, nil
}

// snapshotAnswer answers req with node's snapshot ns: the shared, cached
// bytes of the whole group (format 1, no delta asked, or one that cannot be
// proven: deletes purged since the agent's revision, or every load balancer
// changed), or a delta filtered from it (snapshot.Delta), encoded for this
// answer alone.
func snapshotAnswer(ns *snapshot.NodeSnapshot, req snapshot.Request, since deltaBase, gz bool) (openapi.GetNodeSnapshotResponseObject, error) {
	if since.asked && since.purged <= req.After && req.After < ns.Revision() {
		full := ns.Snapshot()
		d := snapshot.Delta(&full, req.After, since.deleted)
		if len(d.LoadBalancers) == 0 || len(d.LoadBalancers) < len(full.LoadBalancers) {
			d.FormatVersion = req.Format
			body, err := encodeSnapshot(d, gz)
			if err != nil {
				return nil, err
			}
			return snapshotResponse{body: body, gzip: gz}, nil
		}
	}
	head, body, err := ns.Encode(req.Format, gz)
	if err != nil {
		return nil, err
	}
	return snapshotResponse{head: head, body: body, gzip: gz}, nil
}

// encodeSnapshot is s as JSON, gzip-compressed when gz.
func encodeSnapshot(s *openapi.Snapshot, gz bool) ([]byte, error) {
	raw, err := json.Marshal(s)
	if err != nil {
		return nil, fmt.Errorf("encode snapshot: %w", err)
	}
	if !gz {
		return raw, nil
	}
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(raw); err != nil {
		return nil, fmt.Errorf("compress snapshot: %w", err)
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("compress snapshot: %w", err)
	}
	return buf.Bytes(), nil
}
