package loadbalancer

import (
	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/fulcrumlb/fulcrum/openapi"
	"github.com/fulcrumlb/fulcrum/provider/internal/fulcrum"
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
	m.Labels = fulcrum.LabelsValue(lb.Labels)
	m.NodeGroupID = types.StringValue(lb.NodeGroupId)
	if !fulcrum.SameIP(m.VIPAddress, lb.VipAddress) {
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
		Name:               fulcrum.StringPtr(m.Name),
		Description:        fulcrum.StringPtr(m.Description),
		Labels:             fulcrum.LabelsPtr(m.Labels),
		NodeGroupId:        fulcrum.StringPtr(m.NodeGroupID),
		VipAddress:         fulcrum.StringPtr(m.VIPAddress),
		Enabled:            fulcrum.BoolPtr(m.Enabled),
		DeletionProtection: fulcrum.BoolPtr(m.DeletionProtection),
	}
}

// toUpdate is the PATCH body: every attribute that can change in place, so
// the update also undoes drift.
func (m *model) toUpdate() openapi.LoadBalancerUpdate {
	return openapi.LoadBalancerUpdate{
		Name:               fulcrum.StringPtr(m.Name),
		Description:        fulcrum.StringPtr(m.Description),
		Labels:             fulcrum.LabelsPtr(m.Labels),
		Enabled:            fulcrum.BoolPtr(m.Enabled),
		DeletionProtection: fulcrum.BoolPtr(m.DeletionProtection),
	}
}
