package loadbalancer

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/hashicorp/terraform-plugin-framework-validators/datasourcevalidator"
	"github.com/hashicorp/terraform-plugin-framework-validators/stringvalidator"
	"github.com/hashicorp/terraform-plugin-framework/datasource"
	"github.com/hashicorp/terraform-plugin-framework/datasource/schema"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/fulcrumlb/fulcrum/openapi"
	"github.com/fulcrumlb/fulcrum/provider/internal/fulcrum"
)

// DataSourceType and ListDataSourceType are the data sources' type names.
const (
	DataSourceType     = "fulcrum_load_balancer"
	ListDataSourceType = "fulcrum_load_balancers"
)

var (
	_ datasource.DataSource                     = (*DataSource)(nil)
	_ datasource.DataSourceWithConfigure        = (*DataSource)(nil)
	_ datasource.DataSourceWithConfigValidators = (*DataSource)(nil)
	_ datasource.DataSource                     = (*ListDataSource)(nil)
	_ datasource.DataSourceWithConfigure        = (*ListDataSource)(nil)
)

// DataSource is fulcrum_load_balancer: one load balancer by id or name.
type DataSource struct {
	client *fulcrum.Client
}

// NewDataSource is the constructor the provider registers.
func NewDataSource() datasource.DataSource { return &DataSource{} }

func (d *DataSource) Metadata(_ context.Context, _ datasource.MetadataRequest, resp *datasource.MetadataResponse) {
	resp.TypeName = DataSourceType
}

// computedAttributes describe every load balancer attribute as read-only;
// the data sources adjust the lookup keys.
func computedAttributes() map[string]schema.Attribute {
	return map[string]schema.Attribute{
		"id":                  schema.StringAttribute{Computed: true, Description: "The load balancer's id (`lb_…`)."},
		"name":                schema.StringAttribute{Computed: true, Description: "Name."},
		"description":         schema.StringAttribute{Computed: true, Description: "Description."},
		"labels":              schema.MapAttribute{Computed: true, ElementType: types.StringType, Description: "Labels."},
		"node_group_id":       schema.StringAttribute{Computed: true, Description: "The node group serving the load balancer."},
		"vip_address":         schema.StringAttribute{Computed: true, Description: "The virtual IP."},
		"enabled":             schema.BoolAttribute{Computed: true, Description: "Whether the nodes serve the load balancer."},
		"deletion_protection": schema.BoolAttribute{Computed: true, Description: "Whether the API refuses to delete it."},
		"tenant_id":           schema.StringAttribute{Computed: true, Description: "The owning tenant."},
		"provisioning_status": schema.StringAttribute{Computed: true, Description: "`pending_create`, `active`, `pending_update`, `pending_delete` or `error`."},
		"operating_status":    schema.StringAttribute{Computed: true, Description: "`online`, `degraded`, `offline`, `no_monitor` or `error`."},
	}
}

func (d *DataSource) Schema(_ context.Context, _ datasource.SchemaRequest, resp *datasource.SchemaResponse) {
	attrs := computedAttributes()
	attrs["id"] = schema.StringAttribute{
		Description: "The load balancer's id. Exactly one of `id` and `name` must be given.",
		Optional:    true, Computed: true,
		Validators: []validator.String{stringvalidator.LengthBetween(1, openapi.ParamIDMaxLength)},
	}
	attrs["name"] = schema.StringAttribute{
		Description: "The load balancer's name; exactly one load balancer of the tenant (not being deleted) must have it.",
		Optional:    true, Computed: true,
		Validators: []validator.String{stringvalidator.LengthBetween(1, openapi.LoadBalancerNameMaxLength)},
	}
	resp.Schema = schema.Schema{
		Description: "Look up one load balancer by id or by name.",
		Attributes:  attrs,
	}
}

func (d *DataSource) ConfigValidators(context.Context) []datasource.ConfigValidator {
	return []datasource.ConfigValidator{datasourcevalidator.ExactlyOneOf(path.MatchRoot("id"), path.MatchRoot("name"))}
}

func (d *DataSource) Configure(_ context.Context, req datasource.ConfigureRequest, resp *datasource.ConfigureResponse) {
	d.client = fulcrum.ClientFrom(req.ProviderData, &resp.Diagnostics)
}

func (d *DataSource) Read(ctx context.Context, req datasource.ReadRequest, resp *datasource.ReadResponse) {
	var m model
	resp.Diagnostics.Append(req.Config.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() {
		return
	}
	var lb *openapi.LoadBalancer
	if id := m.ID.ValueString(); id != "" {
		var found bool
		lb, found = get(ctx, d.client, id, &resp.Diagnostics)
		if resp.Diagnostics.HasError() {
			return
		}
		if !found {
			resp.Diagnostics.AddAttributeError(path.Root("id"), "Load balancer not found", fmt.Sprintf("There is no load balancer %q.", id))
			return
		}
	} else {
		name := m.Name.ValueString()
		items := list(ctx, d.client, &openapi.ListLoadBalancersParams{Name: &name}, &resp.Diagnostics)
		if resp.Diagnostics.HasError() {
			return
		}
		switch len(items) {
		case 0:
			resp.Diagnostics.AddAttributeError(path.Root("name"), "Load balancer not found", fmt.Sprintf("There is no load balancer named %q.", name))
			return
		case 1:
			lb = &items[0]
		default:
			ids := make([]string, len(items))
			for i := range items {
				ids[i] = items[i].Id
			}
			resp.Diagnostics.AddAttributeError(path.Root("name"), "Several load balancers match",
				fmt.Sprintf("%d load balancers are named %q (%s); look one up by id.", len(items), name, strings.Join(ids, ", ")))
			return
		}
	}
	m.fromAPI(lb)
	resp.Diagnostics.Append(resp.State.Set(ctx, &m)...)
}

// list reads every page of a load balancer listing, leaving out load
// balancers on their way out (pending_delete).
func list(ctx context.Context, c *fulcrum.Client, params *openapi.ListLoadBalancersParams, diags *diag.Diagnostics) []openapi.LoadBalancer {
	var out []openapi.LoadBalancer
	limit := 200
	params.Limit = &limit
	for {
		res, err := c.API.ListLoadBalancersWithResponse(ctx, params)
		if err != nil {
			fulcrum.AddRequestError(diags, "Could not list load balancers", err)
			return nil
		}
		if res.JSON200 == nil {
			fulcrum.AddProblem(diags, "Could not list load balancers", res.StatusCode(), res.Body, nil)
			return nil
		}
		for _, lb := range res.JSON200.Items {
			if lb.ProvisioningStatus != openapi.ProvisioningStatusPendingDelete {
				out = append(out, lb)
			}
		}
		if res.JSON200.NextPageToken == "" {
			return out
		}
		next := res.JSON200.NextPageToken
		params.PageToken = &next
	}
}

// ListDataSource is fulcrum_load_balancers: the tenant's load balancers,
// optionally filtered.
type ListDataSource struct {
	client *fulcrum.Client
}

// NewListDataSource is the constructor the provider registers.
func NewListDataSource() datasource.DataSource { return &ListDataSource{} }

type listModel struct {
	Name          types.String `tfsdk:"name"`
	Labels        types.Map    `tfsdk:"labels"`
	NodeGroupID   types.String `tfsdk:"node_group_id"`
	LoadBalancers []model      `tfsdk:"load_balancers"`
}

func (d *ListDataSource) Metadata(_ context.Context, _ datasource.MetadataRequest, resp *datasource.MetadataResponse) {
	resp.TypeName = ListDataSourceType
}

func (d *ListDataSource) Schema(_ context.Context, _ datasource.SchemaRequest, resp *datasource.SchemaResponse) {
	resp.Schema = schema.Schema{
		Description: "List the tenant's load balancers, filtered by name, labels and node group. Load balancers being deleted are left out.",
		Attributes: map[string]schema.Attribute{
			"name": schema.StringAttribute{
				Description: "Only load balancers with exactly this name.",
				Optional:    true,
				Validators:  []validator.String{stringvalidator.LengthBetween(1, openapi.LoadBalancerNameMaxLength)},
			},
			"labels": schema.MapAttribute{
				Description: "Only load balancers carrying all of these labels with these values.",
				ElementType: types.StringType,
				Optional:    true,
			},
			"node_group_id": schema.StringAttribute{
				Description: "Only load balancers of this node group.",
				Optional:    true,
			},
			"load_balancers": schema.ListNestedAttribute{
				Description:  "The matching load balancers, oldest first.",
				Computed:     true,
				NestedObject: schema.NestedAttributeObject{Attributes: computedAttributes()},
			},
		},
	}
}

func (d *ListDataSource) Configure(_ context.Context, req datasource.ConfigureRequest, resp *datasource.ConfigureResponse) {
	d.client = fulcrum.ClientFrom(req.ProviderData, &resp.Diagnostics)
}

func (d *ListDataSource) Read(ctx context.Context, req datasource.ReadRequest, resp *datasource.ReadResponse) {
	var m listModel
	resp.Diagnostics.Append(req.Config.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() {
		return
	}
	params := &openapi.ListLoadBalancersParams{Name: fulcrum.StringPtr(m.Name), NodeGroupId: fulcrum.StringPtr(m.NodeGroupID), Label: labelFilter(m.Labels)}
	items := list(ctx, d.client, params, &resp.Diagnostics)
	if resp.Diagnostics.HasError() {
		return
	}
	m.LoadBalancers = make([]model, len(items))
	for i := range items {
		m.LoadBalancers[i].fromAPI(&items[i])
	}
	resp.Diagnostics.Append(resp.State.Set(ctx, &m)...)
}

// labelFilter turns the labels map into `key=value` filters, in key order.
func labelFilter(v types.Map) *[]string {
	l := fulcrum.LabelsPtr(v)
	if v.IsNull() || l == nil || len(*l) == 0 {
		return nil
	}
	out := make([]string, 0, len(*l))
	for k, v := range *l {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return &out
}
