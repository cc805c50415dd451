package tenant

import (
	"context"

	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/fulcrumlb/fulcrum/openapi"
	"github.com/fulcrumlb/fulcrum/provider/internal/fulcrum"
)

// model is the resource's state and plan.
type model struct {
	ID          types.String `tfsdk:"id"`
	Name        types.String `tfsdk:"name"`
	Description types.String `tfsdk:"description"`
	Labels      types.Map    `tfsdk:"labels"`
	Quotas      *quotasModel `tfsdk:"quotas"`
}

type quotasModel struct {
	LoadBalancers types.Int64 `tfsdk:"load_balancers"`
	Listeners     types.Int64 `tfsdk:"listeners"`
	Pools         types.Int64 `tfsdk:"pools"`
	Members       types.Int64 `tfsdk:"members"`
	RoutingRules  types.Int64 `tfsdk:"routing_rules"`
	Certificates  types.Int64 `tfsdk:"certificates"`
}

// quota describes one quota: its attribute, the API's default and bounds.
type quota struct {
	name          string
	def, min, max int64
	field         func(*quotasModel) *types.Int64
	api           func(*openapi.Quotas) **int
}

var quotas = []quota{
	{"load_balancers", openapi.QuotasLoadBalancersDefault, openapi.QuotasLoadBalancersMin, openapi.QuotasLoadBalancersMax, func(q *quotasModel) *types.Int64 { return &q.LoadBalancers }, func(q *openapi.Quotas) **int { return &q.LoadBalancers }},
	{"listeners", openapi.QuotasListenersDefault, openapi.QuotasListenersMin, openapi.QuotasListenersMax, func(q *quotasModel) *types.Int64 { return &q.Listeners }, func(q *openapi.Quotas) **int { return &q.Listeners }},
	{"pools", openapi.QuotasPoolsDefault, openapi.QuotasPoolsMin, openapi.QuotasPoolsMax, func(q *quotasModel) *types.Int64 { return &q.Pools }, func(q *openapi.Quotas) **int { return &q.Pools }},
	{"members", openapi.QuotasMembersDefault, openapi.QuotasMembersMin, openapi.QuotasMembersMax, func(q *quotasModel) *types.Int64 { return &q.Members }, func(q *openapi.Quotas) **int { return &q.Members }},
	{"routing_rules", openapi.QuotasRoutingRulesDefault, openapi.QuotasRoutingRulesMin, openapi.QuotasRoutingRulesMax, func(q *quotasModel) *types.Int64 { return &q.RoutingRules }, func(q *openapi.Quotas) **int { return &q.RoutingRules }},
	{"certificates", openapi.QuotasCertificatesDefault, openapi.QuotasCertificatesMin, openapi.QuotasCertificatesMax, func(q *quotasModel) *types.Int64 { return &q.Certificates }, func(q *openapi.Quotas) **int { return &q.Certificates }},
}

// fromAPI refreshes everything. A quota the API leaves out reads as its default.
func (m *model) fromAPI(_ context.Context, t *openapi.Tenant) diag.Diagnostics {
	m.ID = types.StringValue(t.Id)
	m.Name = types.StringValue(t.Name)
	m.Description = types.StringValue(t.Description)
	m.Labels = fulcrum.LabelsValue(t.Labels)
	m.Quotas = &quotasModel{}
	for _, q := range quotas {
		v := q.def
		if p := *q.api(&t.Quotas); p != nil {
			v = int64(*p)
		}
		*q.field(m.Quotas) = types.Int64Value(v)
	}
	return nil
}

// apiQuotas sends every known quota, so the tenant ends up exactly as planned.
func (m *model) apiQuotas() *openapi.Quotas {
	if m.Quotas == nil {
		return nil
	}
	out := &openapi.Quotas{}
	for _, q := range quotas {
		v := *q.field(m.Quotas)
		if v.IsNull() || v.IsUnknown() {
			continue
		}
		i := int(v.ValueInt64())
		*q.api(out) = &i
	}
	return out
}

// toCreate is the POST body for the planned tenant.
func (m *model) toCreate(ctx context.Context) (openapi.TenantCreate, diag.Diagnostics) {
	var diags diag.Diagnostics
	return openapi.TenantCreate{
		Name:        m.Name.ValueString(),
		Description: m.Description.ValueStringPointer(),
		Labels:      fulcrum.LabelsToAPI(ctx, m.Labels, &diags),
		Quotas:      m.apiQuotas(),
	}, diags
}

// toUpdate is the PATCH body: every field.
func (m *model) toUpdate(ctx context.Context) (openapi.TenantUpdate, diag.Diagnostics) {
	var diags diag.Diagnostics
	return openapi.TenantUpdate{
		Name:        m.Name.ValueStringPointer(),
		Description: m.Description.ValueStringPointer(),
		Labels:      fulcrum.LabelsToAPI(ctx, m.Labels, &diags),
		Quotas:      m.apiQuotas(),
	}, diags
}

// quotaTypes is the quotas object's type; defaultQuotas its default value.
func quotaTypes() map[string]attr.Type {
	out := map[string]attr.Type{}
	for _, q := range quotas {
		out[q.name] = types.Int64Type
	}
	return out
}

func defaultQuotas() types.Object {
	values := map[string]attr.Value{}
	for _, q := range quotas {
		values[q.name] = types.Int64Value(q.def)
	}
	return types.ObjectValueMust(quotaTypes(), values)
}
