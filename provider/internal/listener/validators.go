package listener

import (
	"context"
	"fmt"

	"github.com/hashicorp/terraform-plugin-framework/schema/validator"

	"github.com/fulcrumlb/fulcrum/provider/internal/fulcrum"
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
	if _, ok := fulcrum.CanonicalCIDR(req.ConfigValue.ValueString()); !ok {
		resp.Diagnostics.AddAttributeError(req.Path, "Invalid CIDR",
			fmt.Sprintf("%s %s, got %q.", req.Path, v.Description(ctx), req.ConfigValue.ValueString()))
	}
}
