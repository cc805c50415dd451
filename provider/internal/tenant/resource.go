package tenant

import (
	"context"
	"fmt"
	"net/http"

	"github.com/hashicorp/terraform-plugin-framework-validators/int64validator"
	"github.com/hashicorp/terraform-plugin-framework-validators/stringvalidator"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/int64default"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/objectdefault"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"

	"github.com/fulcrumlb/fulcrum/openapi"
	"github.com/fulcrumlb/fulcrum/provider/internal/fulcrum"
)

// ResourceType is the resource's type name.
const ResourceType = "fulcrum_tenant"

var (
	_ resource.Resource                = (*Resource)(nil)
	_ resource.ResourceWithConfigure   = (*Resource)(nil)
	_ resource.ResourceWithImportState = (*Resource)(nil)
)

// Resource is fulcrum_tenant.
type Resource struct {
	client *fulcrum.Client
}

// NewResource is the constructor the provider registers.
func NewResource() resource.Resource { return &Resource{} }

func (r *Resource) Metadata(_ context.Context, _ resource.MetadataRequest, resp *resource.MetadataResponse) {
	resp.TypeName = ResourceType
}

func (r *Resource) Schema(_ context.Context, _ resource.SchemaRequest, resp *resource.SchemaResponse) {
	quotaAttrs := map[string]schema.Attribute{}
	for _, q := range quotas {
		quotaAttrs[q.name] = schema.Int64Attribute{
			Description: fmt.Sprintf("Most %s the tenant may own, %d–%d. Defaults to %d.", q.name, q.min, q.max, q.def),
			Optional:    true, Computed: true,
			Default:    int64default.StaticInt64(q.def),
			Validators: []validator.Int64{int64validator.Between(q.min, q.max)},
		}
	}
	resp.Schema = schema.Schema{
		Description: "A tenant: the owner of load balancers and certificates, with quotas. Needs an admin token. " +
			"The API refuses to delete a tenant that still owns load balancers or certificates.",
		Attributes: map[string]schema.Attribute{
			"id": schema.StringAttribute{
				Description:   "The tenant's id (`tnt_…`).",
				Computed:      true,
				PlanModifiers: []planmodifier.String{stringplanmodifier.UseStateForUnknown()},
			},
			"name": schema.StringAttribute{
				Description: fmt.Sprintf("Name, %d–%d characters.", openapi.TenantNameMinLength, openapi.TenantNameMaxLength),
				Required:    true,
				Validators:  []validator.String{stringvalidator.LengthBetween(openapi.TenantNameMinLength, openapi.TenantNameMaxLength), fulcrum.NoEdgeSpace()},
			},
			"description": fulcrum.DescriptionAttribute(),
			"labels":      fulcrum.LabelsAttribute(),
			"quotas": schema.SingleNestedAttribute{
				Description: "Most objects of each kind the tenant may own. Quotas left out take the API's defaults.",
				Optional:    true, Computed: true,
				Default:    objectdefault.StaticValue(defaultQuotas()),
				Attributes: quotaAttrs,
			},
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
	body, diags := plan.toCreate(ctx)
	resp.Diagnostics.Append(diags...)
	if resp.Diagnostics.HasError() {
		return
	}
	res, err := r.client.API.CreateTenantWithResponse(ctx, &openapi.CreateTenantParams{IdempotencyKey: fulcrum.NewIdempotencyKey()}, body)
	if err != nil {
		fulcrum.AddRequestError(&resp.Diagnostics, "Could not create the tenant", err)
		return
	}
	if res.JSON201 == nil {
		fulcrum.AddProblem(&resp.Diagnostics, "Could not create the tenant", res.StatusCode(), res.Body, nil)
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
	res, err := r.client.API.GetTenantWithResponse(ctx, state.ID.ValueString())
	if err != nil {
		fulcrum.AddRequestError(&resp.Diagnostics, "Could not read the tenant", err)
		return
	}
	if res.StatusCode() == http.StatusNotFound {
		resp.State.RemoveResource(ctx)
		return
	}
	if res.JSON200 == nil {
		fulcrum.AddProblem(&resp.Diagnostics, "Could not read the tenant", res.StatusCode(), res.Body, nil)
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
	res, err := r.client.API.UpdateTenantWithResponse(ctx, state.ID.ValueString(), nil, body)
	if err != nil {
		fulcrum.AddRequestError(&resp.Diagnostics, "Could not update the tenant", err)
		return
	}
	if res.JSON200 == nil {
		fulcrum.AddProblem(&resp.Diagnostics, "Could not update the tenant", res.StatusCode(), res.Body, nil)
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
	res, err := r.client.API.DeleteTenantWithResponse(ctx, state.ID.ValueString(), nil)
	if err != nil {
		fulcrum.AddRequestError(&resp.Diagnostics, "Could not delete the tenant", err)
		return
	}
	switch res.StatusCode() {
	case http.StatusNoContent, http.StatusAccepted, http.StatusNotFound:
	default:
		fulcrum.AddProblem(&resp.Diagnostics, "Could not delete the tenant", res.StatusCode(), res.Body, nil)
	}
}

func (r *Resource) ImportState(ctx context.Context, req resource.ImportStateRequest, resp *resource.ImportStateResponse) {
	resource.ImportStatePassthroughID(ctx, path.Root("id"), req, resp)
}
