package member

import (
	"github.com/hashicorp/terraform-plugin-framework-timeouts/resource/timeouts"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/fulcrumlb/fulcrum/openapi"
	"github.com/fulcrumlb/fulcrum/provider/internal/fulcrum"
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
	m.Labels = fulcrum.LabelsValue(mb.Labels)
	if !fulcrum.SameIP(m.Address, mb.Address) {
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
		Name:           fulcrum.StringPtr(m.Name),
		Description:    fulcrum.StringPtr(m.Description),
		Labels:         fulcrum.LabelsPtr(m.Labels),
		Weight:         fulcrum.IntPtr(m.Weight),
		Backup:         fulcrum.BoolPtr(m.Backup),
		Enabled:        fulcrum.BoolPtr(m.Enabled),
		MaxConnections: fulcrum.IntPtr(m.MaxConnections),
	}
}

// toUpdate is the PATCH body: every attribute that can change in place, so
// the update also undoes drift.
func (m *model) toUpdate() openapi.MemberUpdate {
	return openapi.MemberUpdate{
		Address:        fulcrum.StringPtr(m.Address),
		Port:           fulcrum.IntPtr(m.Port),
		Name:           fulcrum.StringPtr(m.Name),
		Description:    fulcrum.StringPtr(m.Description),
		Labels:         fulcrum.LabelsPtr(m.Labels),
		Weight:         fulcrum.IntPtr(m.Weight),
		Backup:         fulcrum.BoolPtr(m.Backup),
		Enabled:        fulcrum.BoolPtr(m.Enabled),
		MaxConnections: fulcrum.IntPtr(m.MaxConnections),
	}
}
