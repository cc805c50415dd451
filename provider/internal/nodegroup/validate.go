package nodegroup

import (
	"context"
	"fmt"
	"net/netip"
	"strings"

	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
)

// cidr accepts a CIDR in the form the API stores it (network address, canonical
// spelling), so what is planned is what the API answers.
type cidr struct{}

var _ validator.String = cidr{}

func (cidr) Description(context.Context) string {
	return "must be a CIDR such as 127.77.0.0/16, written with its network address"
}

func (v cidr) MarkdownDescription(ctx context.Context) string { return v.Description(ctx) }

func (cidr) ValidateString(_ context.Context, req validator.StringRequest, resp *validator.StringResponse) {
	if req.ConfigValue.IsNull() || req.ConfigValue.IsUnknown() {
		return
	}
	if msg := cidrProblem(req.ConfigValue.ValueString()); msg != "" {
		resp.Diagnostics.AddAttributeError(req.Path, "Invalid VIP range", fmt.Sprintf("Attribute %s %s.", req.Path, msg))
	}
}

// cidrProblem returns "" for a canonical CIDR, otherwise what is wrong.
func cidrProblem(s string) string {
	if !strings.Contains(s, "/") {
		return fmt.Sprintf("must be a CIDR such as 127.77.0.0/16, got %q", s)
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return fmt.Sprintf("must be a CIDR such as 127.77.0.0/16, got %q", s)
	}
	if want := p.Masked().String(); want != s {
		return fmt.Sprintf("must be written %s (the network address of %s)", want, s)
	}
	return ""
}
