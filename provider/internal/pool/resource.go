package pool

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"time"

	"github.com/hashicorp/terraform-plugin-framework-timeouts/resource/timeouts"
	"github.com/hashicorp/terraform-plugin-framework-validators/int64validator"
	"github.com/hashicorp/terraform-plugin-framework-validators/stringvalidator"
	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/booldefault"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/int64default"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/objectdefault"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringdefault"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/fulcrumlb/fulcrum/openapi"
	"github.com/fulcrumlb/fulcrum/provider/internal/fulcrum"
)

// ResourceType is the resource's type name.
const ResourceType = "fulcrum_pool"

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

// Resource is fulcrum_pool.
type Resource struct {
	client *fulcrum.Client
}

// NewResource is the constructor the provider registers.
func NewResource() resource.Resource { return &Resource{} }

// resourceModel adds the timeouts block to the shared model.
type resourceModel struct {
	model
	Timeouts timeouts.Value `tfsdk:"timeouts"`
}

func (r *Resource) Metadata(_ context.Context, _ resource.MetadataRequest, resp *resource.MetadataResponse) {
	resp.TypeName = ResourceType
}

var (
	algorithms           = []string{"round_robin", "static_round_robin", "least_connections", "source_ip", "uri", "url_param", "header", "random", "first"}
	persistenceTypes     = []string{"none", "source_ip", "cookie_insert", "cookie_rewrite", "cookie_prefix", "app_cookie"}
	cookiePersistence    = map[string]bool{"cookie_insert": true, "cookie_rewrite": true, "cookie_prefix": true, "app_cookie": true}
	httpOnlyAlgorithms   = map[string]bool{"uri": true, "url_param": true, "header": true}
	hashKeyAlgorithms    = map[string]bool{"url_param": true, "header": true}
	monitorHTTPAttribute = []string{"http_method", "path", "host", "expected_codes"}
)

func (r *Resource) Schema(ctx context.Context, _ resource.SchemaRequest, resp *resource.SchemaResponse) {
	httpDefaults := func(v string) map[string]string { return map[string]string{"http": v, "https": v} }
	resp.Schema = schema.Schema{
		Description: "A pool: the members a load balancer sends traffic to, with how it balances, keeps sessions and checks health." + fulcrum.PlanDescription,
		Attributes: map[string]schema.Attribute{
			"id": schema.StringAttribute{
				Description:   "The pool's id (`pool_…`).",
				Computed:      true,
				PlanModifiers: []planmodifier.String{stringplanmodifier.UseStateForUnknown()},
			},
			"load_balancer_id": schema.StringAttribute{
				Description:   "The load balancer the pool belongs to. Changing it replaces the pool.",
				Required:      true,
				PlanModifiers: []planmodifier.String{stringplanmodifier.RequiresReplace()},
				Validators:    []validator.String{stringvalidator.LengthBetween(1, openapi.ParamIDMaxLength)},
			},
			"name": schema.StringAttribute{
				Description: fmt.Sprintf("Name, unique among the load balancer's pools; at most %d characters. Defaults to empty.", openapi.PoolNameMaxLength),
				Optional:    true,
				Computed:    true,
				Default:     stringdefault.StaticString(""),
				Validators:  []validator.String{stringvalidator.LengthAtMost(openapi.PoolNameMaxLength), fulcrum.NoEdgeSpace()},
			},
			"description": fulcrum.DescriptionAttribute(),
			"labels":      fulcrum.LabelsAttribute(),
			"protocol": schema.StringAttribute{
				Description: "`tcp` (for tcp listeners) or `http` (for http and https listeners).",
				Required:    true,
				Validators:  []validator.String{stringvalidator.OneOf("tcp", "http")},
			},
			"algorithm": schema.StringAttribute{
				Description: "How members are chosen: `round_robin` (the default), `static_round_robin`, `least_connections`, `source_ip`, `uri`, `url_param`, `header`, `random` or `first`. `uri`, `url_param` and `header` need an http pool.",
				Optional:    true,
				Computed:    true,
				Default:     stringdefault.StaticString("round_robin"),
				Validators:  []validator.String{stringvalidator.OneOf(algorithms...)},
			},
			"hash_key": schema.StringAttribute{
				Description: "The URL parameter (`url_param`) or header (`header`) to hash; required for those algorithms and refused for the others.",
				Optional:    true,
				Computed:    true,
				Default:     stringdefault.StaticString(""),
				Validators:  []validator.String{token(openapi.PoolHashKeyMaxLength)},
			},
			"session_persistence": schema.SingleNestedAttribute{
				Description: "Keeps a client on one member. Defaults to `type = \"none\"`.",
				Optional:    true,
				Computed:    true,
				Default: objectdefault.StaticValue(types.ObjectValueMust(
					map[string]attr.Type{"type": types.StringType, "cookie_name": types.StringType, "cookie_ttl_seconds": types.Int64Type},
					map[string]attr.Value{"type": types.StringValue("none"), "cookie_name": types.StringValue(""), "cookie_ttl_seconds": types.Int64Value(0)})),
				Attributes: map[string]schema.Attribute{
					"type": schema.StringAttribute{
						Description: "`none`, `source_ip`, `cookie_insert`, `cookie_rewrite`, `cookie_prefix` or `app_cookie` (the cookie types need an http pool).",
						Required:    true,
						Validators:  []validator.String{stringvalidator.OneOf(persistenceTypes...)},
					},
					"cookie_name": schema.StringAttribute{
						Description: "The cookie: required for `cookie_rewrite`, `cookie_prefix` and `app_cookie`; defaults to `FULCRUMSRV` for `cookie_insert`; refused for the other types.",
						Optional:    true,
						Computed:    true,
						PlanModifiers: []planmodifier.String{byType{
							desc:     "Defaults to FULCRUMSRV for cookie_insert.",
							defaults: map[string]string{"cookie_insert": "FULCRUMSRV"},
						}},
						Validators: []validator.String{token(64)},
					},
					"cookie_ttl_seconds": schema.Int64Attribute{
						Description: fmt.Sprintf("`cookie_insert`: Max-Age of the cookie (0, the default, is a session cookie); `app_cookie`/`source_ip`: how long a stickiness entry lives (0 means the dataplane's 1800). %d to %d.", openapi.SessionPersistenceCookieTtlSecondsMin, openapi.SessionPersistenceCookieTtlSecondsMax),
						Optional:    true,
						Computed:    true,
						Default:     int64default.StaticInt64(0),
						Validators:  []validator.Int64{int64validator.Between(openapi.SessionPersistenceCookieTtlSecondsMin, openapi.SessionPersistenceCookieTtlSecondsMax)},
					},
				},
			},
			"health_monitor": schema.SingleNestedAttribute{
				Description: "Active health checks of the members. Without it members are never marked down (`no_monitor`).",
				Optional:    true,
				Attributes: map[string]schema.Attribute{
					"type": schema.StringAttribute{
						Description: "`tcp` (connect), `http` or `https` (a request; `https` checks over TLS).",
						Required:    true,
						Validators:  []validator.String{stringvalidator.OneOf("tcp", "http", "https")},
					},
					"interval_ms": schema.Int64Attribute{
						Description: fmt.Sprintf("Time between checks, %d to %d ms. Defaults to %d.", openapi.HealthMonitorIntervalMsMin, openapi.HealthMonitorIntervalMsMax, defaultIntervalMS),
						Optional:    true,
						Computed:    true,
						Default:     int64default.StaticInt64(defaultIntervalMS),
						Validators:  []validator.Int64{int64validator.Between(openapi.HealthMonitorIntervalMsMin, openapi.HealthMonitorIntervalMsMax)},
					},
					"timeout_ms": schema.Int64Attribute{
						Description: fmt.Sprintf("Time a check may take, %d to %d ms and at most interval_ms. Defaults to %d (or interval_ms when shorter).",
							openapi.HealthMonitorTimeoutMsMin, openapi.HealthMonitorTimeoutMsMax, defaultTimeoutMS),
						Optional:      true,
						Computed:      true,
						PlanModifiers: []planmodifier.Int64{timeoutDefault{}},
						Validators:    []validator.Int64{int64validator.Between(openapi.HealthMonitorTimeoutMsMin, openapi.HealthMonitorTimeoutMsMax)},
					},
					"rise": schema.Int64Attribute{
						Description: fmt.Sprintf("Successful checks before a member is up, %d to %d. Defaults to %d.", openapi.HealthMonitorRiseMin, openapi.HealthMonitorRiseMax, openapi.HealthMonitorRiseDefault),
						Optional:    true,
						Computed:    true,
						Default:     int64default.StaticInt64(openapi.HealthMonitorRiseDefault),
						Validators:  []validator.Int64{int64validator.Between(openapi.HealthMonitorRiseMin, openapi.HealthMonitorRiseMax)},
					},
					"fall": schema.Int64Attribute{
						Description: fmt.Sprintf("Failed checks before a member is down, %d to %d. Defaults to %d.", openapi.HealthMonitorFallMin, openapi.HealthMonitorFallMax, openapi.HealthMonitorFallDefault),
						Optional:    true,
						Computed:    true,
						Default:     int64default.StaticInt64(openapi.HealthMonitorFallDefault),
						Validators:  []validator.Int64{int64validator.Between(openapi.HealthMonitorFallMin, openapi.HealthMonitorFallMax)},
					},
					"http_method": schema.StringAttribute{
						Description:   "http/https: the request method. Defaults to `GET`.",
						Optional:      true,
						Computed:      true,
						PlanModifiers: []planmodifier.String{byType{desc: "Defaults to GET for http and https.", defaults: httpDefaults(openapi.HealthMonitorHttpMethodDefault)}},
						Validators:    []validator.String{httpMethod},
					},
					"path": schema.StringAttribute{
						Description:   "http/https: the request path (and query). Defaults to `/`.",
						Optional:      true,
						Computed:      true,
						PlanModifiers: []planmodifier.String{byType{desc: "Defaults to / for http and https.", defaults: httpDefaults(openapi.HealthMonitorPathDefault)}},
						Validators:    []validator.String{checkPath},
					},
					"host": schema.StringAttribute{
						Description: "http/https: the Host header to send. Defaults to none.",
						Optional:    true,
						Computed:    true,
						Default:     stringdefault.StaticString(""),
						Validators:  []validator.String{hostOrIP},
					},
					"expected_codes": schema.StringAttribute{
						Description:   "http/https: the status codes that mean healthy, codes or ranges such as `200,204` or `200-399` (the default).",
						Optional:      true,
						Computed:      true,
						PlanModifiers: []planmodifier.String{byType{desc: "Defaults to 200-399 for http and https.", defaults: httpDefaults(openapi.HealthMonitorExpectedCodesDefault)}},
						Validators:    []validator.String{statusCodes},
					},
				},
			},
			"retries": schema.Int64Attribute{
				Description: fmt.Sprintf("How often a failed connection to a member is retried, %d to %d. Defaults to %d.", openapi.PoolRetriesMin, openapi.PoolRetriesMax, openapi.PoolRetriesDefault),
				Optional:    true,
				Computed:    true,
				Default:     int64default.StaticInt64(openapi.PoolRetriesDefault),
				Validators:  []validator.Int64{int64validator.Between(openapi.PoolRetriesMin, openapi.PoolRetriesMax)},
			},
			"redispatch": schema.BoolAttribute{
				Description: "Whether the last retry may go to another member. Defaults to `true`.",
				Optional:    true,
				Computed:    true,
				Default:     booldefault.StaticBool(openapi.PoolRedispatchDefault),
			},
			"proxy_protocol": schema.StringAttribute{
				Description: "Send the PROXY protocol to members: `none` (the default), `v1` or `v2`.",
				Optional:    true,
				Computed:    true,
				Default:     stringdefault.StaticString(openapi.PoolProxyProtocolDefault),
				Validators:  []validator.String{stringvalidator.OneOf("none", "v1", "v2")},
			},
			"drain_timeout_ms": schema.Int64Attribute{
				Description: fmt.Sprintf("How long a removed or disabled member keeps its connections, %d to %d ms. Defaults to %d.",
					openapi.PoolDrainTimeoutMsMin, openapi.PoolDrainTimeoutMsMax, openapi.PoolDrainTimeoutMsDefault),
				Optional:   true,
				Computed:   true,
				Default:    int64default.StaticInt64(openapi.PoolDrainTimeoutMsDefault),
				Validators: []validator.Int64{int64validator.Between(openapi.PoolDrainTimeoutMsMin, openapi.PoolDrainTimeoutMsMax)},
			},
			"tls_to_members": schema.BoolAttribute{
				Description: "Connect to members over TLS. Defaults to `false`.",
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
				Description: "Observed health of the members: `online`, `degraded`, `offline`, `no_monitor` or `error`.",
				Computed:    true,
			},
		},
		Blocks: map[string]schema.Block{
			"timeouts": timeouts.Block(ctx, timeouts.Opts{Create: true, Update: true, Delete: true}),
		},
	}
}

// ValidateConfig catches at plan time what the API would refuse because of
// how attributes combine.
func (r *Resource) ValidateConfig(ctx context.Context, req resource.ValidateConfigRequest, resp *resource.ValidateConfigResponse) {
	var proto, algorithm, hashKey types.String
	var sp, hm types.Object
	for p, target := range map[string]any{"protocol": &proto, "algorithm": &algorithm, "hash_key": &hashKey, "session_persistence": &sp, "health_monitor": &hm} {
		resp.Diagnostics.Append(req.Config.GetAttribute(ctx, path.Root(p), target)...)
	}
	if resp.Diagnostics.HasError() {
		return
	}
	diags := &resp.Diagnostics
	alg := algorithm.ValueString()
	if algorithm.IsNull() {
		alg = "round_robin"
	}
	if !algorithm.IsUnknown() && !hashKey.IsUnknown() {
		switch {
		case hashKeyAlgorithms[alg] && hashKey.ValueString() == "":
			attributeError(diags, path.Root("hash_key"), fmt.Sprintf("is required for the %s algorithm", alg))
		case !hashKeyAlgorithms[alg] && hashKey.ValueString() != "":
			attributeError(diags, path.Root("hash_key"), "is only for the url_param and header algorithms")
		}
	}
	if proto.ValueString() == "tcp" && httpOnlyAlgorithms[alg] {
		attributeError(diags, path.Root("algorithm"), fmt.Sprintf("%s needs an http pool", alg))
	}
	if !sp.IsNull() && !sp.IsUnknown() {
		typ, _ := sp.Attributes()["type"].(types.String)
		name, _ := sp.Attributes()["cookie_name"].(types.String)
		t := typ.ValueString()
		switch {
		case typ.IsUnknown():
		case cookiePersistence[t] && proto.ValueString() == "tcp":
			attributeError(diags, path.Root("session_persistence").AtName("type"), fmt.Sprintf("%s needs an http pool", t))
		case cookiePersistence[t] && t != "cookie_insert" && !name.IsUnknown() && name.ValueString() == "":
			attributeError(diags, path.Root("session_persistence").AtName("cookie_name"), fmt.Sprintf("is required for %s", t))
		case !cookiePersistence[t] && name.ValueString() != "":
			attributeError(diags, path.Root("session_persistence").AtName("cookie_name"), "is only for the cookie persistence types")
		}
	}
	if !hm.IsNull() && !hm.IsUnknown() {
		a := hm.Attributes()
		if typ, _ := a["type"].(types.String); typ.ValueString() == "tcp" {
			for _, name := range monitorHTTPAttribute {
				if v, _ := a[name].(types.String); v.ValueString() != "" {
					attributeError(diags, path.Root("health_monitor").AtName(name), "is only for http and https monitors")
				}
			}
		}
		interval, _ := a["interval_ms"].(types.Int64)
		timeout, _ := a["timeout_ms"].(types.Int64)
		iv := interval.ValueInt64()
		if interval.IsNull() {
			iv = defaultIntervalMS
		}
		if !interval.IsUnknown() && !timeout.IsNull() && !timeout.IsUnknown() && timeout.ValueInt64() > iv {
			attributeError(diags, path.Root("health_monitor").AtName("timeout_ms"), fmt.Sprintf("must not exceed interval_ms (%d)", iv))
		}
	}
}

func (r *Resource) Configure(_ context.Context, req resource.ConfigureRequest, resp *resource.ConfigureResponse) {
	r.client = fulcrum.ClientFrom(req.ProviderData, &resp.Diagnostics)
}

// ModifyPlan re-applies a pool in error and checks a created or changed
// pool with a dry run (see fulcrum.PlanDescription).
func (r *Resource) ModifyPlan(ctx context.Context, req resource.ModifyPlanRequest, resp *resource.ModifyPlanResponse) {
	fulcrum.ReapplyInError(ctx, req, resp, path.Root("operating_status"))
	kind := fulcrum.PlannedDryRun(ctx, r.client, req, resp, path.Root("load_balancer_id"))
	if kind == fulcrum.NoDryRun {
		return
	}
	var plan resourceModel
	resp.Diagnostics.Append(resp.Plan.Get(ctx, &plan)...)
	if resp.Diagnostics.HasError() {
		return
	}
	if kind == fulcrum.DryRunCreate {
		res, err := r.client.API.CreatePoolWithResponse(ctx, &openapi.CreatePoolParams{DryRun: fulcrum.DryRun()}, plan.toCreate())
		if err != nil {
			fulcrum.AddDryRunError(&resp.Diagnostics, "pool", err)
			return
		}
		fulcrum.AddDryRunProblem(&resp.Diagnostics, "pool", res.StatusCode(), res.Body, nil)
		return
	}
	res, err := r.client.API.UpdatePoolWithResponse(ctx, plan.ID.ValueString(), &openapi.UpdatePoolParams{DryRun: fulcrum.DryRun()}, plan.toUpdate())
	if err != nil {
		fulcrum.AddDryRunError(&resp.Diagnostics, "pool", err)
		return
	}
	fulcrum.AddDryRunProblem(&resp.Diagnostics, "pool", res.StatusCode(), res.Body, nil)
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

	res, err := r.client.API.CreatePoolWithResponse(ctx, &openapi.CreatePoolParams{IdempotencyKey: fulcrum.NewIdempotencyKey()}, plan.toCreate())
	if err != nil {
		fulcrum.AddRequestError(&resp.Diagnostics, "Could not create the pool", err)
		return
	}
	if res.JSON201 == nil {
		fulcrum.AddProblem(&resp.Diagnostics, "Could not create the pool", res.StatusCode(), res.Body, nil)
		return
	}
	plan.fromAPI(res.JSON201)
	// Track the object at once: if waiting fails it is tainted, not leaked.
	resp.Diagnostics.Append(resp.State.Set(ctx, &plan)...)
	p, err := wait.Active(ctx, r.client, plan.ID.ValueString())
	if p != nil {
		plan.fromAPI(p)
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
	p, found := get(ctx, r.client, state.ID.ValueString(), &resp.Diagnostics)
	if resp.Diagnostics.HasError() {
		return
	}
	if !found || p.ProvisioningStatus == openapi.ProvisioningStatusPendingDelete {
		resp.State.RemoveResource(ctx)
		return
	}
	state.fromAPI(p)
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
	res, err := r.client.API.UpdatePoolWithResponse(ctx, id, &openapi.UpdatePoolParams{}, plan.toUpdate())
	if err != nil {
		fulcrum.AddRequestError(&resp.Diagnostics, "Could not update the pool", err)
		return
	}
	if res.JSON200 == nil {
		fulcrum.AddProblem(&resp.Diagnostics, "Could not update the pool", res.StatusCode(), res.Body, nil)
		return
	}
	plan.fromAPI(res.JSON200)
	resp.Diagnostics.Append(resp.State.Set(ctx, &plan)...)
	p, err := wait.Active(ctx, r.client, id)
	if reapply && errors.Is(err, fulcrum.ErrObjectError) {
		// The state keeps the update's answer (pending_update): see
		// AddReapplyWarning.
		wait.AddReapplyWarning(&resp.Diagnostics, id, err)
		return
	}
	if p != nil {
		plan.fromAPI(p)
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
	res, err := r.client.API.DeletePoolWithResponse(ctx, id, &openapi.DeletePoolParams{})
	if err != nil {
		fulcrum.AddRequestError(&resp.Diagnostics, "Could not delete the pool", err)
		return
	}
	switch res.StatusCode() {
	case http.StatusAccepted, http.StatusNoContent:
	case http.StatusNotFound:
		return // already gone
	default:
		fulcrum.AddProblem(&resp.Diagnostics, "Could not delete the pool", res.StatusCode(), res.Body, nil)
		return
	}
	wait.AddError(&resp.Diagnostics, id, "gone", wait.Gone(ctx, r.client, id))
}

func (r *Resource) ImportState(ctx context.Context, req resource.ImportStateRequest, resp *resource.ImportStateResponse) {
	resource.ImportStatePassthroughID(ctx, path.Root("id"), req, resp)
}

// get reads one pool; found is false on 404.
func get(ctx context.Context, c *fulcrum.Client, id string, diags *diag.Diagnostics) (p *openapi.Pool, found bool) {
	res, err := c.API.GetPoolWithResponse(ctx, id)
	if err != nil {
		fulcrum.AddRequestError(diags, "Could not read the pool", err)
		return nil, false
	}
	switch {
	case res.JSON200 != nil:
		return res.JSON200, true
	case res.StatusCode() == http.StatusNotFound:
		return nil, false
	}
	fulcrum.AddProblem(diags, "Could not read the pool", res.StatusCode(), res.Body, nil)
	return nil, false
}

// wait waits until every node serves a pool's current version, or until the
// pool is gone.
var wait = fulcrum.Waiter[openapi.Pool]{
	Kind: "pool",
	Get:  get,
	Status: func(p *openapi.Pool) (openapi.ProvisioningStatus, *string) {
		return p.ProvisioningStatus, p.StatusMessage
	},
}
