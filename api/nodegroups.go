package api

import (
	"context"
	"slices"
	"strings"

	"github.com/fulcrumlb/fulcrum/api/problem"
	"github.com/fulcrumlb/fulcrum/api/store"
	"github.com/fulcrumlb/fulcrum/api/validate"
	"github.com/fulcrumlb/fulcrum/openapi"
)

func nodeGroupToAPI(g *store.NodeGroup) openapi.NodeGroup {
	reserved := append([]int{}, g.ReservedPorts...)
	effective := store.EffectiveReservedPorts(g.ReservedPorts)
	hb, down, cleanup, grace := g.HeartbeatIntervalMs, g.DownTimeoutMs, g.DownNodeCleanupAfterMs, g.ApplyGraceMs
	return openapi.NodeGroup{Id: g.ID, Name: g.Name, Description: g.Description, Labels: labelsOrEmpty(g.Labels),
		VipRange: g.VIPRange.String(), ReservedPorts: &reserved, EffectiveReservedPorts: &effective,
		HeartbeatIntervalMs: &hb, DownTimeoutMs: &down, DownNodeCleanupAfterMs: &cleanup, ApplyGraceMs: &grace,
		CreatedAt: g.CreatedAt, UpdatedAt: g.UpdatedAt, Version: g.Version,
		VrrpInterface: &g.VRRPInterface, VrrpRouterIdMin: &g.VRRPRouterIDMin, VrrpRouterIdMax: &g.VRRPRouterIDMax, VrrpAdvertIntervalMs: &g.VRRPAdvertIntervalMS}
}

// vrrpSettings are a node group's VRRP fields as a create or update sends them.
type vrrpSettings struct {
	iface          *string
	idMin, idMax   *int
	advertInterval *int
}

// applyVRRP validates the VRRP fields given and sets them on g; it reports
// whether any was given.
func applyVRRP(e *validate.Errors, g *store.NodeGroup, v vrrpSettings) bool {
	if g.VRRPRouterIDMin == 0 {
		g.VRRPRouterIDMin, g.VRRPRouterIDMax, g.VRRPAdvertIntervalMS = openapi.NodeGroupVrrpRouterIdMinDefault, openapi.NodeGroupVrrpRouterIdMaxDefault, openapi.NodeGroupVrrpAdvertIntervalMsDefault
	}
	given := v.iface != nil || v.idMin != nil || v.idMax != nil || v.advertInterval != nil
	if v.iface != nil {
		g.VRRPInterface = *v.iface
	}
	if v.idMin != nil {
		g.VRRPRouterIDMin = *v.idMin
	}
	if v.idMax != nil {
		g.VRRPRouterIDMax = *v.idMax
	}
	if v.advertInterval != nil {
		g.VRRPAdvertIntervalMS = *v.advertInterval
	}
	if len(g.VRRPInterface) > openapi.NodeGroupVrrpInterfaceMaxLength || strings.ContainsFunc(g.VRRPInterface, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("_.:@-", r))
	}) {
		e.Add("vrrp_interface", "must be an interface name: at most 15 letters, digits or _.:@-")
	}
	if g.VRRPRouterIDMin < openapi.NodeGroupVrrpRouterIdMinMin || g.VRRPRouterIDMin > openapi.NodeGroupVrrpRouterIdMinMax {
		e.Add("vrrp_router_id_min", "must be from %d to %d", openapi.NodeGroupVrrpRouterIdMinMin, openapi.NodeGroupVrrpRouterIdMinMax)
	}
	if g.VRRPRouterIDMax < openapi.NodeGroupVrrpRouterIdMaxMin || g.VRRPRouterIDMax > openapi.NodeGroupVrrpRouterIdMaxMax {
		e.Add("vrrp_router_id_max", "must be from %d to %d", openapi.NodeGroupVrrpRouterIdMaxMin, openapi.NodeGroupVrrpRouterIdMaxMax)
	} else if g.VRRPRouterIDMax < g.VRRPRouterIDMin {
		e.Add("vrrp_router_id_max", "must not be below vrrp_router_id_min")
	}
	if g.VRRPAdvertIntervalMS < openapi.NodeGroupVrrpAdvertIntervalMsMin || g.VRRPAdvertIntervalMS > openapi.NodeGroupVrrpAdvertIntervalMsMax ||
		g.VRRPAdvertIntervalMS%openapi.NodeGroupVrrpAdvertIntervalMsMultipleOf != 0 {
		e.Add("vrrp_advert_interval_ms", "must be a multiple of %d from %d to %d", openapi.NodeGroupVrrpAdvertIntervalMsMultipleOf,
			openapi.NodeGroupVrrpAdvertIntervalMsMin, openapi.NodeGroupVrrpAdvertIntervalMsMax)
	}
	return given
}

func vrrpColumns(g *store.NodeGroup) []store.Column {
	return []store.Column{{Name: "vrrp_interface", Value: g.VRRPInterface}, {Name: "vrrp_router_id_min", Value: g.VRRPRouterIDMin},
		{Name: "vrrp_router_id_max", Value: g.VRRPRouterIDMax}, {Name: "vrrp_advert_interval_ms", Value: g.VRRPAdvertIntervalMS}}

}

// validateReservedPorts checks the operator's list (ports, each once) and
// sorts it.
func validateReservedPorts(e *validate.Errors, ports []int) []int {
	if len(ports) > openapi.NodeGroupReservedPortsMaxItems {
		e.Add("reserved_ports", "must list at most %d ports", openapi.NodeGroupReservedPortsMaxItems)
		return ports
	}
	seen := map[int]bool{}
	for i, p := range ports {
		f := validate.Index("reserved_ports", i)
		if !validate.Port(e, f, p) {
			continue
		}
		if seen[p] {
			e.Add(f, "lists port %d twice", p)
		}
		seen[p] = true
	}
	out := append([]int{}, ports...)
	slices.Sort(out)
	return out
}

// nodeTiming is the node lifecycle settings of a node group request.
type nodeTiming struct {
	HeartbeatIntervalMs, DownTimeoutMs, ApplyGraceMs *int
	DownNodeCleanupAfterMs                           *int64
}

// apply sets the fields the request names on g.
func (t nodeTiming) apply(g *store.NodeGroup) {
	if t.HeartbeatIntervalMs != nil {
		g.HeartbeatIntervalMs = *t.HeartbeatIntervalMs
	}
	if t.DownTimeoutMs != nil {
		g.DownTimeoutMs = *t.DownTimeoutMs
	}
	if t.ApplyGraceMs != nil {
		g.ApplyGraceMs = *t.ApplyGraceMs
	}
	if t.DownNodeCleanupAfterMs != nil {
		g.DownNodeCleanupAfterMs = *t.DownNodeCleanupAfterMs
	}
}

func validateNodeTiming(e *validate.Errors, g *store.NodeGroup) {
	validate.IntRange(e, "heartbeat_interval_ms", g.HeartbeatIntervalMs, openapi.NodeGroupHeartbeatIntervalMsMin, openapi.NodeGroupHeartbeatIntervalMsMax)
	validate.IntRange(e, "down_timeout_ms", g.DownTimeoutMs, openapi.NodeGroupDownTimeoutMsMin, openapi.NodeGroupDownTimeoutMsMax)
	validate.IntRange(e, "apply_grace_ms", g.ApplyGraceMs, openapi.NodeGroupApplyGraceMsMin, openapi.NodeGroupApplyGraceMsMax)
	if g.DownNodeCleanupAfterMs < openapi.NodeGroupDownNodeCleanupAfterMsMin || g.DownNodeCleanupAfterMs > openapi.NodeGroupDownNodeCleanupAfterMsMax {
		e.Add("down_node_cleanup_after_ms", "must be from %d to %d", openapi.NodeGroupDownNodeCleanupAfterMsMin, openapi.NodeGroupDownNodeCleanupAfterMsMax)
	}
	if g.DownTimeoutMs < 2*g.HeartbeatIntervalMs {
		e.Add("down_timeout_ms", "must be at least twice heartbeat_interval_ms (%d)", g.HeartbeatIntervalMs)
	}
	if int64(g.DownTimeoutMs) > g.DownNodeCleanupAfterMs {
		e.Add("down_node_cleanup_after_ms", "must be at least down_timeout_ms (%d)", g.DownTimeoutMs)
	}
}

func validateNodeGroup(e *validate.Errors, g *store.NodeGroup, vipRange string) {
	g.ReservedPorts = validateReservedPorts(e, g.ReservedPorts)
	validateNodeTiming(e, g)
	if g.Name == "" {
		e.Add("name", "is required")
	}
	validate.Name(e, "name", g.Name)
	validate.Description(e, "description", g.Description)
	validate.Labels(e, "labels", g.Labels)
	if p, ok := validate.CIDR(e, "vip_range", vipRange); ok {
		g.VIPRange = p
	}
}

func nodeGroupColumns(g *store.NodeGroup, rev int64) []store.Column {
	return []store.Column{{Name: "name", Value: g.Name}, {Name: "description", Value: g.Description},
		{Name: "labels", Value: labelsOrEmpty(g.Labels)}, {Name: "vip_range", Value: g.VIPRange}, {Name: "reserved_ports", Value: g.ReservedPorts},
		{Name: "heartbeat_interval_ms", Value: g.HeartbeatIntervalMs}, {Name: "down_timeout_ms", Value: g.DownTimeoutMs},
		{Name: "down_node_cleanup_after_ms", Value: g.DownNodeCleanupAfterMs}, {Name: "apply_grace_ms", Value: g.ApplyGraceMs},
		{Name: "revision", Value: rev}}
}

// nodeGroupReader admits admins and tenants (who choose a group for their LBs).
func nodeGroupReader(ctx context.Context) error {
	p, err := principal(ctx)
	if err != nil {
		return err
	}
	if p.Kind == store.TokenNode {
		return problem.Forbidden("This endpoint needs an admin or tenant token.")
	}
	return nil
}

func (h *handlers) ListNodeGroups(ctx context.Context, r openapi.ListNodeGroupsRequestObject) (openapi.ListNodeGroupsResponseObject, error) {
	if err := nodeGroupReader(ctx); err != nil {
		return nil, err
	}
	items, next, err := list[store.NodeGroup](ctx, h, store.KindNodeGroup, "", listQuery(r.Params.Limit, r.Params.PageToken, r.Params.Name, r.Params.Label))
	if err != nil {
		return nil, err
	}
	return openapi.ListNodeGroups200JSONResponse{Body: openapi.NodeGroupList{Items: mapSlice(items, nodeGroupToAPI), NextPageToken: next}}, nil
}

// CreateNodeGroupTx validates and inserts a node group; shared with `fulcrum admin`.
func CreateNodeGroupTx(ctx context.Context, tx *store.Tx, name, description string, labels map[string]string, vipRange string) (*store.NodeGroup, error) {
	return createNodeGroupTx(ctx, tx, name, description, labels, vipRange, nil, nodeTiming{})
}

// createNodeGroupTx is CreateNodeGroupTx with the operator's reserved ports
// and node lifecycle timing (defaults where not given).
func createNodeGroupTx(ctx context.Context, tx *store.Tx, name, description string, labels map[string]string, vipRange string, reservedPorts []int, timing nodeTiming) (*store.NodeGroup, error) {
	g := &store.NodeGroup{Name: name, Description: description, Labels: labels, ReservedPorts: reservedPorts,
		HeartbeatIntervalMs: store.DefaultHeartbeatIntervalMs, DownTimeoutMs: store.DefaultDownTimeoutMs,
		DownNodeCleanupAfterMs: store.DefaultDownNodeCleanupAfterMs, ApplyGraceMs: store.DefaultApplyGraceMs}
	timing.apply(g)
	var e validate.Errors
	validateNodeGroup(&e, g, vipRange)
	if err := e.Err(); err != nil {
		return nil, err
	}
	rev, err := tx.Revision(ctx)
	if err != nil {
		return nil, err
	}
	return store.Insert[store.NodeGroup](ctx, tx, store.KindNodeGroup,
		append(nodeGroupColumns(g, rev), store.Column{Name: "id", Value: store.NewID(store.KindNodeGroup.Prefix)}))
}

func (h *handlers) CreateNodeGroup(ctx context.Context, r openapi.CreateNodeGroupRequestObject) (openapi.CreateNodeGroupResponseObject, error) {
	if _, err := requireAdmin(ctx); err != nil {
		return nil, err
	}
	b := r.Body
	out, _, err := create(ctx, h, "POST /v1/node-groups", r.Params.IdempotencyKey, r.Params.DryRun, b, func(tx *store.Tx) (openapi.NodeGroup, error) {
		var e validate.Errors
		v := vrrpSettings{b.VrrpInterface, b.VrrpRouterIdMin, b.VrrpRouterIdMax, b.VrrpAdvertIntervalMs}
		if applyVRRP(&e, &store.NodeGroup{}, v); e.Err() != nil {
			return openapi.NodeGroup{}, e.Err()
		}
		g, err := createNodeGroupTx(ctx, tx, b.Name, deref(b.Description), deref(b.Labels), b.VipRange, deref(b.ReservedPorts),
			nodeTiming{b.HeartbeatIntervalMs, b.DownTimeoutMs, b.ApplyGraceMs, b.DownNodeCleanupAfterMs})
		if err != nil {
			return openapi.NodeGroup{}, err
		}
		if applyVRRP(&e, g, v) {
			if g, err = store.Update[store.NodeGroup](ctx, tx, store.KindNodeGroup, "", g.ID, vrrpColumns(g)); err != nil {
				return openapi.NodeGroup{}, err
			}
		}
		return nodeGroupToAPI(g), nil
	})
	if err != nil {
		return nil, err
	}
	if isTrue(r.Params.DryRun) {
		return openapi.CreateNodeGroup200JSONResponse{Body: out}, nil
	}
	return openapi.CreateNodeGroup201JSONResponse{Body: out, Headers: openapi.CreateNodeGroup201ResponseHeaders{ETag: etag(out.Version)}}, nil
}

func (h *handlers) GetNodeGroup(ctx context.Context, r openapi.GetNodeGroupRequestObject) (openapi.GetNodeGroupResponseObject, error) {
	if err := nodeGroupReader(ctx); err != nil {
		return nil, err
	}
	g, err := get[store.NodeGroup](ctx, h, store.KindNodeGroup, "", r.Id)
	if err != nil {
		return nil, err
	}
	return openapi.GetNodeGroup200JSONResponse{Body: nodeGroupToAPI(&g), Headers: openapi.GetNodeGroup200ResponseHeaders{ETag: etag(g.Version)}}, nil
}

func (h *handlers) UpdateNodeGroup(ctx context.Context, r openapi.UpdateNodeGroupRequestObject) (openapi.UpdateNodeGroupResponseObject, error) {
	if _, err := requireAdmin(ctx); err != nil {
		return nil, err
	}
	b := r.Body
	out, err := update(ctx, h, store.KindNodeGroup, "", r.Id, r.Params.IfMatch, r.Params.DryRun, func(tx *store.Tx, g *store.NodeGroup) (openapi.NodeGroup, error) {
		if b.Name != nil {
			g.Name = *b.Name
		}
		if b.Description != nil {
			g.Description = *b.Description
		}
		if b.Labels != nil {
			g.Labels = *b.Labels
		}
		nodeTiming{b.HeartbeatIntervalMs, b.DownTimeoutMs, b.ApplyGraceMs, b.DownNodeCleanupAfterMs}.apply(g)
		oldPorts := g.ReservedPorts
		if b.ReservedPorts != nil {
			g.ReservedPorts = *b.ReservedPorts
		}
		vipRange := g.VIPRange.String()
		if b.VipRange != nil {
			vipRange = *b.VipRange
		}
		var e validate.Errors
		validateNodeGroup(&e, g, vipRange)
		applyVRRP(&e, g, vrrpSettings{b.VrrpInterface, b.VrrpRouterIdMin, b.VrrpRouterIdMax, b.VrrpAdvertIntervalMs})
		if err := e.Err(); err != nil {
			return openapi.NodeGroup{}, err
		}
		// A range may change only to one that still holds every allocated VIP.
		outside, err := store.LoadBalancerListOutsideRange(ctx, tx, g.ID, g.VIPRange)
		if err != nil {
			return openapi.NodeGroup{}, err
		}
		if len(outside) > 0 {
			return openapi.NodeGroup{}, problem.Conflict("in-use", "The new range leaves out VIPs in use.",
				validate.FieldError{Field: "vip_range", Message: "does not contain the VIPs of " + joinIDs(outside)})
		}
		// Reserving a port a listener uses would put the two at odds:
		// refuse until the listener moves.
		var added []int
		for _, p := range g.ReservedPorts {
			if !slices.Contains(oldPorts, p) {
				added = append(added, p)
			}
		}
		using, err := store.ListenersOnPorts(ctx, tx, g.ID, added)
		if err != nil {
			return openapi.NodeGroup{}, err
		}
		if len(using) > 0 {
			return openapi.NodeGroup{}, problem.Conflict("in-use", "Listeners of the group use ports the new list reserves: "+joinIDs(using)+".",
				validate.FieldError{Field: "reserved_ports", Message: "includes ports used by " + joinIDs(using)})
		}
		rev, err := tx.Revision(ctx)
		if err != nil {
			return openapi.NodeGroup{}, err
		}
		row, err := store.Update[store.NodeGroup](ctx, tx, store.KindNodeGroup, "", g.ID, append(nodeGroupColumns(g, rev), vrrpColumns(g)...))
		if err != nil {
			return openapi.NodeGroup{}, err
		}
		return nodeGroupToAPI(row), nil
	})
	if err != nil {
		return nil, err
	}
	return openapi.UpdateNodeGroup200JSONResponse{Body: out, Headers: openapi.UpdateNodeGroup200ResponseHeaders{ETag: etag(out.Version)}}, nil
}

func (h *handlers) DeleteNodeGroup(ctx context.Context, r openapi.DeleteNodeGroupRequestObject) (openapi.DeleteNodeGroupResponseObject, error) {
	if _, err := requireAdmin(ctx); err != nil {
		return nil, err
	}
	if err := remove[store.NodeGroup](ctx, h, store.KindNodeGroup, "", r.Id, r.Params.IfMatch, false, nil); err != nil {
		return nil, err
	}
	return openapi.DeleteNodeGroup204Response{}, nil
}
