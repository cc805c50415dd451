package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/fulcrumlb/fulcrum/api/auth"
	"github.com/fulcrumlb/fulcrum/api/problem"
	"github.com/fulcrumlb/fulcrum/api/snapshot"
	"github.com/fulcrumlb/fulcrum/api/store"
	"github.com/fulcrumlb/fulcrum/api/validate"
	"github.com/fulcrumlb/fulcrum/internal/secretbox"
	"github.com/fulcrumlb/fulcrum/openapi"
)

// The node protocol: what a dataplane agent (dataplane/agent) calls.
// RegisterNode (PUT /v1/nodes/{id}) creates or refreshes its node;
// GetNodeSnapshot (GET /v1/nodes/{id}/snapshot) long-polls the snapshot,
// which api/snapshot builds; ReportNode (POST /v1/nodes/{id}/reports) takes
// what it applied, its errors, member health and counters (report.go).
// Operators' node endpoints (drain, cordon) are in nodes.go.

// Long-poll bounds.
const (
	SnapshotWaitDefault = 30 * time.Second
	SnapshotWaitMax     = 60 * time.Second
)

// nodeScope is what a caller of the agent endpoints may act as: "" for any.
type nodeScope struct{ groupID, nodeID string }

// nodeCaller admits node tokens (bound to their group, or to one node, when
// the token is) and admins.
func nodeCaller(ctx context.Context) (nodeScope, error) {
	p, err := principal(ctx)
	if err != nil {
		return nodeScope{}, err
	}
	return nodeCallerOf(p)
}

// nodeCallerOf is nodeCaller for principal p.
func nodeCallerOf(p auth.Principal) (nodeScope, error) {
	switch p.Kind {
	case store.TokenNode:
		return nodeScope{groupID: p.NodeGroupID, nodeID: p.NodeID}, nil
	case store.TokenAdmin:
		return nodeScope{}, nil
	}
	return nodeScope{}, problem.Forbidden("This endpoint is for dataplane agents: use a node token.")
}

// boundNodeName is the node a node token is bound to, "" when none.
func boundNodeName(ctx context.Context) string {
	if p, ok := auth.PrincipalFrom(ctx); ok && p.Kind == store.TokenNode {
		return p.NodeName
	}
	return ""
}

// nodeByName finds a node by name or id, within the token's group or node if
// bound. A node that does not exist (or is out of scope) is a 404, which the
// agent takes as "register again"; any other failure (the database down, the
// context ended) is returned as such, never as a 404.
func nodeByName(ctx context.Context, tx *store.Tx, name string, scope nodeScope, forUpdate bool) (*store.Node, error) {
	n, err := store.NodeGetByName(ctx, tx, name, forUpdate)
	missing := errors.Is(err, store.ErrNotFound)
	if err != nil && !missing {
		return nil, err
	}
	if err := nodeInScope(ctx, name, n, scope); err != nil {
		return nil, err
	}
	return n, nil
}

// nodeInScope checks that n, the node named (or whose id is) name, nil when
// there is none, is one the caller may act for: 403 for a token bound to
// another node, 404 for a node out of the token's scope or missing.
func nodeInScope(ctx context.Context, name string, n *store.Node, scope nodeScope) error {
	return nodeInScopeOf(boundNodeName(ctx), name, n, scope)
}

// nodeInScopeOf is nodeInScope for a token bound to node bound ("" for
// none).
func nodeInScopeOf(bound, name string, n *store.Node, scope nodeScope) error {
	missing := n == nil
	// A token bound to a node serves that node only, whether the others
	// exist or not.
	if bound != "" && name != bound && (missing || n.Name != bound) {
		return problem.Forbidden(fmt.Sprintf("This node token is bound to node %q.", bound))
	}
	if missing || (scope.groupID != "" && n.NodeGroupID != scope.groupID) || (scope.nodeID != "" && n.ID != scope.nodeID) {
		return problem.NotFound("node", name)
	}
	return nil
}

func (h *handlers) RegisterNode(ctx context.Context, r openapi.RegisterNodeRequestObject) (openapi.RegisterNodeResponseObject, error) {
	scope, err := nodeCaller(ctx)
	if err != nil {
		return nil, err
	}
	tokenGroup := scope.groupID
	b := r.Body
	peer, err := peerAddress(*b) // peers.go
	if err != nil {
		return nil, err
	}
	var out openapi.Node
	// Ordered within the group the node joins, when known up front.
	wscope := store.ScopeAll()
	if tokenGroup != "" {
		wscope = store.ScopeGroups(tokenGroup)
	} else if b.NodeGroupId != nil {
		wscope = store.ScopeGroups(*b.NodeGroupId)
	}
	err = h.st.WriteIn(ctx, false, wscope, func(tx *store.Tx) error {
		n, err := nodeByName(ctx, tx, r.Id, scope, true)
		if err == nil {
			row, err := store.RecordNodeHeartbeat(ctx, tx, n.ID, []store.Column{
				{Name: "last_seen_at", Value: time.Now()}, {Name: "status", Value: "online"}, {Name: "agent_version", Value: deref(b.AgentVersion)},
				{Name: "peer_address", Value: peer}})
			if err != nil {
				return err
			}
			if err := peersMoved(ctx, tx, n.NodeGroupID, false, n.PeerAddress, peer); err != nil { // peers.go
				return err
			}
			g, err := nodeGroupOf(ctx, tx, row)
			if err != nil {
				return err
			}
			out = nodeToAPI(row, g)
			return nil
		}
		var notFound *problem.Problem
		if !errors.As(err, &notFound) || notFound.Status != http.StatusNotFound {
			return err
		}
		if scope.nodeID != "" {
			// A token bound to a node acts as that node only.
			return err
		}
		// An admin deleted this node: its agent may not bring it back.
		if at, err := store.NodeTombstone(ctx, tx, r.Id); err != nil {
			return err
		} else if at != nil {
			return problem.Conflict("node-deleted", "Node "+r.Id+" was deleted by an admin at "+at.UTC().Format(time.RFC3339)+
				"; it cannot register again until an admin creates it (POST /v1/nodes).",
				validate.FieldError{Field: "id", Message: "names a deleted node"})
		}
		var e validate.Errors
		validate.Hostname(&e, "id", r.Id, false)
		validate.Text(&e, "agent_version", deref(b.AgentVersion), 64)
		if err := e.Err(); err != nil {
			return err
		}
		group := tokenGroup
		if b.NodeGroupId != nil {
			if tokenGroup != "" && *b.NodeGroupId != tokenGroup {
				return problem.InvalidField("node_group_id", "is not the node token's group")
			}
			group = *b.NodeGroupId
		}
		if group == "" {
			return problem.InvalidField("node_group_id", "is required: the node token is not bound to a node group")
		}
		g, err := store.Get[store.NodeGroup](ctx, tx, store.KindNodeGroup, "", group, false)
		if err != nil {
			return problem.InvalidField("node_group_id", "does not exist")
		}
		rev, err := tx.Revision(ctx)
		if err != nil {
			return err
		}
		row, err := store.Insert[store.Node](ctx, tx, store.KindNode, []store.Column{
			{Name: "id", Value: store.NewID(store.KindNode.Prefix)}, {Name: "name", Value: r.Id}, {Name: "node_group_id", Value: group},
			{Name: "labels", Value: map[string]string{}}, {Name: "revision", Value: rev}, {Name: "status", Value: "online"},
			{Name: "last_seen_at", Value: time.Now()}, {Name: "agent_version", Value: deref(b.AgentVersion)}, {Name: "peer_address", Value: peer}})
		if err != nil {
			return err
		}
		if err := peersMoved(ctx, tx, group, true, "", peer); err != nil {
			return err
		}
		out = nodeToAPI(row, g)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return openapi.RegisterNode200JSONResponse{Body: out, Headers: openapi.RegisterNode200ResponseHeaders{ETag: etag(out.Version)}}, nil
}

func (h *handlers) GetNodeSnapshot(ctx context.Context, r openapi.GetNodeSnapshotRequestObject) (openapi.GetNodeSnapshotResponseObject, error) {
	scope, err := nodeCaller(ctx)
	if err != nil {
		return nil, err
	}
	defer waitSnapshot(ctx)() // metrics.go
	after := deref(r.Params.After)
	req, err := snapshotRequest(r.Params) // node_delta.go
	if err != nil {
		return nil, err
	}
	applied, acked, err := pollAck(r.Params) // node_delta.go
	if err != nil {
		return nil, err
	}
	wait := SnapshotWaitDefault
	if r.Params.Wait != nil {
		d, err := time.ParseDuration(*r.Params.Wait)
		if err != nil || d < 0 || d > SnapshotWaitMax {
			return nil, problem.BadRequest("wait", "must be a duration from 0s to %s", SnapshotWaitMax)
		}
		wait = d
	}
	if acked {
		h.recordPollAck(ctx, r.Id, scope, applied)
	}
	gz := acceptsGzip(deref(r.Params.AcceptEncoding))
	timer := time.NewTimer(wait)
	defer timer.Stop()
	group := scope.groupID
	if group == "" {
		// A token not bound to a group: where the node was last seen, else
		// learnt from the database at the first turn.
		group = h.views.GroupOf(r.Id)
	}
	for {
		// The node and its group's revision come from the group's poll view
		// (one read per (group, wake-up), shared by the group's pollers);
		// the group's part from the cache (built once per revision).
		poll, mark, refresh, err := h.readPoll(ctx, r.Id, scope, group, wait > 0)
		if err != nil {
			return nil, err
		}
		group = poll.GroupID()
		rctx, cancel := context.WithTimeout(ctx, h.requestTimeout)
		snap, err := h.snapcache.ForNode(rctx, poll, after)
		cancel()
		if err != nil {
			return nil, err
		}
		if snap != nil {
			return snapshotAnswer(snap, req, gz) // node_delta.go
		}
		stale := time.NewTimer(time.Until(refresh))
		select {
		case <-h.notify.ChangedSince(group, mark):
		case <-stale.C:
			// Read again even without a wake-up: a missed notification
			// costs at most the view's age.
		case <-timer.C:
			stale.Stop()
			return notModified, nil
		case <-h.notify.Done():
			stale.Stop()
			return notModified, nil
		case <-ctx.Done():
			stale.Stop()
			return nil, ctx.Err()
		}
		stale.Stop()
	}
}

// protocolMax is the newest node protocol this API serves, as answered in
// the Fulcrum-Agent-Protocol header of every poll (node_delta.go).
var protocolMax = strconv.Itoa(ProtocolMax)

// notModified is GetNodeSnapshot's 304.
var notModified = openapi.GetNodeSnapshot304Response{Headers: openapi.GetNodeSnapshot304ResponseHeaders{FulcrumAgentProtocol: &protocolMax}}

// recordPollAck records the acknowledgement a poll of node name carries,
// exactly as a report acknowledging revision applied with no load balancer
// errors and no node errors (takeReport: the same batching, the same
// derivation of statuses). The poll does not wait for it: a poll that finds
// a newer revision is answered at once, not after the acknowledgement's
// batch commits. Nothing is lost by not waiting: the agent's next report
// (its heartbeat, every heartbeat interval) carries the revision it serves
// and records the same acknowledgement, so one that fails here (the
// database away, the replica stopping) is repaired within a heartbeat; and
// acknowledgements only ever raise a node's applied revision, so one written
// late cannot undo a newer report.
func (h *handlers) recordPollAck(ctx context.Context, name string, scope nodeScope, applied int64) {
	countReport(ctx, "poll_ack")                          // metrics.go
	h.recordAck(name, scope, boundNodeName(ctx), applied) // ackbatch.go
}

// readPoll reads what a turn of node name's long-poll needs besides its
// group's snapshot part, and the notifier mark to wait from and when to read
// again without a wake-up. With groupID known (the token's group, or learnt
// at an earlier turn) it reads the group's shared poll view, memory only
// while it is fresh; a node the view does not show (registered a moment ago,
// moved to another group, or out of the token's scope) and a token not bound
// to a group take the database, as every turn did before: a node that does
// not exist or is out of scope is a 404, a failing database an error.
//
// A view may miss a write whose notification is still on its way (it wakes
// the poller a moment later): a long-poll never answers before that, but a
// request that does not wait (wait=0s, !useView) reads the database, so it
// sees every write committed before it.
func (h *handlers) readPoll(ctx context.Context, name string, scope nodeScope, groupID string, useView bool) (snapshot.Poll, uint64, time.Time, error) {
	rctx, cancel := context.WithTimeout(ctx, h.requestTimeout)
	defer cancel()
	if groupID != "" && useView {
		v, err := h.views.Get(rctx, groupID)
		if err != nil {
			return snapshot.Poll{}, 0, time.Time{}, err
		}
		if n, ok := v.Node(name); ok && viewNodeInScope(name, boundNodeName(ctx), n, scope) {
			return v.Poll(n), v.Mark(), v.Expires(), nil
		}
	}
	mark := h.notify.Mark()
	refresh := time.Now().Add(snapshot.ViewMaxAgeDefault)
	var poll snapshot.Poll
	err := h.st.ReadSnapshot(rctx, func(tx *store.Tx) error {
		n, err := nodeByName(rctx, tx, name, scope, false)
		if err != nil {
			return err
		}
		poll, err = snapshot.ReadPoll(rctx, tx, n)
		return err
	})
	return poll, mark, refresh, err
}

// viewNodeInScope says whether node n of a poll view, found by name, is one
// a caller with scope and a token bound to node bound ("" for none) may
// act for (as nodeInScope; anything else takes the database).
func viewNodeInScope(name, bound string, n *store.PollNode, scope nodeScope) bool {
	return (bound == "" || name == bound || n.Name == bound) && (scope.nodeID == "" || n.ID == scope.nodeID) &&
		(scope.groupID == "" || n.NodeGroupID == scope.groupID)
}

// snapshotResponse is a 200 of GetNodeSnapshot sent as encoded: the node's
// part (head) and its group's shared bytes (body), as snapshot.NodeSnapshot
// encodes them, gzip-compressed when gzip.
type snapshotResponse struct {
	head, body []byte
	gzip       bool
}

func (r snapshotResponse) VisitGetNodeSnapshotResponse(w http.ResponseWriter) error {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Vary", "Accept-Encoding")
	h.Set(agentProtocolHeader, protocolMax)
	if r.gzip {
		h.Set("Content-Encoding", "gzip")
	}
	h.Set("Content-Length", strconv.Itoa(len(r.head)+len(r.body)))
	w.WriteHeader(http.StatusOK)
	if _, err := w.Write(r.head); err != nil {
		return err
	}
	_, err := w.Write(r.body)
	return err
}

// acceptsGzip says whether an Accept-Encoding header value accepts gzip: it
// names gzip (or x-gzip) with a non-zero q, or, not naming it, * with one.
func acceptsGzip(header string) bool {
	gzipQ, starQ := -1.0, -1.0
	for _, part := range strings.Split(header, ",") {
		coding, params, _ := strings.Cut(part, ";")
		q := 1.0
		for _, p := range strings.Split(params, ";") {
			if k, v, ok := strings.Cut(p, "="); ok && strings.EqualFold(strings.TrimSpace(k), "q") {
				if f, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err == nil {
					q = f
				}
			}
		}
		switch strings.ToLower(strings.TrimSpace(coding)) {
		case "gzip", "x-gzip":
			gzipQ = max(gzipQ, q)
		case "*":
			starQ = max(starQ, q)
		}
	}
	if gzipQ >= 0 {
		return gzipQ > 0
	}
	return starQ > 0
}

// newSnapshotBuilder builds snapshots showing objects as the API does and
// opening certificates' keys with box.
func newSnapshotBuilder(box *secretbox.Box) *snapshot.Builder {
	return snapshot.NewBuilder(snapshot.Shapes{LoadBalancer: lbToAPI, Listener: listenerToAPI, Pool: poolToAPI, Member: memberToAPI, RoutingRule: ruleToAPI},
		func(c *store.Certificate) ([]byte, error) { return PrivateKey(box, c) })
}
