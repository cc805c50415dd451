package api

import (
	"context"
	"encoding/json"

	"github.com/fulcrumlb/fulcrum/api/store"
	"github.com/fulcrumlb/fulcrum/openapi"
)

func statusEntry(m *store.Meta, s *store.Status) openapi.StatusEntry {
	return openapi.StatusEntry{Id: m.ID, Name: m.Name, ProvisioningStatus: openapi.ProvisioningStatus(s.ProvisioningStatus),
		OperatingStatus: openapi.OperatingStatus(s.OperatingStatus), StatusMessage: msgPtr(s.StatusMessage)}
}

func (h *handlers) GetLoadBalancerStatus(ctx context.Context, r openapi.GetLoadBalancerStatusRequestObject) (openapi.GetLoadBalancerStatusResponseObject, error) {
	tenant, err := tenantOf(ctx)
	if err != nil {
		return nil, err
	}
	var out openapi.LoadBalancerStatusTree
	err = h.st.Read(ctx, func(tx *store.Tx) error {
		lb, err := store.Get[store.LoadBalancer](ctx, tx, store.KindLoadBalancer, tenant, r.Id, false)
		if err != nil {
			return err
		}
		out.LoadBalancer = statusEntry(&lb.Meta, &lb.Status)
		// The nodes of the group not serving this load balancer's current
		// version: named (the tenant's LB is on that group), with statuses
		// and messages about this load balancer only.
		lagging, err := store.LaggingNodes(ctx, tx, lb.NodeGroupID, lb.ID)
		if err != nil {
			return err
		}
		out.Nodes = make([]openapi.StatusNode, 0, len(lagging))
		for _, n := range lagging {
			out.Nodes = append(out.Nodes, openapi.StatusNode{Name: n.Name, Status: openapi.StatusNodeStatus(n.Status), StatusMessage: msgPtr(n.StatusMessage)})
		}
		// Reports recompute the stored status; a node that stopped reporting
		// cannot, so a listed node degrades what reads online here too.
		if len(out.Nodes) > 0 && lb.DeletedRevision == nil && out.LoadBalancer.OperatingStatus == openapi.OperatingStatusOnline {
			out.LoadBalancer.OperatingStatus = openapi.OperatingStatusDegraded
		}
		listeners, err := store.ListByLoadBalancer[store.Listener](ctx, tx, store.KindListener, tenant, lb.ID)
		if err != nil {
			return err
		}
		rules, err := store.ListByLoadBalancer[store.RoutingRule](ctx, tx, store.KindRoutingRule, tenant, lb.ID)
		if err != nil {
			return err
		}
		pools, err := store.ListByLoadBalancer[store.Pool](ctx, tx, store.KindPool, tenant, lb.ID)
		if err != nil {
			return err
		}
		members, err := store.ListByLoadBalancer[store.Member](ctx, tx, store.KindMember, tenant, lb.ID)
		if err != nil {
			return err
		}
		out.Listeners = make([]openapi.ListenerStatus, 0, len(listeners))
		for _, l := range listeners {
			e := statusEntry(&l.Meta, &l.Status)
			ls := openapi.ListenerStatus{Id: e.Id, Name: e.Name, ProvisioningStatus: e.ProvisioningStatus, OperatingStatus: e.OperatingStatus,
				StatusMessage: e.StatusMessage, RoutingRules: []openapi.StatusEntry{}}
			for _, ru := range rules {
				if ru.ListenerID == l.ID {
					ls.RoutingRules = append(ls.RoutingRules, statusEntry(&ru.Meta, &ru.Status))
				}
			}
			out.Listeners = append(out.Listeners, ls)
		}
		out.Pools = make([]openapi.PoolStatus, 0, len(pools))
		for _, p := range pools {
			e := statusEntry(&p.Meta, &p.Status)
			ps := openapi.PoolStatus{Id: e.Id, Name: e.Name, ProvisioningStatus: e.ProvisioningStatus, OperatingStatus: e.OperatingStatus,
				StatusMessage: e.StatusMessage, Members: []openapi.StatusEntry{}}
			for _, m := range members {
				if m.PoolID == p.ID {
					ps.Members = append(ps.Members, statusEntry(&m.Meta, &m.Status))
				}
			}
			out.Pools = append(out.Pools, ps)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return openapi.GetLoadBalancerStatus200JSONResponse{Body: out}, nil
}

func (h *handlers) GetLoadBalancerStats(ctx context.Context, r openapi.GetLoadBalancerStatsRequestObject) (openapi.GetLoadBalancerStatsResponseObject, error) {
	tenant, err := tenantOf(ctx)
	if err != nil {
		return nil, err
	}
	out := openapi.LoadBalancerStats{LoadBalancerId: r.Id}
	err = h.st.Read(ctx, func(tx *store.Tx) error {
		if _, err := store.Get[store.LoadBalancer](ctx, tx, store.KindLoadBalancer, tenant, r.Id, false); err != nil {
			return err
		}
		counters, err := store.LoadBalancerStatsListByLoadBalancer(ctx, tx, tenant, r.Id)
		if err != nil {
			return err
		}
		var nodes []openapi.LoadBalancerStats
		for _, raw := range counters {
			var s openapi.LoadBalancerStats
			if err := json.Unmarshal(raw, &s); err != nil {
				continue
			}
			nodes = append(nodes, s)
		}
		out = mergeStats(r.Id, nodes) // stats.go
		return nil
	})
	if err != nil {
		return nil, err
	}
	return openapi.GetLoadBalancerStats200JSONResponse{Body: out}, nil
}
