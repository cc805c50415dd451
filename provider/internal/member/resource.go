package member

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"regexp"
	"time"

	"github.com/hashicorp/terraform-plugin-framework-timeouts/resource/timeouts"
	"github.com/hashicorp/terraform-plugin-framework-validators/int64validator"
	"github.com/hashicorp/terraform-plugin-framework-validators/mapvalidator"
	"github.com/hashicorp/terraform-plugin-framework-validators/stringvalidator"
	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/booldefault"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/int64default"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/mapdefault"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringdefault"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"

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

// labelKeyRE is the API's label key syntax.
var labelKeyRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9._/-]*[a-z0-9])?$`)

func (r *Resource) Schema(ctx context.Context, _ resource.SchemaRequest, resp *resource.SchemaResponse) {
	resp.Schema = schema.Schema{
		Description: "A member: one backend server of a pool. Weight, enabled and address changes are applied without reloading HAProxy.",
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
				Validators:    []validator.String{stringvalidator.LengthBetween(1, 64)},
			},
			"load_balancer_id": schema.StringAttribute{
				Description:   "The pool's load balancer.",
				Computed:      true,
				PlanModifiers: []planmodifier.String{stringplanmodifier.UseStateForUnknown()},
			},
			"name": schema.StringAttribute{
				Description: "Name, unique among the pool's members; at most 255 characters. Defaults to empty.",
				Optional:    true,
				Computed:    true,
				Default:     stringdefault.StaticString(""),
				Validators:  []validator.String{stringvalidator.LengthAtMost(255), noEdgeSpace{}},
			},
			"description": schema.StringAttribute{
				Description: "Free-form description; at most 1024 characters.",
				Optional:    true,
				Computed:    true,
				Default:     stringdefault.StaticString(""),
				Validators:  []validator.String{stringvalidator.LengthAtMost(1024)},
			},
			"labels": schema.MapAttribute{
				Description: "Up to 64 labels; keys `[a-z0-9]([a-z0-9._/-]*[a-z0-9])?` of at most 63 characters, values of at most 255.",
				ElementType: types.StringType,
				Optional:    true,
				Computed:    true,
				Default:     mapdefault.StaticValue(types.MapValueMust(types.StringType, map[string]attr.Value{})),
				Validators: []validator.Map{
					mapvalidator.SizeAtMost(64),
					mapvalidator.KeysAre(stringvalidator.LengthBetween(1, 63),
						stringvalidator.RegexMatches(labelKeyRE, "must be lowercase letters, digits and . _ / -, starting and ending with a letter or digit")),
					mapvalidator.ValueStringsAre(stringvalidator.LengthAtMost(255)),
				},
			},
			"address": schema.StringAttribute{
				Description: "The backend's IP address or DNS name (at most 253 characters).",
				Required:    true,
				Validators:  []validator.String{hostOrIP{}},
			},
			"port": schema.Int64Attribute{
				Description: "The backend's port, 1 to 65535.",
				Required:    true,
				Validators:  []validator.Int64{int64validator.Between(1, 65535)},
			},
			"weight": schema.Int64Attribute{
				Description: "Relative share of new traffic, 0 to 256; 0 takes no new traffic. Defaults to 1.",
				Optional:    true,
				Computed:    true,
				Default:     int64default.StaticInt64(1),
				Validators:  []validator.Int64{int64validator.Between(0, 256)},
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
				Default:     booldefault.StaticBool(true),
			},
			"max_connections": schema.Int64Attribute{
				Description: "Most concurrent connections to the member, 0 to 1000000; 0 (the default) means unlimited.",
				Optional:    true,
				Computed:    true,
				Default:     int64default.StaticInt64(0),
				Validators:  []validator.Int64{int64validator.Between(0, 1000000)},
			},
			"tenant_id": schema.StringAttribute{
				Description:   "The owning tenant.",
				Computed:      true,
				PlanModifiers: []planmodifier.String{stringplanmodifier.UseStateForUnknown()},
			},
			"provisioning_status": schema.StringAttribute{
				Description:   "`pending_create`, `active`, `pending_update`, `pending_delete` or `error`. Terraform waits for `active` after every change.",
				Computed:      true,
				PlanModifiers: []planmodifier.String{activeAfterApply{}},
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

	res, err := r.client.API.CreateMemberWithResponse(ctx, &openapi.CreateMemberParams{}, plan.toCreate())
	if err != nil {
		fulcrum.AddRequestError(&resp.Diagnostics, "Could not create the member", err)
		return
	}
	if res.JSON201 == nil {
		addProblem(&resp.Diagnostics, "Could not create the member", res.StatusCode(), res.Body)
		return
	}
	plan.fromAPI(res.JSON201)
	// Track the object at once: if waiting fails it is tainted, not leaked.
	resp.Diagnostics.Append(resp.State.Set(ctx, &plan)...)
	m, err := waitActive(ctx, r.client, plan.ID.ValueString())
	if m != nil {
		plan.fromAPI(m)
		resp.Diagnostics.Append(resp.State.Set(ctx, &plan)...)
	}
	addWaitError(&resp.Diagnostics, plan.ID.ValueString(), "active", err)
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
	if reflect.DeepEqual(plan.toUpdate(), state.toUpdate()) {
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
		addProblem(&resp.Diagnostics, "Could not update the member", res.StatusCode(), res.Body)
		return
	}
	plan.fromAPI(res.JSON200)
	resp.Diagnostics.Append(resp.State.Set(ctx, &plan)...)
	m, err := waitActive(ctx, r.client, id)
	if m != nil {
		plan.fromAPI(m)
		resp.Diagnostics.Append(resp.State.Set(ctx, &plan)...)
	}
	addWaitError(&resp.Diagnostics, id, "active", err)
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
		addProblem(&resp.Diagnostics, "Could not delete the member", res.StatusCode(), res.Body)
		return
	}
	err = fulcrum.WaitGone(ctx, func(ctx context.Context) (fulcrum.Status, error) {
		s, _, err := statusAndObject(ctx, r.client, id)
		return s, err
	})
	addWaitError(&resp.Diagnostics, id, "gone", err)
}

func (r *Resource) ImportState(ctx context.Context, req resource.ImportStateRequest, resp *resource.ImportStateResponse) {
	resource.ImportStatePassthroughID(ctx, path.Root("id"), req, resp)
}

// addProblem is the one place API errors become diagnostics; the API's field
// names are the schema's.
func addProblem(diags *diag.Diagnostics, summary string, status int, body []byte) {
	fulcrum.AddProblem(diags, summary, status, body, nil)
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
	addProblem(diags, "Could not read the member", res.StatusCode(), res.Body)
	return nil, false
}

func statusAndObject(ctx context.Context, c *fulcrum.Client, id string) (fulcrum.Status, *openapi.Member, error) {
	var diags diag.Diagnostics
	m, found := get(ctx, c, id, &diags)
	if diags.HasError() {
		return fulcrum.Status{}, nil, fmt.Errorf("%s: %s", diags[0].Summary(), diags[0].Detail())
	}
	if !found {
		return fulcrum.Status{}, nil, nil
	}
	msg := ""
	if m.StatusMessage != nil {
		msg = *m.StatusMessage
	}
	return fulcrum.Status{Found: true, ProvisioningStatus: string(m.ProvisioningStatus), Message: msg}, m, nil
}

// waitActive waits until every node serves the member's current version and
// returns the last object read.
func waitActive(ctx context.Context, c *fulcrum.Client, id string) (*openapi.Member, error) {
	var last *openapi.Member
	err := fulcrum.WaitActive(ctx, func(ctx context.Context) (fulcrum.Status, error) {
		s, m, err := statusAndObject(ctx, c, id)
		if m != nil {
			last = m
		}
		return s, err
	})
	return last, err
}

func addWaitError(diags *diag.Diagnostics, id, want string, err error) {
	switch {
	case err == nil:
	case errors.Is(err, fulcrum.ErrObjectError):
		diags.AddError("The member went to provisioning status error",
			fmt.Sprintf("Member %s could not be applied by the dataplane: %v", id, err))
	default:
		diags.AddError(fmt.Sprintf("Member did not become %s", want), fmt.Sprintf("Member %s: %v", id, err))
	}
}
