package loadbalancer

import (
	"net/netip"

	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/fulcrumlb/fulcrum/openapi"
)

// model is what the resource and the data sources share: every attribute the
// API returns.
type model struct {
	ID                 types.String `tfsdk:"id"`
	Name               types.String `tfsdk:"name"`
	Description        types.String `tfsdk:"description"`
	Labels             types.Map    `tfsdk:"labels"`
	NodeGroupID        types.String `tfsdk:"node_group_id"`
	VIPAddress         types.String `tfsdk:"vip_address"`
	Enabled            types.Bool   `tfsdk:"enabled"`
	DeletionProtection types.Bool   `tfsdk:"deletion_protection"`
	TenantID           types.String `tfsdk:"tenant_id"`
	ProvisioningStatus types.String `tfsdk:"provisioning_status"`
	OperatingStatus    types.String `tfsdk:"operating_status"`
}

// attrTypes is model's object type, for lists of load balancers.
var attrTypes = map[string]attr.Type{
	"id": types.StringType, "name": types.StringType, "description": types.StringType,
	"labels": types.MapType{ElemType: types.StringType}, "node_group_id": types.StringType,
	"vip_address": types.StringType, "enabled": types.BoolType, "deletion_protection": types.BoolType,
	"tenant_id": types.StringType, "provisioning_status": types.StringType, "operating_status": types.StringType,
}

// fromAPI refreshes m from the API's view, so out-of-band changes show in the
// next plan. A VIP written in another form of the same address (IPv6
// shorthand) keeps the configured spelling.
func (m *model) fromAPI(lb *openapi.LoadBalancer) {
	m.ID = types.StringValue(lb.Id)
	m.Name = types.StringValue(lb.Name)
	m.Description = types.StringValue(lb.Description)
	m.Labels = labelsValue(lb.Labels)
	m.NodeGroupID = types.StringValue(lb.NodeGroupId)
	if !sameIP(m.VIPAddress, lb.VipAddress) {
		m.VIPAddress = types.StringValue(lb.VipAddress)
	}
	m.Enabled = types.BoolValue(lb.Enabled)
	m.DeletionProtection = types.BoolValue(lb.DeletionProtection)
	m.TenantID = types.StringValue(lb.TenantId)
	m.ProvisioningStatus = types.StringValue(string(lb.ProvisioningStatus))
	m.OperatingStatus = types.StringValue(string(lb.OperatingStatus))
}

// toCreate is the POST body for the planned load balancer; node_group_id and
// vip_address are sent only when configured (unknown means "let the API choose").
func (m *model) toCreate() openapi.LoadBalancerCreate {
	return openapi.LoadBalancerCreate{
		Name:               stringPtr(m.Name),
		Description:        stringPtr(m.Description),
		Labels:             labelsPtr(m.Labels),
		NodeGroupId:        stringPtr(m.NodeGroupID),
		VipAddress:         stringPtr(m.VIPAddress),
		Enabled:            boolPtr(m.Enabled),
		DeletionProtection: boolPtr(m.DeletionProtection),
	}
}

// toUpdate is the PATCH body: every attribute that can change in place, so
// the update also undoes drift.
func (m *model) toUpdate() openapi.LoadBalancerUpdate {
	return openapi.LoadBalancerUpdate{
		Name:               stringPtr(m.Name),
		Description:        stringPtr(m.Description),
		Labels:             labelsPtr(m.Labels),
		Enabled:            boolPtr(m.Enabled),
		DeletionProtection: boolPtr(m.DeletionProtection),
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
