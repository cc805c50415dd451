package member

import (
	"context"
	"fmt"
	"net/http"
	"reflect"
	"time"

	"github.com/hashicorp/terraform-plugin-framework-timeouts/resource/timeouts"
	"github.com/hashicorp/terraform-plugin-framework-validators/int64validator"
	"github.com/hashicorp/terraform-plugin-framework-validators/stringvalidator"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/booldefault"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/int64default"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringdefault"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"

	"github.com/fulcrumlb/fulcrum/openapi"
	"github.com/fulcrumlb/fulcrum/provider/internal/fulcrum"
)

// ResourceType is the resource's type name.
const ResourceType = "fulcrum_member"

// Default timeouts of the timeouts block.
const (
	defaultCreateTimeout = 10 * time.Minute
	defaultUpdateTimeout = 10 * time.Minute
	defaultDeleteTimeout = 10 * time.Minute
)

var (
	_ resource.Resource                = (*Resource)(nil)
	_ resource.ResourceWithConfigure   = (*Resource)(nil)
	_ resource.ResourceWithImportState = (*Resource)(nil)
	_ resource.ResourceWithModifyPlan  = (*Resource)(nil)
)

// Resource is fulcrum_member.
type Resource struct {
	client *fulcrum.Client
}

// NewResource is the constructor the provider registers.
func NewResource() resource.Resource { return &Resource{} }

func (r *Resource) Metadata(_ context.Context, _ resource.MetadataRequest, resp *resource.MetadataResponse) {
	resp.TypeName = ResourceType
}

func (r *Resource) Schema(ctx context.Context, _ resource.SchemaRequest, resp *resource.SchemaResponse) {
	resp.Schema = schema.Schema{
		Description: "A member: one backend server of a pool. Weight, enabled and address changes are applied without reloading HAProxy." + fulcrum.PlanDescription,
		Attributes: map[string]schema.Attribute{
			"id": schema.StringAttribute{
				Description:   "The member's id (`mbr_…`).",
				Computed:      true,
				PlanModifiers: []planmodifier.String{stringplanmodifier.UseStateForUnknown()},
			},
			"pool_id": schema.StringAttribute{
				Description:   "The pool the member belongs to. Changing it replaces the member.",
				Required:      true,
				PlanModifiers: []planmodifier.String{stringplanmodifier.RequiresReplace()},
				Validators:    []validator.String{stringvalidator.LengthBetween(1, openapi.ParamIDMaxLength)},
			},
			"load_balancer_id": schema.StringAttribute{
				Description:   "The pool's load balancer.",
				Computed:      true,
				PlanModifiers: []planmodifier.String{stringplanmodifier.UseStateForUnknown()},
			},
			"name": schema.StringAttribute{
				Description: fmt.Sprintf("Name, unique among the pool's members; at most %d characters. Defaults to empty.", openapi.MemberNameMaxLength),
				Optional:    true,
				Computed:    true,
				Default:     stringdefault.StaticString(""),
				Validators:  []validator.String{stringvalidator.LengthAtMost(openapi.MemberNameMaxLength), fulcrum.NoEdgeSpace()},
			},
			"description": fulcrum.DescriptionAttribute(),
			"labels":      fulcrum.LabelsAttribute(),
			"address": schema.StringAttribute{
				Description: fmt.Sprintf("The backend's IP address or DNS name (at most %d characters).", openapi.MemberAddressMaxLength),
				Required:    true,
				Validators:  []validator.String{fulcrum.HostOrIP()},
			},
			"port": schema.Int64Attribute{
				Description: fmt.Sprintf("The backend's port, %d to %d.", openapi.MemberPortMin, openapi.MemberPortMax),
				Required:    true,
				Validators:  []validator.Int64{int64validator.Between(openapi.MemberPortMin, openapi.MemberPortMax)},
			},
			"weight": schema.Int64Attribute{
				Description: fmt.Sprintf("Relative share of new traffic, %d to %d; 0 takes no new traffic. Defaults to %d.", openapi.MemberWeightMin, openapi.MemberWeightMax, openapi.MemberWeightDefault),
				Optional:    true,
				Computed:    true,
				Default:     int64default.StaticInt64(openapi.MemberWeightDefault),
				Validators:  []validator.Int64{int64validator.Between(openapi.MemberWeightMin, openapi.MemberWeightMax)},
			},
			"backup": schema.BoolAttribute{
				Description: "Only used when no other member is up. Defaults to `false`.",
				Optional:    true,
				Computed:    true,
				Default:     booldefault.StaticBool(false),
			},
			"enabled": schema.BoolAttribute{
				Description: "When `false` the member is drained and takes no traffic. Defaults to `true`.",
				Optional:    true,
				Computed:    true,
				Default:     booldefault.StaticBool(openapi.MemberEnabledDefault),
			},
			"max_connections": schema.Int64Attribute{
				Description: fmt.Sprintf("Most concurrent connections to the member, %d to %d; 0 (the default) means unlimited.", openapi.MemberMaxConnectionsMin, openapi.MemberMaxConnectionsMax),
				Optional:    true,
				Computed:    true,
				Default:     int64default.StaticInt64(0),
				Validators:  []validator.Int64{int64validator.Between(openapi.MemberMaxConnectionsMin, openapi.MemberMaxConnectionsMax)},
			},
			"tenant_id": schema.StringAttribute{
				Description:   "The owning tenant.",
				Computed:      true,
				PlanModifiers: []planmodifier.String{stringplanmodifier.UseStateForUnknown()},
			},
			"provisioning_status": schema.StringAttribute{
				Description:   "`pending_create`, `active`, `pending_update`, `pending_delete` or `error`. Terraform waits for `active` after every change.",
				Computed:      true,
				PlanModifiers: []planmodifier.String{fulcrum.ActiveAfterApply()},
			},
			"operating_status": schema.StringAttribute{
				Description: "Observed health from the dataplane: `online`, `offline`, `draining` or `no_monitor`.",
				Computed:    true,
			},
		},
		Blocks: map[string]schema.Block{
			"timeouts": timeouts.Block(ctx, timeouts.Opts{Create: true, Update: true, Delete: true}),
		},
	}
}

func (r *Resource) Configure(_ context.Context, req resource.ConfigureRequest, resp *resource.ConfigureResponse) {
	r.client = fulcrum.ClientFrom(req.ProviderData, &resp.Diagnostics)
}

// ModifyPlan re-applies a member in error and checks a created or changed
// member with a dry run (see fulcrum.PlanDescription).
func (r *Resource) ModifyPlan(ctx context.Context, req resource.ModifyPlanRequest, resp *resource.ModifyPlanResponse) {
	fulcrum.ReapplyInError(ctx, req, resp, path.Root("operating_status"))
	kind := fulcrum.PlannedDryRun(ctx, r.client, req, resp, path.Root("pool_id"))
	if kind == fulcrum.NoDryRun {
		return
	}
	var plan model
	resp.Diagnostics.Append(resp.Plan.Get(ctx, &plan)...)
	if resp.Diagnostics.HasError() {
		return
	}
	if kind == fulcrum.DryRunCreate {
		res, err := r.client.API.CreateMemberWithResponse(ctx, &openapi.CreateMemberParams{DryRun: fulcrum.DryRun()}, plan.toCreate())
		if err != nil {
			fulcrum.AddDryRunError(&resp.Diagnostics, "member", err)
			return
		}
		fulcrum.AddDryRunProblem(&resp.Diagnostics, "member", res.StatusCode(), res.Body, nil)
		return
	}
	res, err := r.client.API.UpdateMemberWithResponse(ctx, plan.ID.ValueString(), &openapi.UpdateMemberParams{DryRun: fulcrum.DryRun()}, plan.toUpdate())
	if err != nil {
		fulcrum.AddDryRunError(&resp.Diagnostics, "member", err)
		return
	}
	fulcrum.AddDryRunProblem(&resp.Diagnostics, "member", res.StatusCode(), res.Body, nil)
}

func (r *Resource) Create(ctx context.Context, req resource.CreateRequest, resp *resource.CreateResponse) {
	var plan model
	resp.Diagnostics.Append(req.Plan.Get(ctx, &plan)...)
	if resp.Diagnostics.HasError() {
		return
	}
	timeout, d := plan.Timeouts.Create(ctx, defaultCreateTimeout)
	resp.Diagnostics.Append(d...)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	res, err := r.client.API.CreateMemberWithResponse(ctx, &openapi.CreateMemberParams{IdempotencyKey: fulcrum.NewIdempotencyKey()}, plan.toCreate())
	if err != nil {
		fulcrum.AddRequestError(&resp.Diagnostics, "Could not create the member", err)
		return
	}
	if res.JSON201 == nil {
		fulcrum.AddProblem(&resp.Diagnostics, "Could not create the member", res.StatusCode(), res.Body, nil)
		return
	}
	plan.fromAPI(res.JSON201)
	// Track the object at once: if waiting fails it is tainted, not leaked.
	resp.Diagnostics.Append(resp.State.Set(ctx, &plan)...)
	m, err := wait.Active(ctx, r.client, plan.ID.ValueString())
	if m != nil {
		plan.fromAPI(m)
		resp.Diagnostics.Append(resp.State.Set(ctx, &plan)...)
	}
	wait.AddError(&resp.Diagnostics, plan.ID.ValueString(), "active", err)
}

func (r *Resource) Read(ctx context.Context, req resource.ReadRequest, resp *resource.ReadResponse) {
	var state model
	resp.Diagnostics.Append(req.State.Get(ctx, &state)...)
	if resp.Diagnostics.HasError() {
		return
	}
	m, found := get(ctx, r.client, state.ID.ValueString(), &resp.Diagnostics)
	if resp.Diagnostics.HasError() {
		return
	}
	if !found || m.ProvisioningStatus == openapi.ProvisioningStatusPendingDelete {
		resp.State.RemoveResource(ctx)
		return
	}
	state.fromAPI(m)
	resp.Diagnostics.Append(resp.State.Set(ctx, &state)...)
}

func (r *Resource) Update(ctx context.Context, req resource.UpdateRequest, resp *resource.UpdateResponse) {
	var plan, state model
	resp.Diagnostics.Append(req.Plan.Get(ctx, &plan)...)
	resp.Diagnostics.Append(req.State.Get(ctx, &state)...)
	if resp.Diagnostics.HasError() {
		return
	}
	if reflect.DeepEqual(plan.toUpdate(), state.toUpdate()) && !fulcrum.InError(state.ProvisioningStatus) {
		// Only the timeouts block changed: nothing to tell the API.
		state.Timeouts = plan.Timeouts
		resp.Diagnostics.Append(resp.State.Set(ctx, &state)...)
		return
	}
	timeout, d := plan.Timeouts.Update(ctx, defaultUpdateTimeout)
	resp.Diagnostics.Append(d...)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	id := state.ID.ValueString()
	res, err := r.client.API.UpdateMemberWithResponse(ctx, id, &openapi.UpdateMemberParams{}, plan.toUpdate())
	if err != nil {
		fulcrum.AddRequestError(&resp.Diagnostics, "Could not update the member", err)
		return
	}
	if res.JSON200 == nil {
		fulcrum.AddProblem(&resp.Diagnostics, "Could not update the member", res.StatusCode(), res.Body, nil)
		return
	}
	plan.fromAPI(res.JSON200)
	resp.Diagnostics.Append(resp.State.Set(ctx, &plan)...)
	m, err := wait.Active(ctx, r.client, id)
	if m != nil {
		plan.fromAPI(m)
		resp.Diagnostics.Append(resp.State.Set(ctx, &plan)...)
	}
	wait.AddError(&resp.Diagnostics, id, "active", err)
}

func (r *Resource) Delete(ctx context.Context, req resource.DeleteRequest, resp *resource.DeleteResponse) {
	var state model
	resp.Diagnostics.Append(req.State.Get(ctx, &state)...)
	if resp.Diagnostics.HasError() {
		return
	}
	timeout, d := state.Timeouts.Delete(ctx, defaultDeleteTimeout)
	resp.Diagnostics.Append(d...)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	id := state.ID.ValueString()
	res, err := r.client.API.DeleteMemberWithResponse(ctx, id, &openapi.DeleteMemberParams{})
	if err != nil {
		fulcrum.AddRequestError(&resp.Diagnostics, "Could not delete the member", err)
		return
	}
	switch res.StatusCode() {
	case http.StatusAccepted, http.StatusNoContent:
	case http.StatusNotFound:
		return // already gone
	default:
		fulcrum.AddProblem(&resp.Diagnostics, "Could not delete the member", res.StatusCode(), res.Body, nil)
		return
	}
	wait.AddError(&resp.Diagnostics, id, "gone", wait.Gone(ctx, r.client, id))
}

func (r *Resource) ImportState(ctx context.Context, req resource.ImportStateRequest, resp *resource.ImportStateResponse) {
	resource.ImportStatePassthroughID(ctx, path.Root("id"), req, resp)
}

// get reads one member; found is false on 404.
func get(ctx context.Context, c *fulcrum.Client, id string, diags *diag.Diagnostics) (m *openapi.Member, found bool) {
	res, err := c.API.GetMemberWithResponse(ctx, id)
	if err != nil {
		fulcrum.AddRequestError(diags, "Could not read the member", err)
		return nil, false
	}
	switch {
	case res.JSON200 != nil:
		return res.JSON200, true
	case res.StatusCode() == http.StatusNotFound:
		return nil, false
	}
	fulcrum.AddProblem(diags, "Could not read the member", res.StatusCode(), res.Body, nil)
	return nil, false
}

// wait waits until every node serves a member's current version, or until
// the member is gone.
var wait = fulcrum.Waiter[openapi.Member]{
	Kind: "member",
	Get:  get,
	Status: func(m *openapi.Member) (openapi.ProvisioningStatus, *string) {
		return m.ProvisioningStatus, m.StatusMessage
	},
}
