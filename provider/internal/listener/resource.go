package listener

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"reflect"
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
const ResourceType = "fulcrum_listener"

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

// Resource is fulcrum_listener.
type Resource struct {
	client *fulcrum.Client
}

// NewResource is the constructor the provider registers.
func NewResource() resource.Resource { return &Resource{} }

func (r *Resource) Metadata(_ context.Context, _ resource.MetadataRequest, resp *resource.MetadataResponse) {
	resp.TypeName = ResourceType
}

// connectionTimeoutLimits are each timeout's bounds and default in the API
// (the document's ListenerTimeouts), in milliseconds.
var connectionTimeoutLimits = map[string]struct{ min, max, def int64 }{
	"client_ms":          {openapi.ListenerTimeoutsClientMsMin, openapi.ListenerTimeoutsClientMsMax, openapi.ListenerTimeoutsClientMsDefault},
	"connect_ms":         {openapi.ListenerTimeoutsConnectMsMin, openapi.ListenerTimeoutsConnectMsMax, openapi.ListenerTimeoutsConnectMsDefault},
	"server_ms":          {openapi.ListenerTimeoutsServerMsMin, openapi.ListenerTimeoutsServerMsMax, openapi.ListenerTimeoutsServerMsDefault},
	"http_request_ms":    {openapi.ListenerTimeoutsHttpRequestMsMin, openapi.ListenerTimeoutsHttpRequestMsMax, openapi.ListenerTimeoutsHttpRequestMsDefault},
	"http_keep_alive_ms": {openapi.ListenerTimeoutsHttpKeepAliveMsMin, openapi.ListenerTimeoutsHttpKeepAliveMsMax, openapi.ListenerTimeoutsHttpKeepAliveMsDefault},
	"tunnel_ms":          {openapi.ListenerTimeoutsTunnelMsMin, openapi.ListenerTimeoutsTunnelMsMax, openapi.ListenerTimeoutsTunnelMsDefault},
}

var connectionTimeoutDescriptions = map[string]string{
	"client_ms":          "Inactivity timeout on the client side.",
	"connect_ms":         "Time to establish a connection to a member.",
	"server_ms":          "Inactivity timeout on the member side.",
	"http_request_ms":    "Time to receive a complete HTTP request.",
	"http_keep_alive_ms": "Time to wait for the next request on a kept-alive connection.",
	"tunnel_ms":          "Inactivity timeout of tunnels (WebSocket, CONNECT, tcp).",
}

var insertHeaderNames = []string{"x_forwarded_for", "x_forwarded_proto", "x_forwarded_port", "x_request_id"}

func connectionTimeoutsAttribute() schema.SingleNestedAttribute {
	attrs := map[string]schema.Attribute{}
	attrTypes := map[string]attr.Type{}
	values := map[string]attr.Value{}
	for name, l := range connectionTimeoutLimits {
		attrs[name] = schema.Int64Attribute{
			Description: fmt.Sprintf("%s Milliseconds, %d to %d. Defaults to %d.", connectionTimeoutDescriptions[name], l.min, l.max, l.def),
			Optional:    true,
			Computed:    true,
			Default:     int64default.StaticInt64(l.def),
			Validators:  []validator.Int64{int64validator.Between(l.min, l.max)},
		}
		attrTypes[name] = types.Int64Type
		values[name] = types.Int64Value(l.def)
	}
	return schema.SingleNestedAttribute{
		Description: "Connection timeouts (the API's `timeouts`). Omitted fields take the defaults.",
		Optional:    true,
		Computed:    true,
		Attributes:  attrs,
		Default:     objectdefault.StaticValue(types.ObjectValueMust(attrTypes, values)),
	}
}

func insertHeadersAttribute() schema.SingleNestedAttribute {
	attrs := map[string]schema.Attribute{}
	attrTypes := map[string]attr.Type{}
	values := map[string]attr.Value{}
	for _, name := range insertHeaderNames {
		attrs[name] = schema.BoolAttribute{
			Description: fmt.Sprintf("Add the %s request header. Defaults to `false`.", headerName(name)),
			Optional:    true,
			Computed:    true,
			Default:     booldefault.StaticBool(false),
		}
		attrTypes[name] = types.BoolType
		values[name] = types.BoolValue(false)
	}
	return schema.SingleNestedAttribute{
		Description: "Request headers added for the members (http and https listeners only).",
		Optional:    true,
		Computed:    true,
		Attributes:  attrs,
		Default:     objectdefault.StaticValue(types.ObjectValueMust(attrTypes, values)),
	}
}

// headerName turns x_forwarded_for into X-Forwarded-For.
func headerName(attr string) string {
	parts := strings.Split(attr, "_")
	for i, p := range parts {
		parts[i] = strings.ToUpper(p[:1]) + p[1:]
	}
	if parts[len(parts)-1] == "Id" {
		parts[len(parts)-1] = "ID"
	}
	return strings.Join(parts, "-")
}

func (r *Resource) Schema(ctx context.Context, _ resource.SchemaRequest, resp *resource.SchemaResponse) {
	emptyList := listdefault.StaticValue(types.ListValueMust(types.StringType, []attr.Value{}))
	resp.Schema = schema.Schema{
		Description: "A listener: a protocol and port on a load balancer's VIP. `tcp` forwards connections; `http` and `https` (TLS terminated with `certificate_ids`) proxy requests and can have routing rules." + fulcrum.PlanDescription,
		Attributes: map[string]schema.Attribute{
			"id": schema.StringAttribute{
				Description:   "The listener's id (`lsn_…`).",
				Computed:      true,
				PlanModifiers: []planmodifier.String{stringplanmodifier.UseStateForUnknown()},
			},
			"load_balancer_id": schema.StringAttribute{
				Description:   "The load balancer the listener belongs to. Changing it replaces the listener.",
				Required:      true,
				PlanModifiers: []planmodifier.String{stringplanmodifier.RequiresReplace()},
				Validators:    []validator.String{stringvalidator.LengthBetween(1, openapi.ParamIDMaxLength)},
			},
			"name": schema.StringAttribute{
				Description: fmt.Sprintf("Name, unique among the load balancer's listeners; at most %d characters. Defaults to empty.", openapi.ListenerNameMaxLength),
				Optional:    true,
				Computed:    true,
				Default:     stringdefault.StaticString(""),
				Validators:  []validator.String{stringvalidator.LengthAtMost(openapi.ListenerNameMaxLength), fulcrum.NoEdgeSpace()},
			},
			"description": fulcrum.DescriptionAttribute(),
			"labels":      fulcrum.LabelsAttribute(),
			"protocol": schema.StringAttribute{
				Description: "`tcp`, `http` or `https`.",
				Required:    true,
				Validators:  []validator.String{stringvalidator.OneOf("tcp", "http", "https")},
			},
			"port": schema.Int64Attribute{
				Description: fmt.Sprintf("Port on the VIP, %d to %d; unique per load balancer.", openapi.ListenerPortMin, openapi.ListenerPortMax),
				Required:    true,
				Validators:  []validator.Int64{int64validator.Between(openapi.ListenerPortMin, openapi.ListenerPortMax)},
			},
			"default_pool_id": schema.StringAttribute{
				Description: "The pool that gets traffic no routing rule takes: a pool of the same load balancer whose protocol fits (`tcp` for tcp listeners, `http` otherwise). Without it, unmatched requests get 503.",
				Optional:    true,
				Validators:  []validator.String{stringvalidator.LengthBetween(1, openapi.ParamIDMaxLength)},
			},
			"certificate_ids": schema.ListAttribute{
				Description: fmt.Sprintf("Certificates for an https listener (required there, refused elsewhere): the first is the default, the rest are selected by SNI. At most %d.", openapi.ListenerCertificateIdsMaxItems),
				ElementType: types.StringType,
				Optional:    true,
				Computed:    true,
				Default:     emptyList,
				Validators:  []validator.List{listvalidator.SizeAtMost(openapi.ListenerCertificateIdsMaxItems), listvalidator.UniqueValues()},
			},
			"connection_limit": schema.Int64Attribute{
				Description: fmt.Sprintf("Most concurrent connections, %d to %d; 0 (the default) means unlimited.", openapi.ListenerConnectionLimitMin, openapi.ListenerConnectionLimitMax),
				Optional:    true,
				Computed:    true,
				Default:     int64default.StaticInt64(0),
				Validators:  []validator.Int64{int64validator.Between(openapi.ListenerConnectionLimitMin, openapi.ListenerConnectionLimitMax)},
			},
			"rate_limit": schema.SingleNestedAttribute{
				Description: "A limit per client IP; beyond it requests get 429 (http) or connections are refused (tcp).",
				Optional:    true,
				Attributes: map[string]schema.Attribute{
					"type": schema.StringAttribute{
						Description: "`requests` (the default; http and https listeners) or `connections`.",
						Optional:    true,
						Computed:    true,
						Default:     stringdefault.StaticString(openapi.RateLimitTypeDefault),
						Validators:  []validator.String{stringvalidator.OneOf("requests", "connections")},
					},
					"per_second": schema.Int64Attribute{
						Description: fmt.Sprintf("Requests or connections per second per client IP, %d to %d.", openapi.RateLimitPerSecondMin, openapi.RateLimitPerSecondMax),
						Required:    true,
						Validators:  []validator.Int64{int64validator.Between(openapi.RateLimitPerSecondMin, openapi.RateLimitPerSecondMax)},
					},
				},
			},
			"allowed_cidrs": schema.ListAttribute{
				Description: fmt.Sprintf("When non-empty, only these sources may connect. IPv4 or IPv6 CIDRs (a bare address is a single host); at most %d.", openapi.ListenerAllowedCidrsMaxItems),
				ElementType: types.StringType,
				Optional:    true,
				Computed:    true,
				Default:     emptyList,
				Validators:  []validator.List{listvalidator.SizeAtMost(openapi.ListenerAllowedCidrsMaxItems), listvalidator.ValueStringsAre(cidr{})},
			},
			"denied_cidrs": schema.ListAttribute{
				Description: fmt.Sprintf("Sources refused. IPv4 or IPv6 CIDRs (a bare address is a single host); at most %d.", openapi.ListenerDeniedCidrsMaxItems),
				ElementType: types.StringType,
				Optional:    true,
				Computed:    true,
				Default:     emptyList,
				Validators:  []validator.List{listvalidator.SizeAtMost(openapi.ListenerDeniedCidrsMaxItems), listvalidator.ValueStringsAre(cidr{})},
			},
			"connection_timeouts": connectionTimeoutsAttribute(),
			"insert_headers":      insertHeadersAttribute(),
			"redirect_http_to_https": schema.BoolAttribute{
				Description: "Answer every request with a redirect to https (http listeners only). Defaults to `false`.",
				Optional:    true,
				Computed:    true,
				Default:     booldefault.StaticBool(false),
			},
			"hsts": schema.SingleNestedAttribute{
				Description: "Send Strict-Transport-Security (https listeners only).",
				Optional:    true,
				Attributes: map[string]schema.Attribute{
					"max_age_seconds": schema.Int64Attribute{
						Description: fmt.Sprintf("max-age, %d to %d seconds. Defaults to %d (a year).", openapi.HSTSMaxAgeSecondsMin, openapi.HSTSMaxAgeSecondsMax, openapi.HSTSMaxAgeSecondsDefault),
						Optional:    true,
						Computed:    true,
						Default:     int64default.StaticInt64(openapi.HSTSMaxAgeSecondsDefault),
						Validators:  []validator.Int64{int64validator.Between(openapi.HSTSMaxAgeSecondsMin, openapi.HSTSMaxAgeSecondsMax)},
					},
					"include_subdomains": schema.BoolAttribute{
						Description: "Add includeSubDomains. Defaults to `false`.",
						Optional:    true,
						Computed:    true,
						Default:     booldefault.StaticBool(false),
					},
					"preload": schema.BoolAttribute{
						Description: "Add preload. Defaults to `false`.",
						Optional:    true,
						Computed:    true,
						Default:     booldefault.StaticBool(false),
					},
				},
			},
			"compression": schema.BoolAttribute{
				Description: "gzip/deflate text responses (http and https listeners only). Defaults to `false`.",
				Optional:    true,
				Computed:    true,
				Default:     booldefault.StaticBool(false),
			},
			"access_log": schema.SingleNestedAttribute{
				Description: "The listener's access log: every node serving it emits a record per request (per connection on tcp listeners) " +
					"with client, VIP, listener, pool, member, status, bytes, timings and request id, as OpenTelemetry logs and " +
					"JSON lines of the node agent (`fulcrum agent --access-log`). Bodies, query strings, Authorization headers and cookies are never logged.",
				Optional: true,
				Computed: true,
				Attributes: map[string]schema.Attribute{
					"enabled": schema.BoolAttribute{
						Description: "Log this listener's traffic. Defaults to `false`.",
						Optional:    true,
						Computed:    true,
						Default:     booldefault.StaticBool(false),
					},
				},
				Default: objectdefault.StaticValue(types.ObjectValueMust(map[string]attr.Type{"enabled": types.BoolType},
					map[string]attr.Value{"enabled": types.BoolValue(false)})),
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
				Description: "Observed health, from the default pool: `online`, `degraded`, `offline`, `no_monitor` or `error`.",
				Computed:    true,
			},
		},
		Blocks: map[string]schema.Block{
			"timeouts": timeouts.Block(ctx, timeouts.Opts{Create: true, Update: true, Delete: true}),
		},
	}
}

// ValidateConfig catches at plan time what the API would refuse because of
// the protocol.
func (r *Resource) ValidateConfig(ctx context.Context, req resource.ValidateConfigRequest, resp *resource.ValidateConfigResponse) {
	var proto types.String
	resp.Diagnostics.Append(req.Config.GetAttribute(ctx, path.Root("protocol"), &proto)...)
	if proto.IsNull() || proto.IsUnknown() {
		return
	}
	p := proto.ValueString()
	invalid := func(at path.Path, msg string) {
		resp.Diagnostics.AddAttributeError(at, "Invalid listener", fmt.Sprintf("%s %s.", at, msg))
	}
	var rateLimit, hsts, insertHeaders types.Object
	var certs types.List
	var redirect, compression types.Bool
	resp.Diagnostics.Append(req.Config.GetAttribute(ctx, path.Root("rate_limit"), &rateLimit)...)
	resp.Diagnostics.Append(req.Config.GetAttribute(ctx, path.Root("hsts"), &hsts)...)
	resp.Diagnostics.Append(req.Config.GetAttribute(ctx, path.Root("insert_headers"), &insertHeaders)...)
	resp.Diagnostics.Append(req.Config.GetAttribute(ctx, path.Root("certificate_ids"), &certs)...)
	resp.Diagnostics.Append(req.Config.GetAttribute(ctx, path.Root("redirect_http_to_https"), &redirect)...)
	resp.Diagnostics.Append(req.Config.GetAttribute(ctx, path.Root("compression"), &compression)...)
	if resp.Diagnostics.HasError() {
		return
	}
	if p == "tcp" {
		if known(rateLimit) {
			if t, ok := rateLimit.Attributes()["type"].(types.String); ok && !t.IsUnknown() && t.ValueString() != "connections" {
				invalid(path.Root("rate_limit").AtName("type"), `must be "connections" on a tcp listener (the default is "requests")`)
			}
		}
		if known(insertHeaders) {
			for name, v := range insertHeaders.Attributes() {
				if b, ok := v.(types.Bool); ok && b.ValueBool() {
					invalid(path.Root("insert_headers").AtName(name), "is only for http and https listeners")
				}
			}
		}
		if compression.ValueBool() {
			invalid(path.Root("compression"), "is only for http and https listeners")
		}
	}
	if redirect.ValueBool() && p != "http" {
		invalid(path.Root("redirect_http_to_https"), "is only for http listeners")
	}
	if known(hsts) && p != "https" {
		invalid(path.Root("hsts"), "is only for https listeners")
	}
	if !certs.IsUnknown() {
		switch n := len(certs.Elements()); {
		case p == "https" && n == 0:
			invalid(path.Root("certificate_ids"), "must name at least one certificate for an https listener")
		case p != "https" && n > 0:
			invalid(path.Root("certificate_ids"), "is only for https listeners")
		}
	}
}

func known(o types.Object) bool { return !o.IsNull() && !o.IsUnknown() }

func (r *Resource) Configure(_ context.Context, req resource.ConfigureRequest, resp *resource.ConfigureResponse) {
	r.client = fulcrum.ClientFrom(req.ProviderData, &resp.Diagnostics)
}

// ModifyPlan re-applies a listener in error and checks a created or changed
// listener with a dry run (see fulcrum.PlanDescription).
func (r *Resource) ModifyPlan(ctx context.Context, req resource.ModifyPlanRequest, resp *resource.ModifyPlanResponse) {
	fulcrum.ReapplyInError(ctx, req, resp, path.Root("operating_status"))
	kind := fulcrum.PlannedDryRun(ctx, r.client, req, resp, path.Root("load_balancer_id"))
	if kind == fulcrum.NoDryRun {
		return
	}
	var plan model
	resp.Diagnostics.Append(resp.Plan.Get(ctx, &plan)...)
	if resp.Diagnostics.HasError() {
		return
	}
	if kind == fulcrum.DryRunCreate {
		res, err := r.client.API.CreateListenerWithResponse(ctx, &openapi.CreateListenerParams{DryRun: fulcrum.DryRun()}, plan.toCreate())
		if err != nil {
			fulcrum.AddDryRunError(&resp.Diagnostics, "listener", err)
			return
		}
		fulcrum.AddDryRunProblem(&resp.Diagnostics, "listener", res.StatusCode(), res.Body, rename)
		return
	}
	res, err := r.client.API.UpdateListenerWithResponse(ctx, plan.ID.ValueString(), &openapi.UpdateListenerParams{DryRun: fulcrum.DryRun()}, plan.toUpdate())
	if err != nil {
		fulcrum.AddDryRunError(&resp.Diagnostics, "listener", err)
		return
	}
	fulcrum.AddDryRunProblem(&resp.Diagnostics, "listener", res.StatusCode(), res.Body, rename)
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

	res, err := r.client.API.CreateListenerWithResponse(ctx, &openapi.CreateListenerParams{IdempotencyKey: fulcrum.NewIdempotencyKey()}, plan.toCreate())
	if err != nil {
		fulcrum.AddRequestError(&resp.Diagnostics, "Could not create the listener", err)
		return
	}
	if res.JSON201 == nil {
		addProblem(&resp.Diagnostics, "Could not create the listener", res.StatusCode(), res.Body)
		return
	}
	plan.fromAPI(res.JSON201)
	// Track the object at once: if waiting fails it is tainted, not leaked.
	resp.Diagnostics.Append(resp.State.Set(ctx, &plan)...)
	l, err := wait.Active(ctx, r.client, plan.ID.ValueString())
	if l != nil {
		plan.fromAPI(l)
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
	l, found := get(ctx, r.client, state.ID.ValueString(), &resp.Diagnostics)
	if resp.Diagnostics.HasError() {
		return
	}
	if !found || l.ProvisioningStatus == openapi.ProvisioningStatusPendingDelete {
		resp.State.RemoveResource(ctx)
		return
	}
	state.fromAPI(l)
	resp.Diagnostics.Append(resp.State.Set(ctx, &state)...)
}

func (r *Resource) Update(ctx context.Context, req resource.UpdateRequest, resp *resource.UpdateResponse) {
	var plan, state model
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
	res, err := r.client.API.UpdateListenerWithResponse(ctx, id, &openapi.UpdateListenerParams{}, plan.toUpdate())
	if err != nil {
		fulcrum.AddRequestError(&resp.Diagnostics, "Could not update the listener", err)
		return
	}
	if res.JSON200 == nil {
		addProblem(&resp.Diagnostics, "Could not update the listener", res.StatusCode(), res.Body)
		return
	}
	plan.fromAPI(res.JSON200)
	resp.Diagnostics.Append(resp.State.Set(ctx, &plan)...)
	l, err := wait.Active(ctx, r.client, id)
	if reapply && errors.Is(err, fulcrum.ErrObjectError) {
		// The state keeps the update's answer (pending_update): see
		// AddReapplyWarning.
		wait.AddReapplyWarning(&resp.Diagnostics, id, err)
		return
	}
	if l != nil {
		plan.fromAPI(l)
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
	res, err := r.client.API.DeleteListenerWithResponse(ctx, id, &openapi.DeleteListenerParams{})
	if err != nil {
		fulcrum.AddRequestError(&resp.Diagnostics, "Could not delete the listener", err)
		return
	}
	switch res.StatusCode() {
	case http.StatusAccepted, http.StatusNoContent:
	case http.StatusNotFound:
		return // already gone
	default:
		addProblem(&resp.Diagnostics, "Could not delete the listener", res.StatusCode(), res.Body)
		return
	}
	wait.AddError(&resp.Diagnostics, id, "gone", wait.Gone(ctx, r.client, id))
}

func (r *Resource) ImportState(ctx context.Context, req resource.ImportStateRequest, resp *resource.ImportStateResponse) {
	resource.ImportStatePassthroughID(ctx, path.Root("id"), req, resp)
}

// rename maps the API's field names to the schema's where they differ.
var rename = map[string]string{"timeouts": "connection_timeouts"}

func init() {
	for name := range connectionTimeoutLimits {
		rename["timeouts."+name] = "connection_timeouts." + name
	}
}

// addProblem is the one place API errors become diagnostics.
func addProblem(diags *diag.Diagnostics, summary string, status int, body []byte) {
	fulcrum.AddProblem(diags, summary, status, body, rename)
}

// get reads one listener; found is false on 404.
func get(ctx context.Context, c *fulcrum.Client, id string, diags *diag.Diagnostics) (l *openapi.Listener, found bool) {
	res, err := c.API.GetListenerWithResponse(ctx, id)
	if err != nil {
		fulcrum.AddRequestError(diags, "Could not read the listener", err)
		return nil, false
	}
	switch {
	case res.JSON200 != nil:
		return res.JSON200, true
	case res.StatusCode() == http.StatusNotFound:
		return nil, false
	}
	addProblem(diags, "Could not read the listener", res.StatusCode(), res.Body)
	return nil, false
}

// wait waits until every node serves a listener's current version, or until
// the listener is gone.
var wait = fulcrum.Waiter[openapi.Listener]{
	Kind: "listener",
	Get:  get,
	Status: func(l *openapi.Listener) (openapi.ProvisioningStatus, *string) {
		return l.ProvisioningStatus, l.StatusMessage
	},
}
