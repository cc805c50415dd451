package member

import (
	"context"
	"fmt"
	"net/netip"
	"strings"

	"github.com/hashicorp/terraform-plugin-framework/resource/schema/planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/fulcrumlb/fulcrum/openapi"
)

// hostOrIP accepts what the API does for an address: an IP address without
// zone, or an RFC 1123 host name (labels of letters, digits and inner
// hyphens, the last one not numeric).
type hostOrIP struct{}

func (hostOrIP) Description(context.Context) string {
	return "must be an IPv4 or IPv6 address or a DNS name"
}
func (v hostOrIP) MarkdownDescription(ctx context.Context) string { return v.Description(ctx) }

func (hostOrIP) ValidateString(_ context.Context, req validator.StringRequest, resp *validator.StringResponse) {
	if req.ConfigValue.IsNull() || req.ConfigValue.IsUnknown() {
		return
	}
	if msg := hostOrIPProblem(req.ConfigValue.ValueString()); msg != "" {
		resp.Diagnostics.AddAttributeError(req.Path, "Invalid address",
			fmt.Sprintf("%s %s, got %q.", req.Path, msg, req.ConfigValue.ValueString()))
	}
}

func hostOrIPProblem(v string) string {
	if v == "" {
		return "is required"
	}
	if a, err := netip.ParseAddr(v); err == nil {
		if a.Zone() != "" {
			return "must not include an IPv6 zone"
		}
		return ""
	}
	if strings.Contains(v, ":") {
		return "must be a valid IPv4 or IPv6 address"
	}
	if len(v) > 253 {
		return "must be at most 253 characters"
	}
	labels := strings.Split(v, ".")
	for _, l := range labels {
		if l == "" || len(l) > 63 {
			return "must be a valid hostname or IP address: dot-separated labels of 1 to 63 characters"
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' && i > 0 && i < len(l)-1) {
				return fmt.Sprintf("must be a valid hostname or IP address: label %q may hold only letters, digits and inner hyphens", l)
			}
		}
	}
	if isNumeric(labels[len(labels)-1]) { // read as IPv4 by resolvers
		return "must be a valid IPv4 or IPv6 address"
	}
	return ""
}

// isNumeric reports whether s is all decimal digits or a 0x hexadecimal number.
func isNumeric(s string) bool {
	digits := "0123456789"
	if h, ok := strings.CutPrefix(strings.ToLower(s), "0x"); ok {
		s, digits = h, "0123456789abcdef"
	}
	for i := 0; i < len(s); i++ {
		if strings.IndexByte(digits, s[i]) < 0 {
			return false
		}
	}
	return true
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
