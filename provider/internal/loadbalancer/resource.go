package loadbalancer

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"reflect"
	"time"

	"github.com/hashicorp/terraform-plugin-framework-timeouts/resource/timeouts"
	"github.com/hashicorp/terraform-plugin-framework-validators/stringvalidator"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/booldefault"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringdefault"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/fulcrumlb/fulcrum/openapi"
	"github.com/fulcrumlb/fulcrum/provider/internal/fulcrum"
)

// ResourceType is the resource's type name.
const ResourceType = "fulcrum_load_balancer"

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

// Resource is fulcrum_load_balancer.
type Resource struct {
	client *fulcrum.Client
}

// NewResource is the constructor the provider registers.
func NewResource() resource.Resource { return &Resource{} }

// resourceModel adds what only the resource has: provider-side settings.
type resourceModel struct {
	model
	CascadeDelete types.Bool     `tfsdk:"cascade_delete"`
	Timeouts      timeouts.Value `tfsdk:"timeouts"`
}

func (r *Resource) Metadata(_ context.Context, _ resource.MetadataRequest, resp *resource.MetadataResponse) {
	resp.TypeName = ResourceType
}

func (r *Resource) Schema(ctx context.Context, _ resource.SchemaRequest, resp *resource.SchemaResponse) {
	resp.Schema = schema.Schema{
		Description: "A load balancer: a virtual IP (VIP) served by every healthy node of a node group. Listeners, pools and members hang off it." + fulcrum.PlanDescription,
		Attributes: map[string]schema.Attribute{
			"id": schema.StringAttribute{
				Description:   "The load balancer's id (`lb_…`).",
				Computed:      true,
				PlanModifiers: []planmodifier.String{stringplanmodifier.UseStateForUnknown()},
			},
			"name": schema.StringAttribute{
				Description: fmt.Sprintf("Name, unique among the tenant's load balancers; at most %d characters. Defaults to empty.", openapi.LoadBalancerNameMaxLength),
				Optional:    true,
				Computed:    true,
				Default:     stringdefault.StaticString(""),
				Validators:  []validator.String{stringvalidator.LengthAtMost(openapi.LoadBalancerNameMaxLength), fulcrum.NoEdgeSpace()},
			},
			"description": fulcrum.DescriptionAttribute(),
			"labels":      fulcrum.LabelsAttribute(),
			"node_group_id": schema.StringAttribute{
				Description: "The node group serving the load balancer. Defaults to the node group named `default`. Changing it replaces the load balancer.",
				Optional:    true,
				Computed:    true,
				PlanModifiers: []planmodifier.String{
					stringplanmodifier.UseStateForUnknown(),
					stringplanmodifier.RequiresReplace(),
				},
				Validators: []validator.String{stringvalidator.LengthBetween(1, openapi.ParamIDMaxLength)},
			},
			"vip_address": schema.StringAttribute{
				Description: "The virtual IP. Allocated from the node group's VIP range unless given (it must lie in the range). Changing it replaces the load balancer.",
				Optional:    true,
				Computed:    true,
				PlanModifiers: []planmodifier.String{
					stringplanmodifier.UseStateForUnknown(),
					stringplanmodifier.RequiresReplaceIf(vipChanged, "Replaces the load balancer when the address changes.", "Replaces the load balancer when the address changes."),
				},
				Validators: []validator.String{ipAddress{}},
			},
			"enabled": schema.BoolAttribute{
				Description: "Whether the nodes serve the load balancer. Defaults to `true`.",
				Optional:    true,
				Computed:    true,
				Default:     booldefault.StaticBool(true),
			},
			"deletion_protection": schema.BoolAttribute{
				Description: "When `true` the API refuses to delete the load balancer. Defaults to `false`.",
				Optional:    true,
				Computed:    true,
				Default:     booldefault.StaticBool(false),
			},
			"cascade_delete": schema.BoolAttribute{
				Description: "Provider-side: when `true`, destroying the load balancer also deletes its listeners, pools, members and routing rules, including ones Terraform does not manage. When `false` (the default) the API refuses to delete a load balancer that still has children.",
				Optional:    true,
				Computed:    true,
				Default:     booldefault.StaticBool(false),
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
				Description: "Observed health: `online`, `degraded`, `offline`, `no_monitor` or `error`.",
				Computed:    true,
			},
		},
		Blocks: map[string]schema.Block{
			"timeouts": timeouts.Block(ctx, timeouts.Opts{Create: true, Update: true, Delete: true}),
		},
	}
}

// vipChanged replaces the load balancer only when the planned VIP is another
// address, not another spelling of the same one.
func vipChanged(_ context.Context, req planmodifier.StringRequest, resp *stringplanmodifier.RequiresReplaceIfFuncResponse) {
	resp.RequiresReplace = !fulcrum.SameIP(req.StateValue, req.PlanValue.ValueString())
}

func (r *Resource) Configure(_ context.Context, req resource.ConfigureRequest, resp *resource.ConfigureResponse) {
	r.client = fulcrum.ClientFrom(req.ProviderData, &resp.Diagnostics)
}

// ModifyPlan re-applies a load balancer in error and checks a created or changed
// load balancer with a dry run (see fulcrum.PlanDescription).
func (r *Resource) ModifyPlan(ctx context.Context, req resource.ModifyPlanRequest, resp *resource.ModifyPlanResponse) {
	fulcrum.ReapplyInError(ctx, req, resp, path.Root("operating_status"))
	kind := fulcrum.PlannedDryRun(ctx, r.client, req, resp, path.Root("node_group_id"), path.Root("vip_address"))
	if kind == fulcrum.NoDryRun {
		return
	}
	var plan resourceModel
	resp.Diagnostics.Append(resp.Plan.Get(ctx, &plan)...)
	if resp.Diagnostics.HasError() {
		return
	}
	if kind == fulcrum.DryRunCreate {
		res, err := r.client.API.CreateLoadBalancerWithResponse(ctx, &openapi.CreateLoadBalancerParams{DryRun: fulcrum.DryRun()}, plan.toCreate())
		if err != nil {
			fulcrum.AddDryRunError(&resp.Diagnostics, "load balancer", err)
			return
		}
		fulcrum.AddDryRunProblem(&resp.Diagnostics, "load balancer", res.StatusCode(), res.Body, nil)
		return
	}
	res, err := r.client.API.UpdateLoadBalancerWithResponse(ctx, plan.ID.ValueString(), &openapi.UpdateLoadBalancerParams{DryRun: fulcrum.DryRun()}, plan.toUpdate())
	if err != nil {
		fulcrum.AddDryRunError(&resp.Diagnostics, "load balancer", err)
		return
	}
	fulcrum.AddDryRunProblem(&resp.Diagnostics, "load balancer", res.StatusCode(), res.Body, nil)
}

func (r *Resource) Create(ctx context.Context, req resource.CreateRequest, resp *resource.CreateResponse) {
	var plan resourceModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &plan)...)
	if resp.Diagnostics.HasError() {
		return
	}
	timeout, d := plan.Timeouts.Create(ctx, defaultCreateTimeout)
	resp.Diagnostics.Append(d...)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	res, err := r.client.API.CreateLoadBalancerWithResponse(ctx, &openapi.CreateLoadBalancerParams{IdempotencyKey: fulcrum.NewIdempotencyKey()}, plan.toCreate())
	if err != nil {
		fulcrum.AddRequestError(&resp.Diagnostics, "Could not create the load balancer", err)
		return
	}
	if res.JSON201 == nil {
		fulcrum.AddProblem(&resp.Diagnostics, "Could not create the load balancer", res.StatusCode(), res.Body, nil)
		return
	}
	plan.fromAPI(res.JSON201)
	// Track the object at once: if waiting fails it is tainted, not leaked.
	resp.Diagnostics.Append(resp.State.Set(ctx, &plan)...)
	lb, err := wait.Active(ctx, r.client, plan.ID.ValueString())
	if lb != nil {
		plan.fromAPI(lb)
		resp.Diagnostics.Append(resp.State.Set(ctx, &plan)...)
	}
	wait.AddError(&resp.Diagnostics, plan.ID.ValueString(), "active", err)
}

func (r *Resource) Read(ctx context.Context, req resource.ReadRequest, resp *resource.ReadResponse) {
	var state resourceModel
	resp.Diagnostics.Append(req.State.Get(ctx, &state)...)
	if resp.Diagnostics.HasError() {
		return
	}
	lb, found := get(ctx, r.client, state.ID.ValueString(), &resp.Diagnostics)
	if resp.Diagnostics.HasError() {
		return
	}
	if !found || lb.ProvisioningStatus == openapi.ProvisioningStatusPendingDelete {
		resp.State.RemoveResource(ctx)
		return
	}
	state.fromAPI(lb)
	if state.CascadeDelete.IsNull() { // imported
		state.CascadeDelete = types.BoolValue(false)
	}
	resp.Diagnostics.Append(resp.State.Set(ctx, &state)...)
}

func (r *Resource) Update(ctx context.Context, req resource.UpdateRequest, resp *resource.UpdateResponse) {
	var plan, state resourceModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &plan)...)
	resp.Diagnostics.Append(req.State.Get(ctx, &state)...)
	if resp.Diagnostics.HasError() {
		return
	}
	// Unchanged values are sent again only to re-apply an object in error.
	reapply := reflect.DeepEqual(plan.toUpdate(), state.toUpdate())
	if reapply && !fulcrum.InError(state.ProvisioningStatus) {
		// Only provider-side settings (or the VIP's spelling) changed:
		// nothing to tell the API.
		vip := plan.VIPAddress
		plan.model = state.model
		if fulcrum.SameIP(vip, state.VIPAddress.ValueString()) {
			plan.VIPAddress = vip
		}
		resp.Diagnostics.Append(resp.State.Set(ctx, &plan)...)
		return
	}
	timeout, d := plan.Timeouts.Update(ctx, defaultUpdateTimeout)
	resp.Diagnostics.Append(d...)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	id := state.ID.ValueString()
	res, err := r.client.API.UpdateLoadBalancerWithResponse(ctx, id, &openapi.UpdateLoadBalancerParams{}, plan.toUpdate())
	if err != nil {
		fulcrum.AddRequestError(&resp.Diagnostics, "Could not update the load balancer", err)
		return
	}
	if res.JSON200 == nil {
		fulcrum.AddProblem(&resp.Diagnostics, "Could not update the load balancer", res.StatusCode(), res.Body, nil)
		return
	}
	plan.fromAPI(res.JSON200)
	resp.Diagnostics.Append(resp.State.Set(ctx, &plan)...)
	lb, err := wait.Active(ctx, r.client, id)
	if reapply && errors.Is(err, fulcrum.ErrObjectError) {
		// The state keeps the update's answer (pending_update): see
		// AddReapplyWarning.
		wait.AddReapplyWarning(&resp.Diagnostics, id, err)
		return
	}
	if lb != nil {
		plan.fromAPI(lb)
		resp.Diagnostics.Append(resp.State.Set(ctx, &plan)...)
	}
	wait.AddError(&resp.Diagnostics, id, "active", err)
}

func (r *Resource) Delete(ctx context.Context, req resource.DeleteRequest, resp *resource.DeleteResponse) {
	var state resourceModel
	resp.Diagnostics.Append(req.State.Get(ctx, &state)...)
	if resp.Diagnostics.HasError() {
		return
	}
	timeout, d := state.Timeouts.Delete(ctx, defaultDeleteTimeout)
	resp.Diagnostics.Append(d...)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	id := state.ID.ValueString()
	params := &openapi.DeleteLoadBalancerParams{}
	if state.CascadeDelete.ValueBool() {
		cascade := true
		params.Cascade = &cascade
	}
	res, err := r.client.API.DeleteLoadBalancerWithResponse(ctx, id, params)
	if err != nil {
		fulcrum.AddRequestError(&resp.Diagnostics, "Could not delete the load balancer", err)
		return
	}
	switch res.StatusCode() {
	case http.StatusAccepted, http.StatusNoContent:
	case http.StatusNotFound:
		return // already gone
	default:
		fulcrum.AddProblem(&resp.Diagnostics, "Could not delete the load balancer", res.StatusCode(), res.Body, nil)
		return
	}
	wait.AddError(&resp.Diagnostics, id, "gone", wait.Gone(ctx, r.client, id))
}

func (r *Resource) ImportState(ctx context.Context, req resource.ImportStateRequest, resp *resource.ImportStateResponse) {
	resource.ImportStatePassthroughID(ctx, path.Root("id"), req, resp)
}

// get reads one load balancer; found is false on 404.
func get(ctx context.Context, c *fulcrum.Client, id string, diags *diag.Diagnostics) (lb *openapi.LoadBalancer, found bool) {
	res, err := c.API.GetLoadBalancerWithResponse(ctx, id)
	if err != nil {
		fulcrum.AddRequestError(diags, "Could not read the load balancer", err)
		return nil, false
	}
	switch {
	case res.JSON200 != nil:
		return res.JSON200, true
	case res.StatusCode() == http.StatusNotFound:
		return nil, false
	}
	fulcrum.AddProblem(diags, "Could not read the load balancer", res.StatusCode(), res.Body, nil)
	return nil, false
}

// wait waits until every node serves a load balancer's current version, or
// until the load balancer is gone.
var wait = fulcrum.Waiter[openapi.LoadBalancer]{
	Kind: "load balancer",
	Get:  get,
	Status: func(lb *openapi.LoadBalancer) (openapi.ProvisioningStatus, *string) {
		return lb.ProvisioningStatus, lb.StatusMessage
	},
}

// ipAddress accepts an IPv4 or IPv6 address without a zone.
type ipAddress struct{}

func (ipAddress) Description(context.Context) string { return "must be an IPv4 or IPv6 address" }
func (v ipAddress) MarkdownDescription(ctx context.Context) string {
	return v.Description(ctx)
}

func (ipAddress) ValidateString(_ context.Context, req validator.StringRequest, resp *validator.StringResponse) {
	if req.ConfigValue.IsNull() || req.ConfigValue.IsUnknown() {
		return
	}
	a, err := netip.ParseAddr(req.ConfigValue.ValueString())
	if err != nil || a.Zone() != "" {
		resp.Diagnostics.AddAttributeError(req.Path, "Invalid IP address",
			fmt.Sprintf("%s must be an IPv4 or IPv6 address without a zone, got %q.", req.Path, req.ConfigValue.ValueString()))
	}
}
