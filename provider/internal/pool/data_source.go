package pool

import (
	"context"
	"fmt"

	"github.com/hashicorp/terraform-plugin-framework-validators/stringvalidator"
	"github.com/hashicorp/terraform-plugin-framework/datasource"
	"github.com/hashicorp/terraform-plugin-framework/datasource/schema"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/fulcrumlb/fulcrum/openapi"
	"github.com/fulcrumlb/fulcrum/provider/internal/fulcrum"
)

// DataSourceType is the data source's type name.
const DataSourceType = "fulcrum_pool"

var (
	_ datasource.DataSource              = (*DataSource)(nil)
	_ datasource.DataSourceWithConfigure = (*DataSource)(nil)
)

// DataSource is fulcrum_pool: one pool by id.
type DataSource struct {
	client *fulcrum.Client
}

// NewDataSource is the constructor the provider registers.
func NewDataSource() datasource.DataSource { return &DataSource{} }

func (d *DataSource) Metadata(_ context.Context, _ datasource.MetadataRequest, resp *datasource.MetadataResponse) {
	resp.TypeName = DataSourceType
}

func (d *DataSource) Schema(_ context.Context, _ datasource.SchemaRequest, resp *datasource.SchemaResponse) {
	str := func(desc string) schema.StringAttribute {
		return schema.StringAttribute{Computed: true, Description: desc}
	}
	num := func(desc string) schema.Int64Attribute {
		return schema.Int64Attribute{Computed: true, Description: desc}
	}
	flag := func(desc string) schema.BoolAttribute { return schema.BoolAttribute{Computed: true, Description: desc} }
	resp.Schema = schema.Schema{
		Description: "Look up one pool by id.",
		Attributes: map[string]schema.Attribute{
			"id": schema.StringAttribute{
				Description: "The pool's id (`pool_…`).",
				Required:    true,
				Validators:  []validator.String{stringvalidator.LengthBetween(1, openapi.ParamIDMaxLength)},
			},
			"load_balancer_id": str("The load balancer the pool belongs to."),
			"name":             str("Name."),
			"description":      str("Description."),
			"labels":           schema.MapAttribute{Computed: true, ElementType: types.StringType, Description: "Labels."},
			"protocol":         str("`tcp` or `http`."),
			"algorithm":        str("The balancing algorithm."),
			"hash_key":         str("The URL parameter or header hashed by `url_param` and `header`."),
			"session_persistence": schema.SingleNestedAttribute{
				Computed:    true,
				Description: "How a client is kept on one member.",
				Attributes: map[string]schema.Attribute{
					"type":               str("The persistence type."),
					"cookie_name":        str("The cookie of the cookie types."),
					"cookie_ttl_seconds": num("Cookie Max-Age or stickiness entry lifetime."),
				},
			},
			"health_monitor": schema.SingleNestedAttribute{
				Computed:    true,
				Description: "Active health checks; null when there are none.",
				Attributes: map[string]schema.Attribute{
					"type":           str("`tcp`, `http` or `https`."),
					"interval_ms":    num("Time between checks."),
					"timeout_ms":     num("Time a check may take."),
					"rise":           num("Successful checks before a member is up."),
					"fall":           num("Failed checks before a member is down."),
					"http_method":    str("The request method."),
					"path":           str("The request path."),
					"host":           str("The Host header."),
					"expected_codes": str("Status codes that mean healthy."),
				},
			},
			"retries":             num("Retries of a failed connection."),
			"redispatch":          flag("Whether the last retry may go to another member."),
			"proxy_protocol":      str("`none`, `v1` or `v2`."),
			"drain_timeout_ms":    num("How long a removed member keeps its connections."),
			"tls_to_members":      flag("Whether members are reached over TLS."),
			"tenant_id":           str("The owning tenant."),
			"provisioning_status": str("`pending_create`, `active`, `pending_update`, `pending_delete` or `error`."),
			"operating_status":    str("`online`, `degraded`, `offline`, `no_monitor` or `error`."),
		},
	}
}

func (d *DataSource) Configure(_ context.Context, req datasource.ConfigureRequest, resp *datasource.ConfigureResponse) {
	d.client = fulcrum.ClientFrom(req.ProviderData, &resp.Diagnostics)
}

func (d *DataSource) Read(ctx context.Context, req datasource.ReadRequest, resp *datasource.ReadResponse) {
	var m model
	resp.Diagnostics.Append(req.Config.GetAttribute(ctx, path.Root("id"), &m.ID)...)
	if resp.Diagnostics.HasError() {
		return
	}
	p, found := get(ctx, d.client, m.ID.ValueString(), &resp.Diagnostics)
	if resp.Diagnostics.HasError() {
		return
	}
	if !found {
		resp.Diagnostics.AddAttributeError(path.Root("id"), "Pool not found", fmt.Sprintf("There is no pool %q.", m.ID.ValueString()))
		return
	}
	m.fromAPI(p)
	resp.Diagnostics.Append(resp.State.Set(ctx, &m)...)
}
