package fulcrum

import (
	"context"
	"fmt"
	"net/netip"
	"strings"

	"github.com/hashicorp/terraform-plugin-framework-validators/helpers/validatordiag"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
)

// NoEdgeSpace mirrors the API's rule that names do not start or end with
// whitespace (Unicode white space, as the API reads it).
func NoEdgeSpace() validator.String { return noEdgeSpace{} }

type noEdgeSpace struct{}

func (noEdgeSpace) Description(context.Context) string {
	return "must not start or end with whitespace"
}

func (v noEdgeSpace) MarkdownDescription(ctx context.Context) string { return v.Description(ctx) }

func (v noEdgeSpace) ValidateString(ctx context.Context, req validator.StringRequest, resp *validator.StringResponse) {
	if req.ConfigValue.IsNull() || req.ConfigValue.IsUnknown() {
		return
	}
	if s := req.ConfigValue.ValueString(); strings.TrimSpace(s) != s {
		resp.Diagnostics.Append(validatordiag.InvalidAttributeValueMatchDiagnostic(req.Path, v.Description(ctx), req.ConfigValue.String()))
	}
}

// HostOrIP accepts what the API does for a backend address: an IP address
// without zone, or an RFC 1123 host name (see HostOrIPProblem).
func HostOrIP() validator.String { return hostOrIP{} }

type hostOrIP struct{}

func (hostOrIP) Description(context.Context) string {
	return "must be an IPv4 or IPv6 address or a DNS name"
}

func (v hostOrIP) MarkdownDescription(ctx context.Context) string { return v.Description(ctx) }

func (hostOrIP) ValidateString(_ context.Context, req validator.StringRequest, resp *validator.StringResponse) {
	if req.ConfigValue.IsNull() || req.ConfigValue.IsUnknown() {
		return
	}
	if msg := HostOrIPProblem(req.ConfigValue.ValueString()); msg != "" {
		resp.Diagnostics.AddAttributeError(req.Path, "Invalid address",
			fmt.Sprintf("%s %s, got %q.", req.Path, msg, req.ConfigValue.ValueString()))
	}
}

// HostOrIPProblem returns "" for an IP address without zone or an RFC 1123
// host name (labels of letters, digits and inner hyphens, the last one not
// numeric), and otherwise what is wrong, to follow the attribute's name.
func HostOrIPProblem(v string) string {
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
