package listener

import (
	"context"
	"fmt"
	"strings"

	"github.com/hashicorp/terraform-plugin-framework/resource/schema/planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/fulcrumlb/fulcrum/openapi"
)

// cidr accepts what the API does: an IPv4 or IPv6 prefix such as 10.0.0.0/8,
// or a bare address for a single host.
type cidr struct{}

func (cidr) Description(context.Context) string {
	return "must be an IPv4 or IPv6 CIDR such as 10.0.0.0/8 or 2001:db8::/32, or a single address"
}
func (v cidr) MarkdownDescription(ctx context.Context) string { return v.Description(ctx) }

func (v cidr) ValidateString(ctx context.Context, req validator.StringRequest, resp *validator.StringResponse) {
	if req.ConfigValue.IsNull() || req.ConfigValue.IsUnknown() {
		return
	}
	if _, ok := canonicalCIDR(req.ConfigValue.ValueString()); !ok {
		resp.Diagnostics.AddAttributeError(req.Path, "Invalid CIDR",
			fmt.Sprintf("%s %s, got %q.", req.Path, v.Description(ctx), req.ConfigValue.ValueString()))
	}
}

// noEdgeSpace mirrors the API's rule that names do not start or end with whitespace.
type noEdgeSpace struct{}

func (noEdgeSpace) Description(context.Context) string {
	return "must not start or end with whitespace"
}
func (v noEdgeSpace) MarkdownDescription(ctx context.Context) string { return v.Description(ctx) }

func (noEdgeSpace) ValidateString(_ context.Context, req validator.StringRequest, resp *validator.StringResponse) {
	if req.ConfigValue.IsNull() || req.ConfigValue.IsUnknown() {
		return
	}
	if s := req.ConfigValue.ValueString(); strings.TrimSpace(s) != s {
		resp.Diagnostics.AddAttributeError(req.Path, "Invalid name", fmt.Sprintf("%s must not start or end with whitespace.", req.Path))
	}
}

// activeAfterApply plans provisioning_status `active` for every change: apply
// waits for it (or fails).
type activeAfterApply struct{}

func (activeAfterApply) Description(context.Context) string {
	return "Terraform waits for the object to become active."
}
func (m activeAfterApply) MarkdownDescription(ctx context.Context) string { return m.Description(ctx) }

func (activeAfterApply) PlanModifyString(_ context.Context, req planmodifier.StringRequest, resp *planmodifier.StringResponse) {
	if req.PlanValue.IsUnknown() {
		resp.PlanValue = types.StringValue(string(openapi.ProvisioningStatusActive))
	}
}
