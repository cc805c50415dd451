package routingrule

import (
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/fulcrumlb/fulcrum/provider/internal/fulcrum"
)

// The API stores source_ip values canonically, as it does listener CIDRs
// ("10.1.2.3/8" → "10.0.0.0/8", a bare address → /32 or /128). The state keeps
// the configured spelling while it means the same prefix, so an apply never
// reads back an "inconsistent result" and a re-plan is empty.

// keepSourceIPSpelling returns the API's source_ip values, with each one
// that names the same prefix as its counterpart in prior spelled as in prior.
func keepSourceIPSpelling(prior []types.String, api []string) []types.String {
	out := make([]types.String, 0, len(api))
	for i, v := range api {
		if i < len(prior) && len(prior) == len(api) && !prior[i].IsNull() && !prior[i].IsUnknown() && fulcrum.SameCIDR(prior[i].ValueString(), v) {
			out = append(out, prior[i])
			continue
		}
		out = append(out, types.StringValue(v))
	}
	return out
}
