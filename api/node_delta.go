package api

import (
	"strconv"
	"strings"

	"github.com/fulcrumlb/fulcrum/api/problem"
	"github.com/fulcrumlb/fulcrum/api/snapshot"
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

// snapshotAnswer answers req with node's snapshot ns: the shared, cached
// bytes of the whole group (format 1, no delta asked, or one that cannot be
// proven: deletes purged since the agent's revision, or every load balancer
// changed), or a delta from the agent's revision, whose shared part is
// encoded once per (group revision, agent's revision) (NodeSnapshot.EncodeFor).
func snapshotAnswer(ns *snapshot.NodeSnapshot, req snapshot.Request, gz bool) (openapi.GetNodeSnapshotResponseObject, error) {
	head, body, err := ns.EncodeFor(req, gz)
	if err != nil {
		return nil, err
	}
	return snapshotResponse{head: head, body: body, gzip: gz}, nil
}
