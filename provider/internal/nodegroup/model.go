package nodegroup

import (
	"context"

	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/fulcrumlb/fulcrum/openapi"
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
func (m *model) fromAPI(ctx context.Context, g *openapi.NodeGroup) diag.Diagnostics {
	var diags diag.Diagnostics
	m.ID = types.StringValue(g.Id)
	m.Name = types.StringValue(g.Name)
	m.Description = types.StringValue(g.Description)
	labels := map[string]string(g.Labels)
	if labels == nil {
		labels = map[string]string{}
	}
	l, d := types.MapValueFrom(ctx, types.StringType, labels)
	diags.Append(d...)
	m.Labels = l
	m.VIPRange = types.StringValue(g.VipRange)
	return diags
}

// toCreate is the POST body for the planned node group.
func (m *model) toCreate(ctx context.Context) (openapi.NodeGroupCreate, diag.Diagnostics) {
	var diags diag.Diagnostics
	return openapi.NodeGroupCreate{
		Name:        m.Name.ValueString(),
		Description: m.Description.ValueStringPointer(),
		Labels:      labelsToAPI(ctx, m.Labels, &diags),
		VipRange:    m.VIPRange.ValueString(),
	}, diags
}

// toUpdate is the PATCH body: every field.
func (m *model) toUpdate(ctx context.Context) (openapi.NodeGroupUpdate, diag.Diagnostics) {
	var diags diag.Diagnostics
	return openapi.NodeGroupUpdate{
		Name:        m.Name.ValueStringPointer(),
		Description: m.Description.ValueStringPointer(),
		Labels:      labelsToAPI(ctx, m.Labels, &diags),
		VipRange:    m.VIPRange.ValueStringPointer(),
	}, diags
}

// labelsToAPI sends the planned labels; a null map sends none.
func labelsToAPI(ctx context.Context, v types.Map, diags *diag.Diagnostics) *openapi.Labels {
	if v.IsNull() || v.IsUnknown() {
		return nil
	}
	out := openapi.Labels{}
	diags.Append(v.ElementsAs(ctx, (*map[string]string)(&out), false)...)
	return &out
}
