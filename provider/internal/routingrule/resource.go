package routingrule

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/hashicorp/terraform-plugin-framework-timeouts/resource/timeouts"
	"github.com/hashicorp/terraform-plugin-framework-validators/int64validator"
	"github.com/hashicorp/terraform-plugin-framework-validators/listvalidator"
	"github.com/hashicorp/terraform-plugin-framework-validators/stringvalidator"
	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/booldefault"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/int64default"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/listdefault"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringdefault"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/fulcrumlb/fulcrum/openapi"
	"github.com/fulcrumlb/fulcrum/provider/internal/fulcrum"
)

// ResourceType is the resource's type name.
const ResourceType = "fulcrum_routing_rule"

// Default timeouts of the timeouts block.
const (
	defaultCreateTimeout = 10 * time.Minute
	defaultUpdateTimeout = 10 * time.Minute
	defaultDeleteTimeout = 10 * time.Minute
)

var (
	_ resource.Resource                   = (*Resource)(nil)
	_ resource.ResourceWithConfigure      = (*Resource)(nil)
	_ resource.ResourceWithImportState    = (*Resource)(nil)
	_ resource.ResourceWithValidateConfig = (*Resource)(nil)
	_ resource.ResourceWithModifyPlan     = (*Resource)(nil)
)

// Resource is fulcrum_routing_rule.
type Resource struct {
	client *fulcrum.Client
}

// NewResource is the constructor the provider registers.
func NewResource() resource.Resource { return &Resource{} }

// Enumerations of the API.
var (
	conditionFields = []string{"host", "path", "header", "method", "query", "cookie", "source_ip"}
	matchKinds      = []string{"exact", "prefix", "suffix", "contains", "regex"}
	actionTypes     = []string{"forward", "redirect", "fixed_response", "deny"}
	redirectCodes   = []int64{301, 302, 303, 307, 308}
)

// conditionAttributes describe one condition; conditionType is their object type.
var conditionAttributes = map[string]schema.Attribute{
	"field": schema.StringAttribute{
		Description: "What to test: `" + strings.Join(conditionFields, "`, `") + "`.",
		Required:    true,
		Validators:  []validator.String{stringvalidator.OneOf(conditionFields...)},
	},
	"match": schema.StringAttribute{
		Description: "How values match: `" + strings.Join(matchKinds, "`, `") + "`. Defaults to `exact`; `source_ip` and `method` take `exact` only (`source_ip` values are CIDRs).",
		Optional:    true, Computed: true,
		Default:    stringdefault.StaticString(defaultMatch),
		Validators: []validator.String{stringvalidator.OneOf(matchKinds...)},
	},
	"key": schema.StringAttribute{
		Description: "The header, query parameter or cookie name; required for `header`, `query` and `cookie`, not allowed otherwise.",
		Optional:    true,
		Validators:  []validator.String{stringvalidator.LengthBetween(1, 256)},
	},
	"values": schema.ListAttribute{
		Description: fmt.Sprintf("%d to %d values; any one matching is enough.", openapi.RuleConditionValuesMinItems, openapi.RuleConditionValuesMaxItems),
		ElementType: types.StringType,
		Required:    true,
		Validators:  []validator.List{listvalidator.SizeBetween(openapi.RuleConditionValuesMinItems, openapi.RuleConditionValuesMaxItems)},
	},
	"invert": schema.BoolAttribute{
		Description: "Negate the condition. Defaults to `false`.",
		Optional:    true, Computed: true,
		Default: booldefault.StaticBool(false),
	},
}

func conditionType() types.ObjectType {
	attrTypes := map[string]attr.Type{}
	for name, a := range conditionAttributes {
		attrTypes[name] = a.GetType()
	}
	return types.ObjectType{AttrTypes: attrTypes}
}

func (r *Resource) Metadata(_ context.Context, _ resource.MetadataRequest, resp *resource.MetadataResponse) {
	resp.TypeName = ResourceType
}

func (r *Resource) Schema(ctx context.Context, _ resource.SchemaRequest, resp *resource.SchemaResponse) {
	resp.Schema = schema.Schema{
		Description: "A routing rule of an http or https listener. Rules run by ascending `priority`; the first whose conditions all match " +
			"applies its action, and requests no rule matches go to the listener's default pool. Terraform waits until every node serves the change." +
			fulcrum.PlanDescription,
		Attributes: map[string]schema.Attribute{
			"id": schema.StringAttribute{
				Description:   "The rule's id (`rule_…`).",
				Computed:      true,
				PlanModifiers: []planmodifier.String{stringplanmodifier.UseStateForUnknown()},
			},
			"listener_id": schema.StringAttribute{
				Description:   "The http or https listener the rule belongs to. Changing it replaces the rule.",
				Required:      true,
				PlanModifiers: []planmodifier.String{stringplanmodifier.RequiresReplace()},
				Validators:    []validator.String{stringvalidator.LengthBetween(1, openapi.ParamIDMaxLength)},
			},
			"load_balancer_id": schema.StringAttribute{
				Description:   "The listener's load balancer.",
				Computed:      true,
				PlanModifiers: []planmodifier.String{stringplanmodifier.UseStateForUnknown()},
			},
			"name": schema.StringAttribute{
				Description: fmt.Sprintf("Name, unique among the listener's rules; at most %d characters. Defaults to empty.", openapi.RoutingRuleNameMaxLength),
				Optional:    true, Computed: true,
				Default:    stringdefault.StaticString(""),
				Validators: []validator.String{stringvalidator.LengthAtMost(openapi.RoutingRuleNameMaxLength), fulcrum.NoEdgeSpace()},
			},
			"description": fulcrum.DescriptionAttribute(),
			"labels":      fulcrum.LabelsAttribute(),
			"priority": schema.Int64Attribute{
				Description: fmt.Sprintf("Order of evaluation, %d–%d, lowest first; unique per listener.", openapi.RoutingRulePriorityMin, openapi.RoutingRulePriorityMax),
				Required:    true,
				Validators:  []validator.Int64{int64validator.Between(openapi.RoutingRulePriorityMin, openapi.RoutingRulePriorityMax)},
			},
			"conditions": schema.ListNestedAttribute{
				Description: fmt.Sprintf("Up to %d conditions that must all match. None (the default) matches every request.", openapi.RoutingRuleConditionsMaxItems),
				Optional:    true, Computed: true,
				Default:      listdefault.StaticValue(types.ListValueMust(conditionType(), []attr.Value{})),
				Validators:   []validator.List{listvalidator.SizeAtMost(openapi.RoutingRuleConditionsMaxItems)},
				NestedObject: schema.NestedAttributeObject{Attributes: conditionAttributes},
			},
			"provisioning_status": schema.StringAttribute{
				Description:   "`pending_create`, `active`, `pending_update`, `pending_delete` or `error`. Terraform waits for `active` after every change.",
				Computed:      true,
				PlanModifiers: []planmodifier.String{fulcrum.ActiveAfterApply()},
			},
			"action": schema.SingleNestedAttribute{
				Description: "What a matching request gets. Set the nested object named by `type` (none for `deny`).",
				Required:    true,
				Attributes: map[string]schema.Attribute{
					"type": schema.StringAttribute{
						Description: "`forward`, `redirect`, `fixed_response` or `deny` (403).",
						Required:    true,
						Validators:  []validator.String{stringvalidator.OneOf(actionTypes...)},
					},
					"forward": schema.SingleNestedAttribute{
						Description: "For `forward`: the pool, or pools split by weight, to send the request to.",
						Optional:    true,
						Attributes: map[string]schema.Attribute{
							"pools": schema.ListNestedAttribute{
								Description: fmt.Sprintf("%d to %d http pools of the listener's load balancer; at least one with a weight above 0.", openapi.RuleActionForwardPoolsMinItems, openapi.RuleActionForwardPoolsMaxItems),
								Required:    true,
								Validators:  []validator.List{listvalidator.SizeBetween(openapi.RuleActionForwardPoolsMinItems, openapi.RuleActionForwardPoolsMaxItems)},
								NestedObject: schema.NestedAttributeObject{Attributes: map[string]schema.Attribute{
									"pool_id": schema.StringAttribute{
										Description: "The pool's id.",
										Required:    true,
										Validators:  []validator.String{stringvalidator.LengthBetween(1, openapi.ParamIDMaxLength)},
									},
									"weight": schema.Int64Attribute{
										Description: fmt.Sprintf("Share of the requests, %d–%d. Defaults to %d.", openapi.WeightedPoolWeightMin, openapi.WeightedPoolWeightMax, defaultWeight),
										Optional:    true, Computed: true,
										Default:    int64default.StaticInt64(defaultWeight),
										Validators: []validator.Int64{int64validator.Between(openapi.WeightedPoolWeightMin, openapi.WeightedPoolWeightMax)},
									},
								}},
							},
						},
					},
					"redirect": schema.SingleNestedAttribute{
						Description: "For `redirect`: exactly one of `url`, `prefix`, or any of `scheme`/`host`/`port` (the rest of the request URL is kept).",
						Optional:    true,
						Attributes: map[string]schema.Attribute{
							"url": schema.StringAttribute{
								Description: "Absolute URL to redirect to.",
								Optional:    true,
								Validators:  []validator.String{stringvalidator.LengthAtLeast(1)},
							},
							"prefix": schema.StringAttribute{
								Description: "Absolute URL prefix; the request path and query are appended.",
								Optional:    true,
								Validators:  []validator.String{stringvalidator.LengthAtLeast(1)},
							},
							"scheme": schema.StringAttribute{
								Description: "`http` or `https`.",
								Optional:    true,
								Validators:  []validator.String{stringvalidator.OneOf("http", "https")},
							},
							"host": schema.StringAttribute{
								Description: "Host name to redirect to.",
								Optional:    true,
								Validators:  []validator.String{stringvalidator.LengthBetween(1, 253)},
							},
							"port": schema.Int64Attribute{
								Description: fmt.Sprintf("Port to redirect to, %d–%d.", openapi.RuleActionRedirectPortMin, openapi.RuleActionRedirectPortMax),
								Optional:    true,
								Validators:  []validator.Int64{int64validator.Between(openapi.RuleActionRedirectPortMin, openapi.RuleActionRedirectPortMax)},
							},
							"code": schema.Int64Attribute{
								Description: fmt.Sprintf("Status code: 301, 302, 303, 307 or 308. Defaults to %d.", defaultRedirect),
								Optional:    true, Computed: true,
								Default:    int64default.StaticInt64(defaultRedirect),
								Validators: []validator.Int64{int64validator.OneOf(redirectCodes...)},
							},
						},
					},
					"fixed_response": schema.SingleNestedAttribute{
						Description: "For `fixed_response`: the answer the load balancer gives itself.",
						Optional:    true,
						Attributes: map[string]schema.Attribute{
							"status_code": schema.Int64Attribute{
								Description: fmt.Sprintf("HTTP status, %d–%d.", openapi.RuleActionFixedResponseStatusCodeMin, openapi.RuleActionFixedResponseStatusCodeMax),
								Required:    true,
								Validators:  []validator.Int64{int64validator.Between(openapi.RuleActionFixedResponseStatusCodeMin, openapi.RuleActionFixedResponseStatusCodeMax)},
							},
							"content_type": schema.StringAttribute{
								Description: "Content-Type of the body. Defaults to `text/plain`.",
								Optional:    true, Computed: true,
								Default:    stringdefault.StaticString(defaultContentType),
								Validators: []validator.String{stringvalidator.LengthBetween(1, 255)},
							},
							"body": schema.StringAttribute{
								Description: fmt.Sprintf("Body, at most %d bytes. Defaults to empty.", openapi.RuleActionFixedResponseBodyMaxLength),
								Optional:    true, Computed: true,
								Default:    stringdefault.StaticString(""),
								Validators: []validator.String{stringvalidator.LengthAtMost(openapi.RuleActionFixedResponseBodyMaxLength)},
							},
						},
					},
				},
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

// ModifyPlan re-applies a rule in error and checks a created or changed rule
// with a dry run (see fulcrum.PlanDescription).
func (r *Resource) ModifyPlan(ctx context.Context, req resource.ModifyPlanRequest, resp *resource.ModifyPlanResponse) {
	fulcrum.ReapplyInError(ctx, req, resp)
	kind := fulcrum.PlannedDryRun(ctx, r.client, req, resp, path.Root("listener_id"))
	if kind == fulcrum.NoDryRun {
		return
	}
	var plan model
	resp.Diagnostics.Append(resp.Plan.Get(ctx, &plan)...)
	if resp.Diagnostics.HasError() {
		return
	}
	if kind == fulcrum.DryRunCreate {
		body, diags := plan.toCreate(ctx)
		resp.Diagnostics.Append(diags...)
		if diags.HasError() {
			return
		}
		res, err := r.client.API.CreateRoutingRuleWithResponse(ctx, &openapi.CreateRoutingRuleParams{DryRun: fulcrum.DryRun()}, body)
		if err != nil {
			fulcrum.AddDryRunError(&resp.Diagnostics, "routing rule", err)
			return
		}
		fulcrum.AddDryRunProblem(&resp.Diagnostics, "routing rule", res.StatusCode(), res.Body, nil)
		return
	}
	body, diags := plan.toUpdate(ctx)
	resp.Diagnostics.Append(diags...)
	if diags.HasError() {
		return
	}
	res, err := r.client.API.UpdateRoutingRuleWithResponse(ctx, plan.ID.ValueString(), &openapi.UpdateRoutingRuleParams{DryRun: fulcrum.DryRun()}, body)
	if err != nil {
		fulcrum.AddDryRunError(&resp.Diagnostics, "routing rule", err)
		return
	}
	fulcrum.AddDryRunProblem(&resp.Diagnostics, "routing rule", res.StatusCode(), res.Body, nil)
}

func (r *Resource) Create(ctx context.Context, req resource.CreateRequest, resp *resource.CreateResponse) {
	var plan model
	resp.Diagnostics.Append(req.Plan.Get(ctx, &plan)...)
	if resp.Diagnostics.HasError() {
		return
	}
	timeout, diags := plan.Timeouts.Create(ctx, defaultCreateTimeout)
	resp.Diagnostics.Append(diags...)
	body, diags := plan.toCreate(ctx)
	resp.Diagnostics.Append(diags...)
	if resp.Diagnostics.HasError() {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	res, err := r.client.API.CreateRoutingRuleWithResponse(ctx, &openapi.CreateRoutingRuleParams{IdempotencyKey: fulcrum.NewIdempotencyKey()}, body)
	if err != nil {
		fulcrum.AddRequestError(&resp.Diagnostics, "Could not create the routing rule", err)
		return
	}
	if res.JSON201 == nil {
		fulcrum.AddProblem(&resp.Diagnostics, "Could not create the routing rule", res.StatusCode(), res.Body, nil)
		return
	}
	// Saved before waiting: a rule that never becomes active is tainted, not lost.
	resp.Diagnostics.Append(plan.fromAPI(ctx, res.JSON201)...)
	resp.Diagnostics.Append(resp.State.Set(ctx, &plan)...)
	if resp.Diagnostics.HasError() {
		return
	}
	r.waitActive(ctx, &plan, "created", &resp.Diagnostics)
	resp.Diagnostics.Append(resp.State.Set(ctx, &plan)...)
}

func (r *Resource) Read(ctx context.Context, req resource.ReadRequest, resp *resource.ReadResponse) {
	var state model
	resp.Diagnostics.Append(req.State.Get(ctx, &state)...)
	if resp.Diagnostics.HasError() {
		return
	}
	res, err := r.client.API.GetRoutingRuleWithResponse(ctx, state.ID.ValueString())
	if err != nil {
		fulcrum.AddRequestError(&resp.Diagnostics, "Could not read the routing rule", err)
		return
	}
	if res.StatusCode() == http.StatusNotFound {
		resp.State.RemoveResource(ctx)
		return
	}
	if res.JSON200 == nil {
		fulcrum.AddProblem(&resp.Diagnostics, "Could not read the routing rule", res.StatusCode(), res.Body, nil)
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
	timeout, diags := plan.Timeouts.Update(ctx, defaultUpdateTimeout)
	resp.Diagnostics.Append(diags...)
	body, diags := plan.toUpdate(ctx)
	resp.Diagnostics.Append(diags...)
	if resp.Diagnostics.HasError() {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	res, err := r.client.API.UpdateRoutingRuleWithResponse(ctx, state.ID.ValueString(), nil, body)
	if err != nil {
		fulcrum.AddRequestError(&resp.Diagnostics, "Could not update the routing rule", err)
		return
	}
	if res.JSON200 == nil {
		fulcrum.AddProblem(&resp.Diagnostics, "Could not update the routing rule", res.StatusCode(), res.Body, nil)
		return
	}
	resp.Diagnostics.Append(plan.fromAPI(ctx, res.JSON200)...)
	resp.Diagnostics.Append(resp.State.Set(ctx, &plan)...)
	if resp.Diagnostics.HasError() {
		return
	}
	r.waitActive(ctx, &plan, "updated", &resp.Diagnostics)
	resp.Diagnostics.Append(resp.State.Set(ctx, &plan)...)
}

func (r *Resource) Delete(ctx context.Context, req resource.DeleteRequest, resp *resource.DeleteResponse) {
	var state model
	resp.Diagnostics.Append(req.State.Get(ctx, &state)...)
	if resp.Diagnostics.HasError() {
		return
	}
	timeout, diags := state.Timeouts.Delete(ctx, defaultDeleteTimeout)
	resp.Diagnostics.Append(diags...)
	if resp.Diagnostics.HasError() {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	id := state.ID.ValueString()
	res, err := r.client.API.DeleteRoutingRuleWithResponse(ctx, id, nil)
	if err != nil {
		fulcrum.AddRequestError(&resp.Diagnostics, "Could not delete the routing rule", err)
		return
	}
	switch res.StatusCode() {
	case http.StatusAccepted, http.StatusNoContent:
	case http.StatusNotFound:
		return
	default:
		fulcrum.AddProblem(&resp.Diagnostics, "Could not delete the routing rule", res.StatusCode(), res.Body, nil)
		return
	}
	if err := fulcrum.WaitGone(ctx, r.status(id)); err != nil {
		resp.Diagnostics.AddError("Routing rule not deleted", fmt.Sprintf("Routing rule %s was accepted for deletion but is still served: %v", id, err))
	}
}

func (r *Resource) ImportState(ctx context.Context, req resource.ImportStateRequest, resp *resource.ImportStateResponse) {
	resource.ImportStatePassthroughID(ctx, path.Root("id"), req, resp)
}

// waitActive waits until every node serves the rule, then refreshes m.
func (r *Resource) waitActive(ctx context.Context, m *model, did string, diags *diag.Diagnostics) {
	id := m.ID.ValueString()
	if err := fulcrum.WaitActive(ctx, r.status(id)); err != nil {
		diags.AddError("Routing rule not active",
			fmt.Sprintf("Routing rule %s was %s but did not become active: %v", id, did, err))
		return
	}
	res, err := r.client.API.GetRoutingRuleWithResponse(ctx, id)
	if err != nil {
		fulcrum.AddRequestError(diags, "Could not read the routing rule", err)
		return
	}
	if res.JSON200 == nil {
		fulcrum.AddProblem(diags, "Could not read the routing rule", res.StatusCode(), res.Body, nil)
		return
	}
	diags.Append(m.fromAPI(ctx, res.JSON200)...)
}

// status reports the rule's provisioning status for fulcrum.WaitActive/WaitGone.
func (r *Resource) status(id string) func(context.Context) (fulcrum.Status, error) {
	return func(ctx context.Context) (fulcrum.Status, error) {
		res, err := r.client.API.GetRoutingRuleWithResponse(ctx, id)
		if err != nil {
			return fulcrum.Status{}, err
		}
		switch {
		case res.StatusCode() == http.StatusNotFound:
			return fulcrum.Status{}, nil
		case res.JSON200 == nil:
			return fulcrum.Status{}, fmt.Errorf("reading routing rule %s: the Fulcrum API answered %d: %s", id, res.StatusCode(), strings.TrimSpace(string(res.Body)))
		}
		s := fulcrum.Status{Found: true, ProvisioningStatus: string(res.JSON200.ProvisioningStatus)}
		if m := res.JSON200.StatusMessage; m != nil {
			s.Message = *m
		}
		return s, nil
	}
}
