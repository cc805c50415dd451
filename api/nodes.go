package api

import (
	"context"
	"time"

	"github.com/fulcrumlb/fulcrum/api/store"
	"github.com/fulcrumlb/fulcrum/openapi"
)

// setNodeAdminState cordons, drains or returns a node to service (state ""),
// then re-derives its group's statuses: the node's counting changed. Setting
// the state a node already has changes nothing.
func (h *handlers) setNodeAdminState(ctx context.Context, id string, ifMatch *string, state string) (openapi.Node, error) {
	if _, err := requireAdmin(ctx); err != nil {
		return openapi.Node{}, err
	}
	var out openapi.Node
	err := h.st.Write(ctx, false, func(tx *store.Tx) error {
		n, err := store.NodeGetByName(ctx, tx, id, true)
		if err != nil {
			return err
		}
		if err := checkIfMatch(ifMatch, n.Version); err != nil {
			return err
		}
		if n.AdminState != state {
			if n, err = store.SetNodeAdminState(ctx, tx, n.ID, state); err != nil {
				return err
			}
			if err := store.Rederive(ctx, tx, n.NodeGroupID); err != nil {
				return err
			}
			h.log.Info("node admin state changed", "node", n.Name, "node_group_id", n.NodeGroupID, "admin_state", adminState(state))
		}
		g, err := nodeGroupOf(ctx, tx, n)
		if err != nil {
			return err
		}
		out = nodeToAPI(n, g)
		return nil
	})
	return out, err
}

func (h *handlers) DrainNode(ctx context.Context, r openapi.DrainNodeRequestObject) (openapi.DrainNodeResponseObject, error) {
	out, err := h.setNodeAdminState(ctx, r.Id, r.Params.IfMatch, store.NodeDraining)
	if err != nil {
		return nil, err
	}
	return openapi.DrainNode200JSONResponse{Body: out, Headers: openapi.DrainNode200ResponseHeaders{ETag: etag(out.Version)}}, nil
}

func (h *handlers) CordonNode(ctx context.Context, r openapi.CordonNodeRequestObject) (openapi.CordonNodeResponseObject, error) {
	out, err := h.setNodeAdminState(ctx, r.Id, r.Params.IfMatch, store.NodeCordoned)
	if err != nil {
		return nil, err
	}
	return openapi.CordonNode200JSONResponse{Body: out, Headers: openapi.CordonNode200ResponseHeaders{ETag: etag(out.Version)}}, nil
}

func (h *handlers) UncordonNode(ctx context.Context, r openapi.UncordonNodeRequestObject) (openapi.UncordonNodeResponseObject, error) {
	out, err := h.setNodeAdminState(ctx, r.Id, r.Params.IfMatch, "")
	if err != nil {
		return nil, err
	}
	return openapi.UncordonNode200JSONResponse{Body: out, Headers: openapi.UncordonNode200ResponseHeaders{ETag: etag(out.Version)}}, nil
}

// NodeJanitorInterval is how often an API replica looks for down nodes to
// clean up by default (one replica at a time does it).
const NodeJanitorInterval = 30 * time.Second

// nodeJanitor removes nodes down longer than their group's
// down_node_cleanup_after_ms, every Config.NodeJanitorInterval until ctx ends.
func (s *Server) nodeJanitor(ctx context.Context) {
	t := time.NewTicker(s.cfg.NodeJanitorInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		names, err := s.st.CleanupDownNodes(ctx)
		if err != nil && ctx.Err() == nil {
			s.log.Warn("clean up down nodes", "err", err)
		}
		if len(names) > 0 {
			s.log.Info("removed nodes down past their group's cleanup time", "nodes", names)
		}
	}
}
