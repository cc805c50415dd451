package routingrule

import (
	"context"
	"fmt"

	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/types"
)

// ValidateConfig checks what single-attribute validators cannot, as the API
// does: the action's type names its one nested object, a redirect has one
// target, and condition keys and match kinds fit the field. Unknown values
// are left to the API.
func (r *Resource) ValidateConfig(ctx context.Context, req resource.ValidateConfigRequest, resp *resource.ValidateConfigResponse) {
	var action types.Object
	resp.Diagnostics.Append(req.Config.GetAttribute(ctx, path.Root("action"), &action)...)
	if !action.IsNull() && !action.IsUnknown() {
		validateAction(action.Attributes(), &resp.Diagnostics)
	}
	var conditions types.List
	resp.Diagnostics.Append(req.Config.GetAttribute(ctx, path.Root("conditions"), &conditions)...)
	if !conditions.IsNull() && !conditions.IsUnknown() {
		for i, c := range conditions.Elements() {
			if o, ok := c.(types.Object); ok && !o.IsNull() && !o.IsUnknown() {
				validateCondition(path.Root("conditions").AtListIndex(i), o.Attributes(), &resp.Diagnostics)
			}
		}
	}
}

func validateAction(a map[string]attr.Value, diags *diag.Diagnostics) {
	typ, ok := knownString(a["type"])
	if !ok {
		return
	}
	p := path.Root("action")
	for _, name := range []string{"forward", "redirect", "fixed_response"} {
		v := a[name]
		switch {
		case v == nil || v.IsUnknown():
		case !v.IsNull() && name != typ:
			diags.AddAttributeError(p.AtName(name), "Invalid routing rule action",
				fmt.Sprintf("action.%s is only for %s actions; action.type is %q.", name, name, typ))
		case v.IsNull() && name == typ:
			diags.AddAttributeError(p.AtName(name), "Invalid routing rule action",
				fmt.Sprintf("action.%s is required when action.type is %q.", name, typ))
		}
	}
	if rd, ok := a["redirect"].(types.Object); ok && typ == "redirect" && !rd.IsNull() && !rd.IsUnknown() {
		parts, unknown := 0, false
		attrs := rd.Attributes()
		for _, group := range [][]string{{"url"}, {"prefix"}, {"scheme", "host", "port"}} {
			set := false
			for _, name := range group {
				v := attrs[name]
				if v == nil {
					continue
				}
				unknown = unknown || v.IsUnknown()
				set = set || (!v.IsNull() && !v.IsUnknown())
			}
			if set {
				parts++
			}
		}
		if parts > 1 || (parts == 0 && !unknown) {
			diags.AddAttributeError(p.AtName("redirect"), "Invalid redirect",
				"Set exactly one of url, prefix, or any of scheme/host/port.")
		}
	}
}

func validateCondition(p path.Path, c map[string]attr.Value, diags *diag.Diagnostics) {
	field, ok := knownString(c["field"])
	if !ok {
		return
	}
	key := c["key"]
	if key != nil && !key.IsUnknown() {
		switch field {
		case "header", "query", "cookie":
			if key.IsNull() {
				diags.AddAttributeError(p.AtName("key"), "Missing condition key",
					fmt.Sprintf("key is required for %s conditions: the %s name.", field, field))
			}
		default:
			if !key.IsNull() {
				diags.AddAttributeError(p.AtName("key"), "Invalid condition key",
					"key is only for header, query and cookie conditions.")
			}
		}
	}
	if match, ok := knownString(c["match"]); ok && match != "exact" && (field == "source_ip" || field == "method") {
		diags.AddAttributeError(p.AtName("match"), "Invalid condition match",
			fmt.Sprintf("match must be exact for %s conditions.", field))
	}
}

func knownString(v attr.Value) (string, bool) {
	s, ok := v.(types.String)
	if !ok || s.IsNull() || s.IsUnknown() {
		return "", false
	}
	return s.ValueString(), true
}
