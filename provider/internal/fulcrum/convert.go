package fulcrum

import (
	"context"
	"net/netip"

	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/fulcrumlb/fulcrum/openapi"
)

// StringPtr is v for an optional API field: nil when v is null or unknown
// (so the field is left out).
func StringPtr(v types.String) *string {
	if v.IsNull() || v.IsUnknown() {
		return nil
	}
	s := v.ValueString()
	return &s
}

// IntPtr is v for an optional API field: nil when v is null or unknown.
func IntPtr(v types.Int64) *int {
	if v.IsNull() || v.IsUnknown() {
		return nil
	}
	i := int(v.ValueInt64())
	return &i
}

// BoolPtr is v for an optional API field: nil when v is null or unknown.
func BoolPtr(v types.Bool) *bool {
	if v.IsNull() || v.IsUnknown() {
		return nil
	}
	b := v.ValueBool()
	return &b
}

// LabelsValue is the API's labels as the labels attribute; no labels (nil)
// are an empty map, never null.
func LabelsValue(l map[string]string) types.Map {
	elems := make(map[string]attr.Value, len(l))
	for k, v := range l {
		elems[k] = types.StringValue(v)
	}
	return types.MapValueMust(types.StringType, elems)
}

// LabelsPtr is the labels attribute for a request body built without
// diagnostics. A null map is sent as no labels, so removing the attribute
// clears them; an unknown one is left out; null or unknown elements are
// skipped.
func LabelsPtr(v types.Map) *openapi.Labels {
	if v.IsUnknown() {
		return nil
	}
	l := openapi.Labels{}
	for k, e := range v.Elements() {
		if s, ok := e.(types.String); ok && !s.IsNull() && !s.IsUnknown() {
			l[k] = s.ValueString()
		}
	}
	return &l
}

// LabelsToAPI is the labels attribute for a request body built with
// diagnostics. A null or unknown map is left out; an element that is not a
// known string is an error in diags.
func LabelsToAPI(ctx context.Context, v types.Map, diags *diag.Diagnostics) *openapi.Labels {
	if v.IsNull() || v.IsUnknown() {
		return nil
	}
	out := openapi.Labels{}
	diags.Append(v.ElementsAs(ctx, (*map[string]string)(&out), false)...)
	return &out
}

// SameIP reports whether prior (a configured or stored address) and the
// API's address are the same IP address, perhaps spelled differently
// ("::0001" and "::1"). Host names and unknown or null values are never the
// same.
func SameIP(prior types.String, api string) bool {
	if prior.IsNull() || prior.IsUnknown() {
		return false
	}
	a, err1 := netip.ParseAddr(prior.ValueString())
	b, err2 := netip.ParseAddr(api)
	return err1 == nil && err2 == nil && a == b
}
