package certificate

import (
	"context"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/hashicorp/terraform-plugin-framework-validators/stringvalidator"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/listplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringdefault"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/fulcrumlb/fulcrum/openapi"
	"github.com/fulcrumlb/fulcrum/provider/internal/fulcrum"
)

// ResourceType is the resource's name in configurations.
const ResourceType = "fulcrum_certificate"

// deleteTimeout bounds waiting for a deleted certificate to read as 404.
const deleteTimeout = 5 * time.Minute

var (
	_ resource.Resource                = (*Resource)(nil)
	_ resource.ResourceWithConfigure   = (*Resource)(nil)
	_ resource.ResourceWithImportState = (*Resource)(nil)
	_ resource.ResourceWithModifyPlan  = (*Resource)(nil)
)

// Resource is fulcrum_certificate.
type Resource struct {
	client *fulcrum.Client
}

// NewResource is the constructor the provider registers.
func NewResource() resource.Resource { return &Resource{} }

var pemRE = regexp.MustCompile(`-----BEGIN `)

// derived are the attributes the API computes from the certificate; they
// change exactly when the certificate does.
var derived = []string{"fingerprint_sha256", "subject", "issuer", "dns_names", "not_before", "not_after", "key_type"}

func (r *Resource) Metadata(_ context.Context, _ resource.MetadataRequest, resp *resource.MetadataResponse) {
	resp.TypeName = ResourceType
}

func (r *Resource) Schema(_ context.Context, _ resource.SchemaRequest, resp *resource.SchemaResponse) {
	computed := func(desc string) schema.StringAttribute {
		return schema.StringAttribute{Description: desc, Computed: true,
			PlanModifiers: []planmodifier.String{stringplanmodifier.UseStateForUnknown()}}
	}
	resp.Schema = schema.Schema{
		Description: "A TLS certificate chain and private key that https listeners serve (SNI-selected). " +
			"The API stores the key encrypted and never returns it: Terraform keeps the configured key in state (sensitive) " +
			"and changing `certificate` or `private_key` rotates both in place. Certificates take effect on the listeners that use them. " +
			"Every plan that creates or changes a certificate first sends it to the API as a dry run (`?dry_run=true`), so a certificate or key " +
			"the API refuses fails the plan on its attribute; a dry run that cannot be made is a warning.",
		Attributes: map[string]schema.Attribute{
			"id": computed("The certificate's id (`cert_…`)."),
			"name": schema.StringAttribute{
				Description: "Name, unique within the tenant. Defaults to empty.",
				Optional:    true, Computed: true, Default: stringdefault.StaticString(""),
				Validators: []validator.String{stringvalidator.LengthAtMost(openapi.CertificateNameMaxLength), fulcrum.NoEdgeSpace()},
			},
			"description": schema.StringAttribute{
				Description: fmt.Sprintf("Free-form description, at most %d characters.", openapi.CertificateDescriptionMaxLength),
				Optional:    true, Computed: true, Default: stringdefault.StaticString(""),
				Validators: []validator.String{stringvalidator.LengthAtMost(openapi.CertificateDescriptionMaxLength)},
			},
			"labels": labelsAttribute(),
			"certificate": schema.StringAttribute{
				Description: "PEM chain: the leaf certificate first, then intermediates. The API rejects bad PEM, a key that does not match, and expired certificates.",
				Required:    true,
				Validators: []validator.String{stringvalidator.LengthBetween(1, openapi.CertificateCertificateMaxLength),
					stringvalidator.RegexMatches(pemRE, "must be PEM (contain a -----BEGIN CERTIFICATE----- block)")},
			},
			"private_key": schema.StringAttribute{
				Description: "PEM private key (PKCS#1, PKCS#8 or SEC1) matching the leaf certificate. Write-only for the API; " +
					"after an import Terraform does not know it and the next apply sends it again.",
				Required:  true,
				Sensitive: true,
				Validators: []validator.String{stringvalidator.LengthBetween(1, openapi.CertificatePrivateKeyMaxLength),
					stringvalidator.RegexMatches(pemRE, "must be PEM (contain a -----BEGIN ... PRIVATE KEY----- block)")},
			},
			"fingerprint_sha256": computed("SHA-256 fingerprint of the leaf certificate."),
			"subject":            computed("Subject of the leaf certificate."),
			"issuer":             computed("Issuer of the leaf certificate."),
			"dns_names": schema.ListAttribute{
				Description:   "DNS names (subject alternative names) of the leaf certificate.",
				ElementType:   types.StringType,
				Computed:      true,
				PlanModifiers: []planmodifier.List{listplanmodifier.UseStateForUnknown()},
			},
			"not_before": computed("Start of the leaf certificate's validity (RFC 3339)."),
			"not_after":  computed("End of the leaf certificate's validity (RFC 3339)."),
			"key_type":   computed("Key type, e.g. `ecdsa-p256` or `rsa-2048`."),
		},
	}
}

// labelsAttribute is the common labels attribute, described in this
// resource's words.
func labelsAttribute() schema.MapAttribute {
	a := fulcrum.LabelsAttribute()
	a.Description = "Labels: up to 64; keys `[a-z0-9]([a-z0-9._/-]*[a-z0-9])?` of at most 63 characters, values of at most 255."
	return a
}

func (r *Resource) Configure(_ context.Context, req resource.ConfigureRequest, resp *resource.ConfigureResponse) {
	r.client = fulcrum.ClientFrom(req.ProviderData, &resp.Diagnostics)
}

// ModifyPlan marks what the API derives from the certificate unknown when the
// certificate changes (UseStateForUnknown would otherwise keep the old
// values), and checks a created or changed certificate with a dry run.
func (r *Resource) ModifyPlan(ctx context.Context, req resource.ModifyPlanRequest, resp *resource.ModifyPlanResponse) {
	markDerivedUnknown(ctx, req, resp)
	kind := fulcrum.PlannedDryRun(ctx, r.client, req, resp)
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
		res, err := r.client.API.CreateCertificateWithResponse(ctx, &openapi.CreateCertificateParams{DryRun: fulcrum.DryRun()}, body)
		if err != nil {
			fulcrum.AddDryRunError(&resp.Diagnostics, "certificate", err)
			return
		}
		fulcrum.AddDryRunProblem(&resp.Diagnostics, "certificate", res.StatusCode(), res.Body, nil)
		return
	}
	var state model
	resp.Diagnostics.Append(req.State.Get(ctx, &state)...)
	if resp.Diagnostics.HasError() {
		return
	}
	body, diags := plan.toUpdate(ctx, &state)
	resp.Diagnostics.Append(diags...)
	if diags.HasError() {
		return
	}
	res, err := r.client.API.UpdateCertificateWithResponse(ctx, plan.ID.ValueString(), &openapi.UpdateCertificateParams{DryRun: fulcrum.DryRun()}, body)
	if err != nil {
		fulcrum.AddDryRunError(&resp.Diagnostics, "certificate", err)
		return
	}
	fulcrum.AddDryRunProblem(&resp.Diagnostics, "certificate", res.StatusCode(), res.Body, nil)
}

// markDerivedUnknown plans what the API derives from the certificate unknown
// when the certificate changes.
func markDerivedUnknown(ctx context.Context, req resource.ModifyPlanRequest, resp *resource.ModifyPlanResponse) {
	if req.State.Raw.IsNull() || req.Plan.Raw.IsNull() {
		return
	}
	var planned, prior types.String
	resp.Diagnostics.Append(req.Plan.GetAttribute(ctx, path.Root("certificate"), &planned)...)
	resp.Diagnostics.Append(req.State.GetAttribute(ctx, path.Root("certificate"), &prior)...)
	if resp.Diagnostics.HasError() || planned.Equal(prior) {
		return
	}
	for _, name := range derived {
		if name == "dns_names" {
			resp.Diagnostics.Append(resp.Plan.SetAttribute(ctx, path.Root(name), types.ListUnknown(types.StringType))...)
			continue
		}
		resp.Diagnostics.Append(resp.Plan.SetAttribute(ctx, path.Root(name), types.StringUnknown())...)
	}
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
	res, err := r.client.API.CreateCertificateWithResponse(ctx, &openapi.CreateCertificateParams{IdempotencyKey: fulcrum.NewIdempotencyKey()}, body)
	if err != nil {
		fulcrum.AddRequestError(&resp.Diagnostics, "Could not create the certificate", err)
		return
	}
	if res.JSON201 == nil {
		fulcrum.AddProblem(&resp.Diagnostics, "Could not create the certificate", res.StatusCode(), res.Body, nil)
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
	res, err := r.client.API.GetCertificateWithResponse(ctx, state.ID.ValueString())
	if err != nil {
		fulcrum.AddRequestError(&resp.Diagnostics, "Could not read the certificate", err)
		return
	}
	if res.StatusCode() == http.StatusNotFound {
		resp.State.RemoveResource(ctx)
		return
	}
	if res.JSON200 == nil {
		fulcrum.AddProblem(&resp.Diagnostics, "Could not read the certificate", res.StatusCode(), res.Body, nil)
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
	body, diags := plan.toUpdate(ctx, &state)
	resp.Diagnostics.Append(diags...)
	if resp.Diagnostics.HasError() {
		return
	}
	res, err := r.client.API.UpdateCertificateWithResponse(ctx, state.ID.ValueString(), nil, body)
	if err != nil {
		fulcrum.AddRequestError(&resp.Diagnostics, "Could not update the certificate", err)
		return
	}
	if res.JSON200 == nil {
		fulcrum.AddProblem(&resp.Diagnostics, "Could not update the certificate", res.StatusCode(), res.Body, nil)
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
	id := state.ID.ValueString()
	res, err := r.client.API.DeleteCertificateWithResponse(ctx, id, nil)
	if err != nil {
		fulcrum.AddRequestError(&resp.Diagnostics, "Could not delete the certificate", err)
		return
	}
	switch res.StatusCode() {
	case http.StatusAccepted, http.StatusNoContent:
	case http.StatusNotFound:
		return
	default:
		fulcrum.AddProblem(&resp.Diagnostics, "Could not delete the certificate", res.StatusCode(), res.Body, nil)
		return
	}
	ctx, cancel := context.WithTimeout(ctx, deleteTimeout)
	defer cancel()
	if err := fulcrum.WaitGone(ctx, r.status(id)); err != nil {
		resp.Diagnostics.AddError("Could not delete the certificate", err.Error())
	}
}

// status reports whether the certificate still exists (it has no
// provisioning status).
func (r *Resource) status(id string) func(context.Context) (fulcrum.Status, error) {
	return func(ctx context.Context) (fulcrum.Status, error) {
		res, err := r.client.API.GetCertificateWithResponse(ctx, id)
		if err != nil {
			return fulcrum.Status{}, err
		}
		switch {
		case res.StatusCode() == http.StatusNotFound:
			return fulcrum.Status{}, nil
		case res.JSON200 == nil:
			return fulcrum.Status{}, fmt.Errorf("reading certificate %s: the Fulcrum API answered %d: %s", id, res.StatusCode(), strings.TrimSpace(string(res.Body)))
		}
		return fulcrum.Status{Found: true, ProvisioningStatus: "active"}, nil
	}
}

func (r *Resource) ImportState(ctx context.Context, req resource.ImportStateRequest, resp *resource.ImportStateResponse) {
	resource.ImportStatePassthroughID(ctx, path.Root("id"), req, resp)
}
