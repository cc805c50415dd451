package api

import (
	"context"

	"github.com/fulcrumlb/fulcrum/api/store"
	"github.com/fulcrumlb/fulcrum/api/validate"
	"github.com/fulcrumlb/fulcrum/openapi"
)

func memberToAPI(m *store.Member) openapi.Member {
	return openapi.Member{Id: m.ID, TenantId: m.TenantID, LoadBalancerId: m.LoadBalancerID, PoolId: m.PoolID, Name: m.Name,
		Description: m.Description, Labels: labelsOrEmpty(m.Labels), Address: m.Address, Port: m.Port, Weight: m.Spec.Weight,
		Backup: m.Spec.Backup, Enabled: m.Spec.Enabled, MaxConnections: m.Spec.MaxConnections,
		ProvisioningStatus: openapi.ProvisioningStatus(m.ProvisioningStatus), OperatingStatus: openapi.OperatingStatus(m.OperatingStatus),
		StatusMessage: msgPtr(m.StatusMessage), CreatedAt: m.CreatedAt, UpdatedAt: m.UpdatedAt, Version: m.Version}
}

type memberPatch struct {
	Name, Description *string
	Labels            *openapi.Labels
	Address           *string
	Port, Weight      *int
	Backup, Enabled   *bool
	MaxConnections    *int
}

func (p *memberPatch) apply(m *store.Member) {
	if p.Name != nil {
		m.Name = *p.Name
	}
	if p.Description != nil {
		m.Description = *p.Description
	}
	if p.Labels != nil {
		m.Labels = *p.Labels
	}
	if p.Address != nil {
		m.Address = *p.Address
	}
	if p.Port != nil {
		m.Port = *p.Port
	}
	if p.Weight != nil {
		m.Spec.Weight = *p.Weight
	}
	if p.Backup != nil {
		m.Spec.Backup = *p.Backup
	}
	if p.Enabled != nil {
		m.Spec.Enabled = *p.Enabled
	}
	if p.MaxConnections != nil {
		m.Spec.MaxConnections = *p.MaxConnections
	}
}

func validateMember(m *store.Member) error {
	var e validate.Errors
	validateMeta(&e, &m.Meta)
	if validate.HostOrIP(&e, "address", m.Address) {
		if a, ok := validate.IP(&validate.Errors{}, "address", m.Address); ok {
			m.Address = a.String() // canonical form, so duplicates collide
		}
	}
	validate.Port(&e, "port", m.Port)
	validate.IntRange(&e, "weight", m.Spec.Weight, openapi.MemberWeightMin, openapi.MemberWeightMax)
	validate.IntRange(&e, "max_connections", m.Spec.MaxConnections, openapi.MemberMaxConnectionsMin, openapi.MemberMaxConnectionsMax)
	return e.Err()
}

func memberColumns(m *store.Member, rev int64) []store.Column {
	return append(metaColumns(&m.Meta, rev), store.Column{Name: "address", Value: m.Address}, store.Column{Name: "port", Value: m.Port},
		store.Column{Name: "spec", Value: m.Spec})
}

func (h *handlers) ListMembers(ctx context.Context, r openapi.ListMembersRequestObject) (openapi.ListMembersResponseObject, error) {
	tenant, err := tenantOf(ctx)
	if err != nil {
		return nil, err
	}
	lq := listQuery(r.Params.Limit, r.Params.PageToken, r.Params.Name, r.Params.Label,
		store.Column{Name: "pool_id", Value: r.Params.PoolId}, store.Column{Name: "load_balancer_id", Value: r.Params.LoadBalancerId})
	items, next, err := list[store.Member](ctx, h, store.KindMember, tenant, lq)
	if err != nil {
		return nil, err
	}
	return openapi.ListMembers200JSONResponse{Body: openapi.MemberList{Items: mapSlice(items, memberToAPI), NextPageToken: next}}, nil
}

func (h *handlers) CreateMember(ctx context.Context, r openapi.CreateMemberRequestObject) (openapi.CreateMemberResponseObject, error) {
	tenant, err := tenantOf(ctx)
	if err != nil {
		return nil, err
	}
	b := r.Body
	m := &store.Member{Meta: store.Meta{TenantID: tenant}, PoolID: b.PoolId, Spec: store.MemberSpec{Weight: openapi.MemberWeightDefault, Enabled: openapi.MemberEnabledDefault}}
	(&memberPatch{Name: b.Name, Description: b.Description, Labels: b.Labels, Address: &b.Address, Port: &b.Port, Weight: b.Weight,
		Backup: b.Backup, Enabled: b.Enabled, MaxConnections: b.MaxConnections}).apply(m)
	if err := validateMember(m); err != nil {
		return nil, err
	}
	out, _, err := createIn(ctx, h, store.ScopeOf(store.KindPool, tenant, b.PoolId), "POST /v1/members", r.Params.IdempotencyKey, r.Params.DryRun, b, func(tx *store.Tx) (openapi.Member, error) {
		lbID, err := store.GetLiveParent(ctx, tx, store.KindPool, tenant, b.PoolId, false)
		if err != nil {
			return openapi.Member{}, parentError(err, "pool_id")
		}
		if err := store.CheckQuota(ctx, tx, store.KindMember, tenant); err != nil {
			return openapi.Member{}, err
		}
		rev, err := tx.Revision(ctx)
		if err != nil {
			return openapi.Member{}, err
		}
		cols := append(newColumns(store.KindMember, tenant), memberColumns(m, rev)...)
		cols = append(cols, store.Column{Name: "pool_id", Value: b.PoolId}, store.Column{Name: "load_balancer_id", Value: lbID})
		row, err := store.Insert[store.Member](ctx, tx, store.KindMember, cols)
		if err != nil {
			return openapi.Member{}, err
		}
		return memberToAPI(row), nil
	})
	if err != nil {
		return nil, err
	}
	if isTrue(r.Params.DryRun) {
		return openapi.CreateMember200JSONResponse{Body: out}, nil
	}
	return openapi.CreateMember201JSONResponse{Body: out, Headers: openapi.CreateMember201ResponseHeaders{ETag: etag(out.Version)}}, nil
}

func (h *handlers) GetMember(ctx context.Context, r openapi.GetMemberRequestObject) (openapi.GetMemberResponseObject, error) {
	tenant, err := tenantOf(ctx)
	if err != nil {
		return nil, err
	}
	m, err := get[store.Member](ctx, h, store.KindMember, tenant, r.Id)
	if err != nil {
		return nil, err
	}
	return openapi.GetMember200JSONResponse{Body: memberToAPI(&m), Headers: openapi.GetMember200ResponseHeaders{ETag: etag(m.Version)}}, nil
}

func (h *handlers) UpdateMember(ctx context.Context, r openapi.UpdateMemberRequestObject) (openapi.UpdateMemberResponseObject, error) {
	tenant, err := tenantOf(ctx)
	if err != nil {
		return nil, err
	}
	b := r.Body
	p := memberPatch{Name: b.Name, Description: b.Description, Labels: b.Labels, Address: b.Address, Port: b.Port, Weight: b.Weight,
		Backup: b.Backup, Enabled: b.Enabled, MaxConnections: b.MaxConnections}
	out, err := update(ctx, h, store.KindMember, tenant, r.Id, r.Params.IfMatch, r.Params.DryRun, func(tx *store.Tx, m *store.Member) (openapi.Member, error) {
		p.apply(m)
		if err := validateMember(m); err != nil {
			return openapi.Member{}, err
		}
		rev, err := tx.Revision(ctx)
		if err != nil {
			return openapi.Member{}, err
		}
		row, err := store.Update[store.Member](ctx, tx, store.KindMember, tenant, m.ID, append(memberColumns(m, rev), pendingUpdate(&m.Status)))
		if err != nil {
			return openapi.Member{}, err
		}
		return memberToAPI(row), nil
	})
	if err != nil {
		return nil, err
	}
	return openapi.UpdateMember200JSONResponse{Body: out, Headers: openapi.UpdateMember200ResponseHeaders{ETag: etag(out.Version)}}, nil
}

func (h *handlers) DeleteMember(ctx context.Context, r openapi.DeleteMemberRequestObject) (openapi.DeleteMemberResponseObject, error) {
	tenant, err := tenantOf(ctx)
	if err != nil {
		return nil, err
	}
	if err := remove[store.Member](ctx, h, store.KindMember, tenant, r.Id, r.Params.IfMatch, false, nil); err != nil {
		return nil, err
	}
	return openapi.DeleteMember202Response{}, nil
}
