package api

import (
	"context"
	"errors"
	"fmt"
	"net/netip"

	"github.com/fulcrumlb/fulcrum/api/problem"
	"github.com/fulcrumlb/fulcrum/api/store"
	"github.com/fulcrumlb/fulcrum/api/validate"
	"github.com/fulcrumlb/fulcrum/openapi"
)

func msgPtr(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func lbToAPI(lb *store.LoadBalancer) openapi.LoadBalancer {
	return openapi.LoadBalancer{Id: lb.ID, TenantId: lb.TenantID, Name: lb.Name, Description: lb.Description, Labels: labelsOrEmpty(lb.Labels),
		NodeGroupId: lb.NodeGroupID, VipAddress: lb.VIPAddress.String(), Enabled: lb.Enabled, DeletionProtection: lb.DeletionProtection,
		ProvisioningStatus: openapi.ProvisioningStatus(lb.ProvisioningStatus), OperatingStatus: openapi.OperatingStatus(lb.OperatingStatus),
		StatusMessage: msgPtr(lb.StatusMessage), CreatedAt: lb.CreatedAt, UpdatedAt: lb.UpdatedAt, Version: lb.Version}
}

func validateMeta(e *validate.Errors, m *store.Meta) {
	validate.Name(e, "name", m.Name)
	validate.Description(e, "description", m.Description)
	validate.Labels(e, "labels", m.Labels)
}

// metaColumns are the columns every tenant object writes.
func metaColumns(m *store.Meta, rev int64) []store.Column {
	return []store.Column{{Name: "name", Value: m.Name}, {Name: "description", Value: m.Description},
		{Name: "labels", Value: labelsOrEmpty(m.Labels)}, {Name: "revision", Value: rev}}
}

// newColumns are the columns only a create writes.
func newColumns(k store.Kind, tenantID string) []store.Column {
	return []store.Column{{Name: "id", Value: store.NewID(k.Prefix)}, {Name: "tenant_id", Value: tenantID}}
}

// pendingUpdate is the status a changed object takes: a never-applied object
// stays pending_create.
func pendingUpdate(s *store.Status) store.Column {
	st := "pending_update"
	if s.ProvisioningStatus == "pending_create" {
		st = "pending_create"
	}
	return store.Column{Name: "provisioning_status", Value: st}
}

// allocateVIP picks the lowest free address of the group's range. The group row
// is locked so concurrent creates cannot pick the same one.
func allocateVIP(ctx context.Context, tx *store.Tx, g *store.NodeGroup) (netip.Addr, error) {
	vips, err := store.LoadBalancerListVIPsByGroup(ctx, tx, g.ID)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("allocate vip: %w", err)
	}
	used := map[netip.Addr]bool{}
	for _, a := range vips {
		used[a] = true
	}
	p := g.VIPRange.Masked()
	a := p.Addr()
	if p.Bits() < a.BitLen()-1 {
		a = a.Next() // skip the network address
	}
	for ; a.IsValid() && p.Contains(a); a = a.Next() {
		if a.Is4() && p.Bits() < 31 && !p.Contains(a.Next()) {
			break // broadcast address
		}
		if !used[a] {
			return a, nil
		}
	}
	return netip.Addr{}, problem.Conflict("vip-range-exhausted", fmt.Sprintf("Node group %q has no free VIP left in %s.", g.ID, p),
		validate.FieldError{Field: "node_group_id", Message: "has no free VIP left"})
}

func (h *handlers) ListLoadBalancers(ctx context.Context, r openapi.ListLoadBalancersRequestObject) (openapi.ListLoadBalancersResponseObject, error) {
	tenant, err := tenantOf(ctx)
	if err != nil {
		return nil, err
	}
	lq := listQuery(r.Params.Limit, r.Params.PageToken, r.Params.Name, r.Params.Label, store.Column{Name: "node_group_id", Value: r.Params.NodeGroupId})
	items, next, err := list[store.LoadBalancer](ctx, h, store.KindLoadBalancer, tenant, lq)
	if err != nil {
		return nil, err
	}
	return openapi.ListLoadBalancers200JSONResponse{Body: openapi.LoadBalancerList{Items: mapSlice(items, lbToAPI), NextPageToken: next}}, nil
}

func (h *handlers) CreateLoadBalancer(ctx context.Context, r openapi.CreateLoadBalancerRequestObject) (openapi.CreateLoadBalancerResponseObject, error) {
	tenant, err := tenantOf(ctx)
	if err != nil {
		return nil, err
	}
	b := r.Body
	lb := &store.LoadBalancer{Meta: store.Meta{Name: deref(b.Name), Description: deref(b.Description), Labels: deref(b.Labels)},
		Enabled: b.Enabled == nil || *b.Enabled, DeletionProtection: isTrue(b.DeletionProtection)}
	var e validate.Errors
	validateMeta(&e, &lb.Meta)
	var vip netip.Addr
	if b.VipAddress != nil {
		vip, _ = validate.IP(&e, "vip_address", *b.VipAddress)
	}
	if err := e.Err(); err != nil {
		return nil, err
	}
	scope := store.ScopeGroupNamed("default")
	if b.NodeGroupId != nil {
		scope = store.ScopeGroups(*b.NodeGroupId)
	}
	out, _, err := createIn(ctx, h, scope, "POST /v1/load-balancers", r.Params.IdempotencyKey, r.Params.DryRun, b, func(tx *store.Tx) (openapi.LoadBalancer, error) {
		if err := store.CheckQuota(ctx, tx, store.KindLoadBalancer, tenant); err != nil {
			return openapi.LoadBalancer{}, err
		}
		var g *store.NodeGroup
		var err error
		if b.NodeGroupId != nil {
			g, err = store.Get[store.NodeGroup](ctx, tx, store.KindNodeGroup, "", *b.NodeGroupId, true)
			if err != nil {
				return openapi.LoadBalancer{}, asInvalidField(err, "node_group_id")
			}
		} else {
			g, err = store.NodeGroupGetByName(ctx, tx, "default", true)
			if errors.Is(err, store.ErrNotFound) {
				return openapi.LoadBalancer{}, problem.InvalidField("node_group_id", "is required: there is no node group named default")
			}
			if err != nil {
				return openapi.LoadBalancer{}, err
			}
		}
		if vip.IsValid() {
			if !g.VIPRange.Contains(vip) {
				return openapi.LoadBalancer{}, problem.InvalidField("vip_address", "must lie in the node group's VIP range %s", g.VIPRange)
			}
		} else if vip, err = allocateVIP(ctx, tx, g); err != nil {
			return openapi.LoadBalancer{}, err
		}
		rev, err := tx.Revision(ctx)
		if err != nil {
			return openapi.LoadBalancer{}, err
		}
		cols := append(newColumns(store.KindLoadBalancer, tenant), metaColumns(&lb.Meta, rev)...)
		cols = append(cols, store.Column{Name: "node_group_id", Value: g.ID}, store.Column{Name: "vip_address", Value: vip},
			store.Column{Name: "enabled", Value: lb.Enabled}, store.Column{Name: "deletion_protection", Value: lb.DeletionProtection})
		row, err := store.Insert[store.LoadBalancer](ctx, tx, store.KindLoadBalancer, cols)
		if err != nil {
			return openapi.LoadBalancer{}, err
		}
		return lbToAPI(row), nil
	})
	if err != nil {
		return nil, err
	}
	if isTrue(r.Params.DryRun) {
		return openapi.CreateLoadBalancer200JSONResponse{Body: out}, nil
	}
	return openapi.CreateLoadBalancer201JSONResponse{Body: out, Headers: openapi.CreateLoadBalancer201ResponseHeaders{ETag: etag(out.Version)}}, nil
}

func (h *handlers) GetLoadBalancer(ctx context.Context, r openapi.GetLoadBalancerRequestObject) (openapi.GetLoadBalancerResponseObject, error) {
	tenant, err := tenantOf(ctx)
	if err != nil {
		return nil, err
	}
	lb, err := get[store.LoadBalancer](ctx, h, store.KindLoadBalancer, tenant, r.Id)
	if err != nil {
		return nil, err
	}
	return openapi.GetLoadBalancer200JSONResponse{Body: lbToAPI(&lb), Headers: openapi.GetLoadBalancer200ResponseHeaders{ETag: etag(lb.Version)}}, nil
}

func (h *handlers) UpdateLoadBalancer(ctx context.Context, r openapi.UpdateLoadBalancerRequestObject) (openapi.UpdateLoadBalancerResponseObject, error) {
	tenant, err := tenantOf(ctx)
	if err != nil {
		return nil, err
	}
	b := r.Body
	out, err := update(ctx, h, store.KindLoadBalancer, tenant, r.Id, r.Params.IfMatch, r.Params.DryRun, func(tx *store.Tx, lb *store.LoadBalancer) (openapi.LoadBalancer, error) {
		if b.Name != nil {
			lb.Name = *b.Name
		}
		if b.Description != nil {
			lb.Description = *b.Description
		}
		if b.Labels != nil {
			lb.Labels = *b.Labels
		}
		if b.Enabled != nil {
			lb.Enabled = *b.Enabled
		}
		if b.DeletionProtection != nil {
			lb.DeletionProtection = *b.DeletionProtection
		}
		var e validate.Errors
		validateMeta(&e, &lb.Meta)
		if err := e.Err(); err != nil {
			return openapi.LoadBalancer{}, err
		}
		rev, err := tx.Revision(ctx)
		if err != nil {
			return openapi.LoadBalancer{}, err
		}
		cols := append(metaColumns(&lb.Meta, rev), store.Column{Name: "enabled", Value: lb.Enabled},
			store.Column{Name: "deletion_protection", Value: lb.DeletionProtection}, pendingUpdate(&lb.Status))
		row, err := store.Update[store.LoadBalancer](ctx, tx, store.KindLoadBalancer, tenant, lb.ID, cols)
		if err != nil {
			return openapi.LoadBalancer{}, err
		}
		return lbToAPI(row), nil
	})
	if err != nil {
		return nil, err
	}
	return openapi.UpdateLoadBalancer200JSONResponse{Body: out, Headers: openapi.UpdateLoadBalancer200ResponseHeaders{ETag: etag(out.Version)}}, nil
}

func (h *handlers) DeleteLoadBalancer(ctx context.Context, r openapi.DeleteLoadBalancerRequestObject) (openapi.DeleteLoadBalancerResponseObject, error) {
	tenant, err := tenantOf(ctx)
	if err != nil {
		return nil, err
	}
	err = remove(ctx, h, store.KindLoadBalancer, tenant, r.Id, r.Params.IfMatch, isTrue(r.Params.Cascade), func(tx *store.Tx, lb *store.LoadBalancer) error {
		if lb.DeletionProtection && lb.DeletedRevision == nil {
			return problem.Conflict("deletion-protected", fmt.Sprintf("Load balancer %q has deletion_protection enabled; turn it off first.", lb.ID),
				validate.FieldError{Field: "deletion_protection", Message: "is enabled"})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return openapi.DeleteLoadBalancer202Response{}, nil
}
