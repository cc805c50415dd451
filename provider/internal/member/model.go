package member

import (
	"net/netip"

	"github.com/hashicorp/terraform-plugin-framework-timeouts/resource/timeouts"
	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/fulcrumlb/fulcrum/openapi"
)

// model is the resource's plan and state.
type model struct {
	ID                 types.String   `tfsdk:"id"`
	PoolID             types.String   `tfsdk:"pool_id"`
	LoadBalancerID     types.String   `tfsdk:"load_balancer_id"`
	Name               types.String   `tfsdk:"name"`
	Description        types.String   `tfsdk:"description"`
	Labels             types.Map      `tfsdk:"labels"`
	Address            types.String   `tfsdk:"address"`
	Port               types.Int64    `tfsdk:"port"`
	Weight             types.Int64    `tfsdk:"weight"`
	Backup             types.Bool     `tfsdk:"backup"`
	Enabled            types.Bool     `tfsdk:"enabled"`
	MaxConnections     types.Int64    `tfsdk:"max_connections"`
	TenantID           types.String   `tfsdk:"tenant_id"`
	ProvisioningStatus types.String   `tfsdk:"provisioning_status"`
	OperatingStatus    types.String   `tfsdk:"operating_status"`
	Timeouts           timeouts.Value `tfsdk:"timeouts"`
}

// fromAPI refreshes m from the API's view, so out-of-band changes show in the
// next plan. An IP address the API canonicalized ("::0001" → "::1") keeps
// the configured spelling.
func (m *model) fromAPI(mb *openapi.Member) {
	m.ID = types.StringValue(mb.Id)
	m.PoolID = types.StringValue(mb.PoolId)
	m.LoadBalancerID = types.StringValue(mb.LoadBalancerId)
	m.Name = types.StringValue(mb.Name)
	m.Description = types.StringValue(mb.Description)
	m.Labels = labelsValue(mb.Labels)
	if !sameIP(m.Address, mb.Address) {
		m.Address = types.StringValue(mb.Address)
	}
	m.Port = types.Int64Value(int64(mb.Port))
	m.Weight = types.Int64Value(int64(mb.Weight))
	m.Backup = types.BoolValue(mb.Backup)
	m.Enabled = types.BoolValue(mb.Enabled)
	m.MaxConnections = types.Int64Value(int64(mb.MaxConnections))
	m.TenantID = types.StringValue(mb.TenantId)
	m.ProvisioningStatus = types.StringValue(string(mb.ProvisioningStatus))
	m.OperatingStatus = types.StringValue(string(mb.OperatingStatus))
}

// toCreate is the POST body for the planned member.
func (m *model) toCreate() openapi.MemberCreate {
	return openapi.MemberCreate{
		PoolId:         m.PoolID.ValueString(),
		Address:        m.Address.ValueString(),
		Port:           int(m.Port.ValueInt64()),
		Name:           stringPtr(m.Name),
		Description:    stringPtr(m.Description),
		Labels:         labelsPtr(m.Labels),
		Weight:         intPtr(m.Weight),
		Backup:         boolPtr(m.Backup),
		Enabled:        boolPtr(m.Enabled),
		MaxConnections: intPtr(m.MaxConnections),
	}
}

// toUpdate is the PATCH body: every attribute that can change in place, so
// the update also undoes drift.
func (m *model) toUpdate() openapi.MemberUpdate {
	return openapi.MemberUpdate{
		Address:        stringPtr(m.Address),
		Port:           intPtr(m.Port),
		Name:           stringPtr(m.Name),
		Description:    stringPtr(m.Description),
		Labels:         labelsPtr(m.Labels),
		Weight:         intPtr(m.Weight),
		Backup:         boolPtr(m.Backup),
		Enabled:        boolPtr(m.Enabled),
		MaxConnections: intPtr(m.MaxConnections),
	}
}

func sameIP(prior types.String, api string) bool {
	if prior.IsNull() || prior.IsUnknown() {
		return false
	}
	a, err1 := netip.ParseAddr(prior.ValueString())
	b, err2 := netip.ParseAddr(api)
	return err1 == nil && err2 == nil && a == b
}

func stringPtr(v types.String) *string {
	if v.IsNull() || v.IsUnknown() {
		return nil
	}
	s := v.ValueString()
	return &s
}

func intPtr(v types.Int64) *int {
	if v.IsNull() || v.IsUnknown() {
		return nil
	}
	i := int(v.ValueInt64())
	return &i
}

func boolPtr(v types.Bool) *bool {
	if v.IsNull() || v.IsUnknown() {
		return nil
	}
	b := v.ValueBool()
	return &b
}

func labelsValue(l map[string]string) types.Map {
	elems := make(map[string]attr.Value, len(l))
	for k, v := range l {
		elems[k] = types.StringValue(v)
	}
	return types.MapValueMust(types.StringType, elems)
}

// labelsPtr sends a null map as "no labels", so removing the attribute clears them.
func labelsPtr(v types.Map) *openapi.Labels {
	if v.IsUnknown() {
		return nil
	}
	l := openapi.Labels{}
	for k, e := range v.Elements() {
		if s, ok := e.(types.String); ok && !s.IsNull() && !s.IsUnknown() {
			l[k] = s.ValueString()
		}
	}
	return &l
}
