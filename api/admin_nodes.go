package api

import (
	"context"
	"errors"
	"time"

	"github.com/fulcrumlb/fulcrum/api/store"
	"github.com/fulcrumlb/fulcrum/api/validate"
	"github.com/fulcrumlb/fulcrum/openapi"
)

// nodeToAPI shows a node with its state derived with its group's settings.
func nodeToAPI(n *store.Node, g *store.NodeGroup) openapi.Node {
	status := store.NodeStateOf(n, g, time.Now())
	errs := make([]openapi.NodeError, 0, len(n.Errors))
	for _, e := range n.Errors {
		since := e.Since
		errs = append(errs, openapi.NodeError{Kind: openapi.NodeErrorKind(e.Kind), Message: e.Message, Since: &since})
	}
	var msg *string
	if n.StatusMessage != "" {
		msg = &n.StatusMessage
	}
	var agentVersion *string
	if n.AgentVersion != "" {
		agentVersion = &n.AgentVersion
	}
	vips := append([]string{}, n.VIPs...)
	hb := g.HeartbeatIntervalMs
	return openapi.Node{Id: n.ID, Name: n.Name, NodeGroupId: n.NodeGroupID, Description: n.Description, Labels: labelsOrEmpty(n.Labels),
		AppliedRevision: n.AppliedRevision, Status: openapi.NodeStatus(status), AdminState: openapi.NodeAdminState(adminState(n.AdminState)),
		StatusMessage: msg, Errors: &errs, AgentVersion: agentVersion, Vips: vips, HeartbeatIntervalMs: &hb,
		ApplyFailingSince: n.ApplyFailingSince, LastSeenAt: n.LastSeenAt, CreatedAt: n.CreatedAt, UpdatedAt: n.UpdatedAt, Version: n.Version}
}

// adminState is the API's name of a stored admin state.
func adminState(s string) string {
	if s == "" {
		return "in_service"
	}
	return s
}

// nodeGroupOf reads a node's group (for its lifecycle settings).
func nodeGroupOf(ctx context.Context, tx *store.Tx, n *store.Node) (*store.NodeGroup, error) {
	return store.Get[store.NodeGroup](ctx, tx, store.KindNodeGroup, "", n.NodeGroupID, false)
}

// nodesToAPI shows nodes, reading each group once.
func nodesToAPI(ctx context.Context, h *handlers, nodes []*store.Node) ([]openapi.Node, error) {
	out := make([]openapi.Node, 0, len(nodes))
	groups := map[string]*store.NodeGroup{}
	err := h.st.Read(ctx, func(tx *store.Tx) error {
		for i := range nodes {
			g, ok := groups[nodes[i].NodeGroupID]
			if !ok {
				var err error
				if g, err = nodeGroupOf(ctx, tx, nodes[i]); err != nil {
					return err
				}
				groups[nodes[i].NodeGroupID] = g
			}
			out = append(out, nodeToAPI(nodes[i], g))
		}
		return nil
	})
	return out, err
}

func (h *handlers) ListNodes(ctx context.Context, r openapi.ListNodesRequestObject) (openapi.ListNodesResponseObject, error) {
	if _, err := requireAdmin(ctx); err != nil {
		return nil, err
	}
	lq := listQuery(r.Params.Limit, r.Params.PageToken, r.Params.Name, r.Params.Label, store.Column{Name: "node_group_id", Value: r.Params.NodeGroupId})
	items, next, err := list[store.Node](ctx, h, store.KindNode, "", lq)
	if err != nil {
		return nil, err
	}
	out, err := nodesToAPI(ctx, h, items)
	if err != nil {
		return nil, err
	}
	return openapi.ListNodes200JSONResponse{Body: openapi.NodeList{Items: out, NextPageToken: next}}, nil
}

func (h *handlers) CreateNode(ctx context.Context, r openapi.CreateNodeRequestObject) (openapi.CreateNodeResponseObject, error) {
	if _, err := requireAdmin(ctx); err != nil {
		return nil, err
	}
	b := r.Body
	var e validate.Errors
	validate.Hostname(&e, "name", b.Name, false)
	validate.Description(&e, "description", deref(b.Description))
	validate.Labels(&e, "labels", deref(b.Labels))
	if err := e.Err(); err != nil {
		return nil, err
	}
	out, _, err := create(ctx, h, "POST /v1/nodes", r.Params.IdempotencyKey, r.Params.DryRun, b, func(tx *store.Tx) (openapi.Node, error) {
		g, err := store.Get[store.NodeGroup](ctx, tx, store.KindNodeGroup, "", b.NodeGroupId, true)
		if err != nil {
			return openapi.Node{}, asInvalidField(err, "node_group_id")
		}
		// Creating a deleted node's name again lets its agent register.
		if err := store.ClearNodeTombstone(ctx, tx, b.Name); err != nil {
			return openapi.Node{}, err
		}
		rev, err := tx.Revision(ctx)
		if err != nil {
			return openapi.Node{}, err
		}
		// A new node has applied nothing yet: start it at the current revision
		// floor so it does not hold back deletes it never served.
		n, err := store.Insert[store.Node](ctx, tx, store.KindNode, []store.Column{
			{Name: "id", Value: store.NewID(store.KindNode.Prefix)}, {Name: "name", Value: b.Name}, {Name: "node_group_id", Value: b.NodeGroupId},
			{Name: "description", Value: deref(b.Description)}, {Name: "labels", Value: labelsOrEmpty(deref(b.Labels))}, {Name: "revision", Value: rev},
			{Name: "applied_revision", Value: rev}})
		if err != nil {
			return openapi.Node{}, err
		}
		if err := peersMoved(ctx, tx, g.ID, true, "", ""); err != nil { // peers.go: the group's VRRP nodes
			return openapi.Node{}, err
		}
		return nodeToAPI(n, g), nil
	})
	if err != nil {
		return nil, err
	}
	if isTrue(r.Params.DryRun) {
		return openapi.CreateNode200JSONResponse{Body: out}, nil
	}
	return openapi.CreateNode201JSONResponse{Body: out, Headers: openapi.CreateNode201ResponseHeaders{ETag: etag(out.Version)}}, nil
}

// nodeID resolves a node's name to its id (nodes are addressed by either).
// A name no node has resolves to itself, so the caller's read answers 404
// for it; a failed lookup is an error, never a 404.
func (h *handlers) nodeID(ctx context.Context, idOrName string) (string, error) {
	var id string
	err := h.st.Read(ctx, func(tx *store.Tx) error {
		n, err := store.NodeGetByName(ctx, tx, idOrName, false)
		if err != nil {
			return err
		}
		id = n.ID
		return nil
	})
	if errors.Is(err, store.ErrNotFound) {
		return idOrName, nil
	}
	return id, err
}

func (h *handlers) GetNode(ctx context.Context, r openapi.GetNodeRequestObject) (openapi.GetNodeResponseObject, error) {
	if _, err := requireAdmin(ctx); err != nil {
		return nil, err
	}
	id, err := h.nodeID(ctx, r.Id)
	if err != nil {
		return nil, err
	}
	n, err := get[store.Node](ctx, h, store.KindNode, "", id)
	if err != nil {
		return nil, err
	}
	out, err := nodesToAPI(ctx, h, []*store.Node{&n})
	if err != nil {
		return nil, err
	}
	return openapi.GetNode200JSONResponse{Body: out[0], Headers: openapi.GetNode200ResponseHeaders{ETag: etag(n.Version)}}, nil
}

func (h *handlers) UpdateNode(ctx context.Context, r openapi.UpdateNodeRequestObject) (openapi.UpdateNodeResponseObject, error) {
	if _, err := requireAdmin(ctx); err != nil {
		return nil, err
	}
	b := r.Body
	id, err := h.nodeID(ctx, r.Id)
	if err != nil {
		return nil, err
	}
	out, err := update(ctx, h, store.KindNode, "", id, r.Params.IfMatch, r.Params.DryRun, func(tx *store.Tx, n *store.Node) (openapi.Node, error) {
		if b.Description != nil {
			n.Description = *b.Description
		}
		if b.Labels != nil {
			n.Labels = *b.Labels
		}
		var e validate.Errors
		validate.Description(&e, "description", n.Description)
		validate.Labels(&e, "labels", n.Labels)
		if err := e.Err(); err != nil {
			return openapi.Node{}, err
		}
		row, err := store.Update[store.Node](ctx, tx, store.KindNode, "", n.ID, []store.Column{
			{Name: "description", Value: n.Description}, {Name: "labels", Value: labelsOrEmpty(n.Labels)}})
		if err != nil {
			return openapi.Node{}, err
		}
		g, err := nodeGroupOf(ctx, tx, row)
		if err != nil {
			return openapi.Node{}, err
		}
		return nodeToAPI(row, g), nil
	})
	if err != nil {
		return nil, err
	}
	return openapi.UpdateNode200JSONResponse{Body: out, Headers: openapi.UpdateNode200ResponseHeaders{ETag: etag(out.Version)}}, nil
}

func (h *handlers) DeleteNode(ctx context.Context, r openapi.DeleteNodeRequestObject) (openapi.DeleteNodeResponseObject, error) {
	if _, err := requireAdmin(ctx); err != nil {
		return nil, err
	}
	var nodeID string
	err := h.st.Write(ctx, false, func(tx *store.Tx) error {
		n, err := store.NodeGetByName(ctx, tx, r.Id, true)
		if err != nil {
			return err
		}
		nodeID = n.ID
		if err := checkIfMatch(r.Params.IfMatch, n.Version); err != nil {
			return err
		}
		// Tokens bound to the node go with it (ON DELETE CASCADE); the
		// tombstone stops a group token registering the name again.
		if err := store.HardDelete(ctx, tx, store.KindNode, "", n.ID); err != nil {
			return err
		}
		if err := store.TombstoneNode(ctx, tx, n); err != nil {
			return err
		}
		if err := peersMoved(ctx, tx, n.NodeGroupID, true, n.PeerAddress, ""); err != nil { // peers.go
			return err
		}
		// The node no longer holds back its group's changes and deletes.
		return store.Rederive(ctx, tx, n.NodeGroupID)
	})
	if err != nil {
		return nil, err
	}
	h.auth.ForgetNode(nodeID) // its tokens went with it
	return openapi.DeleteNode204Response{}, nil
}

func joinIDs(ids []string) string {
	out := ""
	for i, id := range ids {
		if i > 0 {
			out += ", "
		}
		out += id
	}
	return out
}
