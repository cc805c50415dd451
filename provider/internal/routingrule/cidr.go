package routingrule

import (
	"net/netip"
	"strings"

	"github.com/hashicorp/terraform-plugin-framework/types"
)

// The API stores source_ip values canonically, as it does listener CIDRs
// ("10.1.2.3/8" → "10.0.0.0/8", a bare address → /32 or /128). The state keeps
// the configured spelling while it means the same prefix, so an apply never
// reads back an "inconsistent result" and a re-plan is empty.

// canonicalCIDR reads a CIDR the way the API does.
func canonicalCIDR(s string) (netip.Prefix, bool) {
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			return netip.Prefix{}, false
		}
		return netip.PrefixFrom(a, a.BitLen()), true
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, false
	}
	return p.Masked(), true
}

func sameCIDR(a, b string) bool {
	pa, ok1 := canonicalCIDR(a)
	pb, ok2 := canonicalCIDR(b)
	return ok1 && ok2 && pa == pb
}

// keepSourceIPSpelling returns the API's source_ip values, with each one
// that names the same prefix as its counterpart in prior spelled as in prior.
func keepSourceIPSpelling(prior []types.String, api []string) []types.String {
	out := make([]types.String, 0, len(api))
	for i, v := range api {
		if i < len(prior) && len(prior) == len(api) && !prior[i].IsNull() && !prior[i].IsUnknown() && sameCIDR(prior[i].ValueString(), v) {
			out = append(out, prior[i])
			continue
		}
		out = append(out, types.StringValue(v))
	}
	return out
}
