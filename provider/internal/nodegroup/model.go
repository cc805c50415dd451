package nodegroup

import (
	"context"

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
	VIPRange    types.String `tfsdk:"vip_range"`
}

// fromAPI refreshes everything.
func (m *model) fromAPI(_ context.Context, g *openapi.NodeGroup) diag.Diagnostics {
	m.ID = types.StringValue(g.Id)
	m.Name = types.StringValue(g.Name)
	m.Description = types.StringValue(g.Description)
	m.Labels = fulcrum.LabelsValue(g.Labels)
	m.VIPRange = types.StringValue(g.VipRange)
	return nil
}

// toCreate is the POST body for the planned node group.
func (m *model) toCreate(ctx context.Context) (openapi.NodeGroupCreate, diag.Diagnostics) {
	var diags diag.Diagnostics
	return openapi.NodeGroupCreate{
		Name:        m.Name.ValueString(),
		Description: m.Description.ValueStringPointer(),
		Labels:      fulcrum.LabelsToAPI(ctx, m.Labels, &diags),
		VipRange:    m.VIPRange.ValueString(),
	}, diags
}

// toUpdate is the PATCH body: every field.
func (m *model) toUpdate(ctx context.Context) (openapi.NodeGroupUpdate, diag.Diagnostics) {
	var diags diag.Diagnostics
	return openapi.NodeGroupUpdate{
		Name:        m.Name.ValueStringPointer(),
		Description: m.Description.ValueStringPointer(),
		Labels:      fulcrum.LabelsToAPI(ctx, m.Labels, &diags),
		VipRange:    m.VIPRange.ValueStringPointer(),
	}, diags
}
