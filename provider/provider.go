package provider

import (
	"context"
	"os"

	"github.com/hashicorp/terraform-plugin-framework-validators/int64validator"
	"github.com/hashicorp/terraform-plugin-framework/datasource"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/provider"
	"github.com/hashicorp/terraform-plugin-framework/provider/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/fulcrumlb/fulcrum/provider/internal/fulcrum"
)

// Address is the provider's registry address.
const Address = "registry.terraform.io/fulcrumlb/fulcrum"

var _ provider.Provider = (*Provider)(nil)

// Provider is the fulcrum provider.
type Provider struct {
	version string
}

// New returns the provider factory for version.
func New(version string) func() provider.Provider {
	return func() provider.Provider { return &Provider{version: version} }
}

type providerModel struct {
	Endpoint   types.String `tfsdk:"endpoint"`
	Token      types.String `tfsdk:"token"`
	MaxRetries types.Int64  `tfsdk:"max_retries"`
}

func (p *Provider) Metadata(_ context.Context, _ provider.MetadataRequest, resp *provider.MetadataResponse) {
	resp.TypeName = "fulcrum"
	resp.Version = p.version
}

func (p *Provider) Schema(_ context.Context, _ provider.SchemaRequest, resp *provider.SchemaResponse) {
	resp.Schema = schema.Schema{
		Description: "Declare Fulcrum load balancers — listeners, pools, members, routing rules and certificates — and, with an admin token, tenants and node groups.",
		Attributes: map[string]schema.Attribute{
			"endpoint": schema.StringAttribute{
				Description: "Base URL of the Fulcrum API, e.g. `http://127.0.0.1:8080`. Defaults to the `FULCRUM_ENDPOINT` environment variable.",
				Optional:    true,
			},
			"token": schema.StringAttribute{
				Description: "Bearer token (tenant token for load balancers; admin token for tenants and node groups). Defaults to the `FULCRUM_TOKEN` environment variable.",
				Optional:    true,
				Sensitive:   true,
			},
			"max_retries": schema.Int64Attribute{
				Description: "How often a failed API call is retried, 0 to 20, with exponential backoff (or the wait the API's `Retry-After` asks for). " +
					"`429` and `503` answers are retried for every call; connection errors and other `5xx` answers only for calls that are safe to repeat: " +
					"reads, deletes, and creates (each create sends an `Idempotency-Key`). Defaults to 4.",
				Optional:   true,
				Validators: []validator.Int64{int64validator.Between(0, 20)},
			},
		},
	}
}

func (p *Provider) Configure(ctx context.Context, req provider.ConfigureRequest, resp *provider.ConfigureResponse) {
	var cfg providerModel
	resp.Diagnostics.Append(req.Config.Get(ctx, &cfg)...)
	if resp.Diagnostics.HasError() {
		return
	}
	if cfg.Endpoint.IsUnknown() || cfg.Token.IsUnknown() {
		return // known at apply time; resources will get a configured client then
	}
	endpoint, token := os.Getenv("FULCRUM_ENDPOINT"), os.Getenv("FULCRUM_TOKEN")
	if v := cfg.Endpoint.ValueString(); v != "" {
		endpoint = v
	}
	if v := cfg.Token.ValueString(); v != "" {
		token = v
	}
	if endpoint == "" {
		resp.Diagnostics.AddAttributeError(path.Root("endpoint"), "Missing Fulcrum endpoint",
			"Set endpoint in the provider block or the FULCRUM_ENDPOINT environment variable.")
	}
	if token == "" {
		resp.Diagnostics.AddAttributeError(path.Root("token"), "Missing Fulcrum token",
			"Set token in the provider block or the FULCRUM_TOKEN environment variable.")
	}
	if resp.Diagnostics.HasError() {
		return
	}
	var opts []fulcrum.Option
	if !cfg.MaxRetries.IsNull() {
		opts = append(opts, fulcrum.WithMaxRetries(int(cfg.MaxRetries.ValueInt64())))
	}
	c, err := fulcrum.NewClient(endpoint, token, "terraform-provider-fulcrum/"+p.version, opts...)
	if err != nil {
		resp.Diagnostics.AddError("Invalid Fulcrum endpoint", err.Error())
		return
	}
	resp.ResourceData = c
	resp.DataSourceData = c
}

func (p *Provider) Resources(_ context.Context) []func() resource.Resource {
	return resources
}

func (p *Provider) DataSources(_ context.Context) []func() datasource.DataSource {
	return dataSources
}
