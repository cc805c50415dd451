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

// The node protocol's version (issue 10), apart from the snapshot format: an
// agent announces the protocol it speaks in the Fulcrum-Agent-Protocol header
// (none: protocol 1, every apply acknowledged by a report). From protocol 2 a
// poll may carry the acknowledgement of the revision the agent applied
// cleanly (applied=), as a delta xDS request carries the version it applied,
// which saves the fleet one request per node and write: the woken poll, the
// next poll carrying the ack, instead of the woken poll, the next poll and a
// report. The API answers every poll with the newest protocol it serves in
// the same header, so an agent folds its acks into polls only once the API
// said it records them (an older API ignores the parameter).
const (
	agentProtocolHeader = "Fulcrum-Agent-Protocol"
	// ProtocolReports: acknowledgements by report only.
	ProtocolReports = 1
	// ProtocolPollAcks: polls carry acknowledgements (applied=).
	ProtocolPollAcks = 2
	// ProtocolMax is the newest protocol this API serves: 3 streams
	// (node_stream.go).
	ProtocolMax = ProtocolStream
)

// pollAck is the acknowledgement a poll carries, if any: the revision the
// node applied cleanly. A protocol this API does not serve, or applied sent
// with protocol 1, is a 400 naming the header or parameter.
func pollAck(p openapi.GetNodeSnapshotParams) (applied int64, ok bool, err error) {
	proto := ProtocolReports
	if p.FulcrumAgentProtocol != nil {
		v := strings.TrimSpace(*p.FulcrumAgentProtocol)
		f, err := strconv.Atoi(v)
		if err != nil || f < ProtocolReports || f > ProtocolMax {
			return 0, false, problem.BadRequest(agentProtocolHeader, "must be a node protocol this API serves (%d to %d), not %q: upgrade the API replicas before the agents (deploy/UPGRADE.md)",
				ProtocolReports, ProtocolMax, v)
		}
		proto = f
	}
	if p.Applied == nil {
		return 0, false, nil
	}
	if proto < ProtocolPollAcks {
		return 0, false, problem.BadRequest("applied", "needs %s %d or newer", agentProtocolHeader, ProtocolPollAcks)
	}
	if *p.Applied < 0 {
		return 0, false, problem.BadRequest("applied", "must be a revision (0 or more)")
	}
	return *p.Applied, true, nil
}
