package certificate

import (
	"context"
	"time"

	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/fulcrumlb/fulcrum/openapi"
	"github.com/fulcrumlb/fulcrum/provider/internal/fulcrum"
)

// model is the resource's state and plan.
type model struct {
	ID                types.String `tfsdk:"id"`
	Name              types.String `tfsdk:"name"`
	Description       types.String `tfsdk:"description"`
	Labels            types.Map    `tfsdk:"labels"`
	Certificate       types.String `tfsdk:"certificate"`
	PrivateKey        types.String `tfsdk:"private_key"`
	FingerprintSHA256 types.String `tfsdk:"fingerprint_sha256"`
	Subject           types.String `tfsdk:"subject"`
	Issuer            types.String `tfsdk:"issuer"`
	DNSNames          types.List   `tfsdk:"dns_names"`
	NotBefore         types.String `tfsdk:"not_before"`
	NotAfter          types.String `tfsdk:"not_after"`
	KeyType           types.String `tfsdk:"key_type"`
}

// fromAPI refreshes everything the API knows. PrivateKey is left alone: the
// API never returns it, so state keeps what was configured.
func (m *model) fromAPI(ctx context.Context, c *openapi.Certificate) diag.Diagnostics {
	var diags diag.Diagnostics
	m.ID = types.StringValue(c.Id)
	m.Name = types.StringValue(c.Name)
	m.Description = types.StringValue(c.Description)
	m.Labels = fulcrum.LabelsValue(c.Labels)
	m.Certificate = types.StringValue(c.Certificate)
	m.FingerprintSHA256 = types.StringValue(c.FingerprintSha256)
	m.Subject = types.StringValue(c.Subject)
	m.Issuer = types.StringValue(c.Issuer)
	dns, d := types.ListValueFrom(ctx, types.StringType, nonNil(c.DnsNames))
	diags.Append(d...)
	m.DNSNames = dns
	m.NotBefore = types.StringValue(c.NotBefore.UTC().Format(time.RFC3339))
	m.NotAfter = types.StringValue(c.NotAfter.UTC().Format(time.RFC3339))
	m.KeyType = types.StringValue(c.KeyType)
	return diags
}

// toCreate is the POST body for the planned certificate.
func (m *model) toCreate(ctx context.Context) (openapi.CertificateCreate, diag.Diagnostics) {
	var diags diag.Diagnostics
	labels := fulcrum.LabelsToAPI(ctx, m.Labels, &diags)
	return openapi.CertificateCreate{
		Name:        m.Name.ValueStringPointer(),
		Description: m.Description.ValueStringPointer(),
		Labels:      labels,
		Certificate: m.Certificate.ValueString(),
		PrivateKey:  m.PrivateKey.ValueString(),
	}, diags
}

// toUpdate is the PATCH body turning state into plan. Name, description and
// labels are always sent; the certificate and key are sent together, and only
// when either changed (the API takes them only as a pair).
func (m *model) toUpdate(ctx context.Context, state *model) (openapi.CertificateUpdate, diag.Diagnostics) {
	var diags diag.Diagnostics
	labels := fulcrum.LabelsToAPI(ctx, m.Labels, &diags)
	u := openapi.CertificateUpdate{
		Name:        m.Name.ValueStringPointer(),
		Description: m.Description.ValueStringPointer(),
		Labels:      labels,
	}
	if !m.Certificate.Equal(state.Certificate) || !m.PrivateKey.Equal(state.PrivateKey) {
		u.Certificate = m.Certificate.ValueStringPointer()
		u.PrivateKey = m.PrivateKey.ValueStringPointer()
	}
	return u, diags
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
