package nodegroup

import (
	"context"
	"fmt"
	"net/http"

	"github.com/hashicorp/terraform-plugin-framework-validators/int64validator"
	"github.com/hashicorp/terraform-plugin-framework-validators/setvalidator"
	"github.com/hashicorp/terraform-plugin-framework-validators/stringvalidator"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/int64default"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/setdefault"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/fulcrumlb/fulcrum/openapi"
	"github.com/fulcrumlb/fulcrum/provider/internal/fulcrum"
)

// ResourceType is the resource's type name.
const ResourceType = "fulcrum_node_group"

var (
	_ resource.Resource                = (*Resource)(nil)
	_ resource.ResourceWithConfigure   = (*Resource)(nil)
	_ resource.ResourceWithImportState = (*Resource)(nil)
)

// Resource is fulcrum_node_group.
type Resource struct {
	client *fulcrum.Client
}

// NewResource is the constructor the provider registers.
func NewResource() resource.Resource { return &Resource{} }

func (r *Resource) Metadata(_ context.Context, _ resource.MetadataRequest, resp *resource.MetadataResponse) {
	resp.TypeName = ResourceType
}

func (r *Resource) Schema(_ context.Context, _ resource.SchemaRequest, resp *resource.SchemaResponse) {
	resp.Schema = schema.Schema{
		Description: "A node group: dataplane nodes that serve the same load balancers, and the range their VIPs come from. Needs an admin token. " +
			"The API refuses to delete a node group that still has nodes or load balancers.",
		Attributes: map[string]schema.Attribute{
			"id": schema.StringAttribute{
				Description:   "The node group's id (`ng_…`).",
				Computed:      true,
				PlanModifiers: []planmodifier.String{stringplanmodifier.UseStateForUnknown()},
			},
			"name": schema.StringAttribute{
				Description: fmt.Sprintf("Name, %d–%d characters.", openapi.NodeGroupNameMinLength, openapi.NodeGroupNameMaxLength),
				Required:    true,
				Validators:  []validator.String{stringvalidator.LengthBetween(openapi.NodeGroupNameMinLength, openapi.NodeGroupNameMaxLength), fulcrum.NoEdgeSpace()},
			},
			"description": fulcrum.DescriptionAttribute(),
			"labels":      fulcrum.LabelsAttribute(),
			"vip_range": schema.StringAttribute{
				Description: "CIDR the group's load balancer VIPs are allocated from, e.g. `127.77.0.0/16` (written with its network address). " +
					"It may change in place to any range that still holds every allocated VIP.",
				Required:   true,
				Validators: []validator.String{cidr{}},
			},
			"reserved_ports": schema.SetAttribute{
				Description: "Ports no listener of the group may use (the API refuses them with 422), besides those always reserved " +
					fmt.Sprintf("(22 and the agent's own, see `effective_reserved_ports`). Each %d–%d, at most %d. ",
						openapi.NodeGroupReservedPortsItemMin, openapi.NodeGroupReservedPortsItemMax, openapi.NodeGroupReservedPortsMaxItems) +
					"The API refuses (409) to reserve a port a listener of the group uses.",
				ElementType: types.Int64Type,
				Optional:    true,
				Computed:    true,
				Default:     setdefault.StaticValue(types.SetValueMust(types.Int64Type, nil)),
				Validators: []validator.Set{setvalidator.SizeAtMost(openapi.NodeGroupReservedPortsMaxItems),
					setvalidator.ValueInt64sAre(int64validator.Between(openapi.NodeGroupReservedPortsItemMin, openapi.NodeGroupReservedPortsItemMax))},
			},
			"effective_reserved_ports": schema.SetAttribute{
				Description: "Every port a listener of the group is refused: `reserved_ports`, 22 and the agent's own ports.",
				ElementType: types.Int64Type,
				Computed:    true,
			},
			"heartbeat_interval_ms": msAttribute(fmt.Sprintf("How often the group's agents report, in milliseconds (%d–%d). "+
				"Agents learn it from their snapshots.", openapi.NodeGroupHeartbeatIntervalMsMin, openapi.NodeGroupHeartbeatIntervalMsMax),
				defaultHeartbeatIntervalMs, openapi.NodeGroupHeartbeatIntervalMsMin, openapi.NodeGroupHeartbeatIntervalMsMax),
			"down_timeout_ms": msAttribute(fmt.Sprintf("A node silent this long reads `down` and no longer holds back the group's changes, "+
				"in milliseconds (%d–%d; at least twice `heartbeat_interval_ms`).", openapi.NodeGroupDownTimeoutMsMin, openapi.NodeGroupDownTimeoutMsMax),
				defaultDownTimeoutMs, openapi.NodeGroupDownTimeoutMsMin, openapi.NodeGroupDownTimeoutMsMax),
			"down_node_cleanup_after_ms": msAttribute("A node down this long is removed, in milliseconds (at least `down_timeout_ms`). "+
				"It registers again if it comes back.", defaultDownNodeCleanupAfterMs, openapi.NodeGroupDownNodeCleanupAfterMsMin, openapi.NodeGroupDownNodeCleanupAfterMsMax),
			"apply_grace_ms": msAttribute(fmt.Sprintf("A node failing every apply this long no longer holds back the group's changes, "+
				"in milliseconds (%d–%d).", openapi.NodeGroupApplyGraceMsMin, openapi.NodeGroupApplyGraceMsMax),
				defaultApplyGraceMs, openapi.NodeGroupApplyGraceMsMin, openapi.NodeGroupApplyGraceMsMax),
		},
	}
}

// msAttribute is an optional duration in milliseconds with the API's default
// (leaving it out sets the default again).
func msAttribute(description string, def, min, max int64) schema.Int64Attribute {
	return schema.Int64Attribute{
		Description: fmt.Sprintf("%s Defaults to %d.", description, def),
		Optional:    true,
		Computed:    true,
		Default:     int64default.StaticInt64(def),
		Validators:  []validator.Int64{int64validator.Between(min, max)},
	}
}

func (r *Resource) Configure(_ context.Context, req resource.ConfigureRequest, resp *resource.ConfigureResponse) {
	r.client = fulcrum.ClientFrom(req.ProviderData, &resp.Diagnostics)
}

func (r *Resource) Create(ctx context.Context, req resource.CreateRequest, resp *resource.CreateResponse) {
	var plan model
	resp.Diagnostics.Append(req.Plan.Get(ctx, &plan)...)
	if resp.Diagnostics.HasError() {
		return
	}
	body, diags := plan.toCreate(ctx)
	resp.Diagnostics.Append(diags...)
	if resp.Diagnostics.HasError() {
		return
	}
	res, err := r.client.API.CreateNodeGroupWithResponse(ctx, &openapi.CreateNodeGroupParams{IdempotencyKey: fulcrum.NewIdempotencyKey()}, body)
	if err != nil {
		fulcrum.AddRequestError(&resp.Diagnostics, "Could not create the node group", err)
		return
	}
	if res.JSON201 == nil {
		fulcrum.AddProblem(&resp.Diagnostics, "Could not create the node group", res.StatusCode(), res.Body, nil)
		return
	}
	resp.Diagnostics.Append(plan.fromAPI(ctx, res.JSON201)...)
	resp.Diagnostics.Append(resp.State.Set(ctx, &plan)...)
}

func (r *Resource) Read(ctx context.Context, req resource.ReadRequest, resp *resource.ReadResponse) {
	var state model
	resp.Diagnostics.Append(req.State.Get(ctx, &state)...)
	if resp.Diagnostics.HasError() {
		return
	}
	res, err := r.client.API.GetNodeGroupWithResponse(ctx, state.ID.ValueString())
	if err != nil {
		fulcrum.AddRequestError(&resp.Diagnostics, "Could not read the node group", err)
		return
	}
	if res.StatusCode() == http.StatusNotFound {
		resp.State.RemoveResource(ctx)
		return
	}
	if res.JSON200 == nil {
		fulcrum.AddProblem(&resp.Diagnostics, "Could not read the node group", res.StatusCode(), res.Body, nil)
		return
	}
	resp.Diagnostics.Append(state.fromAPI(ctx, res.JSON200)...)
	resp.Diagnostics.Append(resp.State.Set(ctx, &state)...)
}

func (r *Resource) Update(ctx context.Context, req resource.UpdateRequest, resp *resource.UpdateResponse) {
	var plan, state model
	resp.Diagnostics.Append(req.Plan.Get(ctx, &plan)...)
	resp.Diagnostics.Append(req.State.Get(ctx, &state)...)
	if resp.Diagnostics.HasError() {
		return
	}
	body, diags := plan.toUpdate(ctx)
	resp.Diagnostics.Append(diags...)
	if resp.Diagnostics.HasError() {
		return
	}
	res, err := r.client.API.UpdateNodeGroupWithResponse(ctx, state.ID.ValueString(), nil, body)
	if err != nil {
		fulcrum.AddRequestError(&resp.Diagnostics, "Could not update the node group", err)
		return
	}
	if res.JSON200 == nil {
		fulcrum.AddProblem(&resp.Diagnostics, "Could not update the node group", res.StatusCode(), res.Body, nil)
		return
	}
	resp.Diagnostics.Append(plan.fromAPI(ctx, res.JSON200)...)
	resp.Diagnostics.Append(resp.State.Set(ctx, &plan)...)
}

func (r *Resource) Delete(ctx context.Context, req resource.DeleteRequest, resp *resource.DeleteResponse) {
	var state model
	resp.Diagnostics.Append(req.State.Get(ctx, &state)...)
	if resp.Diagnostics.HasError() {
		return
	}
	res, err := r.client.API.DeleteNodeGroupWithResponse(ctx, state.ID.ValueString(), nil)
	if err != nil {
		fulcrum.AddRequestError(&resp.Diagnostics, "Could not delete the node group", err)
		return
	}
	switch res.StatusCode() {
	case http.StatusNoContent, http.StatusAccepted, http.StatusNotFound:
	default:
		fulcrum.AddProblem(&resp.Diagnostics, "Could not delete the node group", res.StatusCode(), res.Body, nil)
	}
}

func (r *Resource) ImportState(ctx context.Context, req resource.ImportStateRequest, resp *resource.ImportStateResponse) {
	resource.ImportStatePassthroughID(ctx, path.Root("id"), req, resp)
}
