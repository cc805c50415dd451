package nodegroup

import (
	"context"
	"slices"

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
	VIPRange    types.String `tfsdk:"vip_range"`
	// ReservedPorts are the operator's; EffectiveReservedPorts adds the
	// always-reserved ones.
	ReservedPorts          types.Set `tfsdk:"reserved_ports"`
	EffectiveReservedPorts types.Set `tfsdk:"effective_reserved_ports"`
	// Node lifecycle timing, milliseconds.
	HeartbeatIntervalMs    types.Int64 `tfsdk:"heartbeat_interval_ms"`
	DownTimeoutMs          types.Int64 `tfsdk:"down_timeout_ms"`
	DownNodeCleanupAfterMs types.Int64 `tfsdk:"down_node_cleanup_after_ms"`
	ApplyGraceMs           types.Int64 `tfsdk:"apply_grace_ms"`
}

// Node lifecycle defaults, as the API's.
const (
	defaultHeartbeatIntervalMs    = openapi.NodeGroupHeartbeatIntervalMsDefault
	defaultDownTimeoutMs          = openapi.NodeGroupDownTimeoutMsDefault
	defaultDownNodeCleanupAfterMs = openapi.NodeGroupDownNodeCleanupAfterMsDefault
	defaultApplyGraceMs           = openapi.NodeGroupApplyGraceMsDefault
)

// msValue is an API duration, def when the API leaves it out.
func msValue[T int | int64](v *T, def int64) types.Int64 {
	if v == nil {
		return types.Int64Value(def)
	}
	return types.Int64Value(int64(*v))
}

// msToAPI is a planned duration for the API (nil when unknown).
func msToAPI(v types.Int64) *int {
	if v.IsNull() || v.IsUnknown() {
		return nil
	}
	i := int(v.ValueInt64())
	return &i
}

func ms64ToAPI(v types.Int64) *int64 {
	if v.IsNull() || v.IsUnknown() {
		return nil
	}
	return v.ValueInt64Pointer()
}

// portSet is a set of port numbers (empty, never null, for none).
func portSet(ports *[]int) types.Set {
	elems := []attr.Value{}
	if ports != nil {
		for _, p := range *ports {
			elems = append(elems, types.Int64Value(int64(p)))
		}
	}
	return types.SetValueMust(types.Int64Type, elems)
}

// portsToAPI is the API's list for a set of ports (an empty list for none,
// so an update clears it).
func portsToAPI(ctx context.Context, s types.Set, diags *diag.Diagnostics) *[]int {
	out := []int{}
	if s.IsNull() || s.IsUnknown() {
		return &out
	}
	var v []int64
	diags.Append(s.ElementsAs(ctx, &v, false)...)
	for _, p := range v {
		out = append(out, int(p))
	}
	slices.Sort(out)
	return &out
}

// fromAPI refreshes everything.
func (m *model) fromAPI(_ context.Context, g *openapi.NodeGroup) diag.Diagnostics {
	m.ID = types.StringValue(g.Id)
	m.Name = types.StringValue(g.Name)
	m.Description = types.StringValue(g.Description)
	m.Labels = fulcrum.LabelsValue(g.Labels)
	m.VIPRange = types.StringValue(g.VipRange)
	m.ReservedPorts = portSet(g.ReservedPorts)
	m.EffectiveReservedPorts = portSet(g.EffectiveReservedPorts)
	m.HeartbeatIntervalMs = msValue(g.HeartbeatIntervalMs, defaultHeartbeatIntervalMs)
	m.DownTimeoutMs = msValue(g.DownTimeoutMs, defaultDownTimeoutMs)
	m.DownNodeCleanupAfterMs = msValue(g.DownNodeCleanupAfterMs, defaultDownNodeCleanupAfterMs)
	m.ApplyGraceMs = msValue(g.ApplyGraceMs, defaultApplyGraceMs)
	return nil
}

// toCreate is the POST body for the planned node group.
func (m *model) toCreate(ctx context.Context) (openapi.NodeGroupCreate, diag.Diagnostics) {
	var diags diag.Diagnostics
	return openapi.NodeGroupCreate{
		Name:          m.Name.ValueString(),
		Description:   m.Description.ValueStringPointer(),
		Labels:        fulcrum.LabelsToAPI(ctx, m.Labels, &diags),
		VipRange:      m.VIPRange.ValueString(),
		ReservedPorts: portsToAPI(ctx, m.ReservedPorts, &diags),

		HeartbeatIntervalMs:    msToAPI(m.HeartbeatIntervalMs),
		DownTimeoutMs:          msToAPI(m.DownTimeoutMs),
		DownNodeCleanupAfterMs: ms64ToAPI(m.DownNodeCleanupAfterMs),
		ApplyGraceMs:           msToAPI(m.ApplyGraceMs),
	}, diags
}

// toUpdate is the PATCH body: every field.
func (m *model) toUpdate(ctx context.Context) (openapi.NodeGroupUpdate, diag.Diagnostics) {
	var diags diag.Diagnostics
	return openapi.NodeGroupUpdate{
		Name:          m.Name.ValueStringPointer(),
		Description:   m.Description.ValueStringPointer(),
		Labels:        fulcrum.LabelsToAPI(ctx, m.Labels, &diags),
		VipRange:      m.VIPRange.ValueStringPointer(),
		ReservedPorts: portsToAPI(ctx, m.ReservedPorts, &diags),

		HeartbeatIntervalMs:    msToAPI(m.HeartbeatIntervalMs),
		DownTimeoutMs:          msToAPI(m.DownTimeoutMs),
		DownNodeCleanupAfterMs: ms64ToAPI(m.DownNodeCleanupAfterMs),
		ApplyGraceMs:           msToAPI(m.ApplyGraceMs),
	}, diags
}
