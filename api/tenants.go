package api

import (
	"context"

	"github.com/fulcrumlb/fulcrum/api/problem"
	"github.com/fulcrumlb/fulcrum/api/store"
	"github.com/fulcrumlb/fulcrum/api/validate"
	"github.com/fulcrumlb/fulcrum/openapi"
)

func tenantToAPI(t *store.Tenant) openapi.Tenant {
	q := t.Quotas
	return openapi.Tenant{
		Id: t.ID, Name: t.Name, Description: t.Description, Labels: labelsOrEmpty(t.Labels),
		Quotas: openapi.Quotas{LoadBalancers: &q.LoadBalancers, Listeners: &q.Listeners, Pools: &q.Pools,
			Members: &q.Members, RoutingRules: &q.RoutingRules, Certificates: &q.Certificates},
		CreatedAt: t.CreatedAt, UpdatedAt: t.UpdatedAt, Version: t.Version,
	}
}

// quotasFrom fills the quotas a request leaves out with defaults.
func quotasFrom(in *openapi.Quotas, base store.Quotas) store.Quotas {
	if in == nil {
		return base
	}
	q := base
	set := func(dst *int, v *int) {
		if v != nil {
			*dst = *v
		}
	}
	set(&q.LoadBalancers, in.LoadBalancers)
	set(&q.Listeners, in.Listeners)
	set(&q.Pools, in.Pools)
	set(&q.Members, in.Members)
	set(&q.RoutingRules, in.RoutingRules)
	set(&q.Certificates, in.Certificates)
	return q
}

// CreateTenantTx validates and inserts a tenant; shared with `fulcrum admin`.
func CreateTenantTx(ctx context.Context, tx *store.Tx, t *store.Tenant) (*store.Tenant, error) {
	if err := validateTenant(t); err != nil {
		return nil, err
	}
	rev, err := tx.Revision(ctx)
	if err != nil {
		return nil, err
	}
	cols := append(tenantColumns(t), store.Column{Name: "id", Value: store.NewID(store.KindTenant.Prefix)}, store.Column{Name: "revision", Value: rev})
	return store.Insert[store.Tenant](ctx, tx, store.KindTenant, cols)
}

func validateTenant(t *store.Tenant) error {
	var e validate.Errors
	if t.Name == "" {
		e.Add("name", "is required")
	}
	validate.Name(&e, "name", t.Name)
	validate.Description(&e, "description", t.Description)
	validate.Labels(&e, "labels", t.Labels)
	q := t.Quotas
	for _, f := range []struct {
		field    string
		v        int
		min, max int
	}{{"load_balancers", q.LoadBalancers, openapi.QuotasLoadBalancersMin, openapi.QuotasLoadBalancersMax},
		{"listeners", q.Listeners, openapi.QuotasListenersMin, openapi.QuotasListenersMax},
		{"pools", q.Pools, openapi.QuotasPoolsMin, openapi.QuotasPoolsMax},
		{"members", q.Members, openapi.QuotasMembersMin, openapi.QuotasMembersMax},
		{"routing_rules", q.RoutingRules, openapi.QuotasRoutingRulesMin, openapi.QuotasRoutingRulesMax},
		{"certificates", q.Certificates, openapi.QuotasCertificatesMin, openapi.QuotasCertificatesMax}} {
		validate.IntRange(&e, "quotas."+f.field, f.v, f.min, f.max)
	}
	return e.Err()
}

func tenantColumns(t *store.Tenant) []store.Column {
	return []store.Column{{Name: "name", Value: t.Name}, {Name: "description", Value: t.Description},
		{Name: "labels", Value: labelsOrEmpty(t.Labels)}, {Name: "quotas", Value: t.Quotas}}
}

func (h *handlers) ListTenants(ctx context.Context, r openapi.ListTenantsRequestObject) (openapi.ListTenantsResponseObject, error) {
	p, err := principal(ctx)
	if err != nil {
		return nil, err
	}
	lq := listQuery(r.Params.Limit, r.Params.PageToken, r.Params.Name, r.Params.Label)
	switch p.Kind {
	case store.TokenAdmin:
	case store.TokenTenant:
		lq.Equal = append(lq.Equal, store.Column{Name: "id", Value: p.TenantID})
	default:
		return nil, problem.Forbidden("This endpoint needs an admin or tenant token.")
	}
	items, next, err := list[store.Tenant](ctx, h, store.KindTenant, "", lq)
	if err != nil {
		return nil, err
	}
	return openapi.ListTenants200JSONResponse{Body: openapi.TenantList{Items: mapSlice(items, tenantToAPI), NextPageToken: next}}, nil
}

func (h *handlers) CreateTenant(ctx context.Context, r openapi.CreateTenantRequestObject) (openapi.CreateTenantResponseObject, error) {
	if _, err := requireAdmin(ctx); err != nil {
		return nil, err
	}
	b := r.Body
	t := &store.Tenant{Name: b.Name, Description: deref(b.Description), Labels: deref(b.Labels), Quotas: quotasFrom(b.Quotas, store.DefaultQuotas)}
	if err := validateTenant(t); err != nil {
		return nil, err
	}
	out, _, err := create(ctx, h, "POST /v1/tenants", r.Params.IdempotencyKey, r.Params.DryRun, b, func(tx *store.Tx) (openapi.Tenant, error) {
		row, err := CreateTenantTx(ctx, tx, t)
		if err != nil {
			return openapi.Tenant{}, err
		}
		return tenantToAPI(row), nil
	})
	if err != nil {
		return nil, err
	}
	if isTrue(r.Params.DryRun) {
		return openapi.CreateTenant200JSONResponse{Body: out}, nil
	}
	return openapi.CreateTenant201JSONResponse{Body: out, Headers: openapi.CreateTenant201ResponseHeaders{ETag: etag(out.Version)}}, nil
}

// tenantVisible: admins see every tenant, a tenant only itself.
func tenantVisible(ctx context.Context, id string) error {
	p, err := principal(ctx)
	if err != nil {
		return err
	}
	if p.Kind == store.TokenAdmin || (p.Kind == store.TokenTenant && p.TenantID == id) {
		return nil
	}
	return problem.NotFound("tenant", id)
}

func (h *handlers) GetTenant(ctx context.Context, r openapi.GetTenantRequestObject) (openapi.GetTenantResponseObject, error) {
	if err := tenantVisible(ctx, r.Id); err != nil {
		return nil, err
	}
	t, err := get[store.Tenant](ctx, h, store.KindTenant, "", r.Id)
	if err != nil {
		return nil, err
	}
	return openapi.GetTenant200JSONResponse{Body: tenantToAPI(&t), Headers: openapi.GetTenant200ResponseHeaders{ETag: etag(t.Version)}}, nil
}

func (h *handlers) UpdateTenant(ctx context.Context, r openapi.UpdateTenantRequestObject) (openapi.UpdateTenantResponseObject, error) {
	if _, err := requireAdmin(ctx); err != nil {
		return nil, err
	}
	b := r.Body
	out, err := update(ctx, h, store.KindTenant, "", r.Id, r.Params.IfMatch, r.Params.DryRun, func(tx *store.Tx, t *store.Tenant) (openapi.Tenant, error) {
		if b.Name != nil {
			t.Name = *b.Name
		}
		if b.Description != nil {
			t.Description = *b.Description
		}
		if b.Labels != nil {
			t.Labels = *b.Labels
		}
		t.Quotas = quotasFrom(b.Quotas, t.Quotas)
		if err := validateTenant(t); err != nil {
			return openapi.Tenant{}, err
		}
		rev, err := tx.Revision(ctx)
		if err != nil {
			return openapi.Tenant{}, err
		}
		row, err := store.Update[store.Tenant](ctx, tx, store.KindTenant, "", t.ID, append(tenantColumns(t), store.Column{Name: "revision", Value: rev}))
		if err != nil {
			return openapi.Tenant{}, err
		}
		return tenantToAPI(row), nil
	})
	if err != nil {
		return nil, err
	}
	return openapi.UpdateTenant200JSONResponse{Body: out, Headers: openapi.UpdateTenant200ResponseHeaders{ETag: etag(out.Version)}}, nil
}

func (h *handlers) DeleteTenant(ctx context.Context, r openapi.DeleteTenantRequestObject) (openapi.DeleteTenantResponseObject, error) {
	if _, err := requireAdmin(ctx); err != nil {
		return nil, err
	}
	if err := remove[store.Tenant](ctx, h, store.KindTenant, "", r.Id, r.Params.IfMatch, false, nil); err != nil {
		return nil, err
	}
	h.auth.ForgetTenant(r.Id) // its tokens went with it; other replicas within auth.NodeTokenTTLDefault
	return openapi.DeleteTenant204Response{}, nil
}
