package provider

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/defaults"

	"github.com/fulcrumlb/fulcrum/openapi"
)

// limitResources maps each resource to the schema of its create request, and
// renames the attributes whose API name differs.
var limitResources = map[string]struct {
	schema string
	rename map[string]string
}{
	"fulcrum_tenant":        {"TenantCreate", nil},
	"fulcrum_node_group":    {"NodeGroupCreate", nil},
	"fulcrum_load_balancer": {"LoadBalancerCreate", nil},
	"fulcrum_listener":      {"ListenerCreate", map[string]string{"connection_timeouts": "timeouts"}},
	"fulcrum_pool":          {"PoolCreate", nil},
	"fulcrum_member":        {"MemberCreate", nil},
	"fulcrum_routing_rule":  {"RoutingRuleCreate", nil},
	"fulcrum_certificate":   {"CertificateCreate", nil},
}

// notInProvider lists the document's limits the provider does not state, and
// why; every other limit of a create schema must be on its attribute.
var notInProvider = map[string]string{
	"NodeGroupCreate.vrrp_interface maxLength":         "VRRP settings are not in the provider",
	"NodeGroupCreate.vrrp_router_id_min minimum":       "VRRP settings are not in the provider",
	"NodeGroupCreate.vrrp_router_id_min maximum":       "VRRP settings are not in the provider",
	"NodeGroupCreate.vrrp_router_id_min default":       "VRRP settings are not in the provider",
	"NodeGroupCreate.vrrp_router_id_max minimum":       "VRRP settings are not in the provider",
	"NodeGroupCreate.vrrp_router_id_max maximum":       "VRRP settings are not in the provider",
	"NodeGroupCreate.vrrp_router_id_max default":       "VRRP settings are not in the provider",
	"NodeGroupCreate.vrrp_advert_interval_ms minimum":  "VRRP settings are not in the provider",
	"NodeGroupCreate.vrrp_advert_interval_ms maximum":  "VRRP settings are not in the provider",
	"NodeGroupCreate.vrrp_advert_interval_ms default":  "VRRP settings are not in the provider",
	"PoolCreate.health_monitor.timeout_ms default":     "planned by timeoutDefault: 3000, or interval_ms when shorter",
	"PoolCreate.health_monitor.http_method default":    "planned by type: only http and https monitors have one",
	"PoolCreate.health_monitor.path default":           "planned by type: only http and https monitors have one",
	"PoolCreate.health_monitor.expected_codes default": "planned by type: only http and https monitors have one",
	"PoolCreate.hash_key maxLength":                    "checked by the pool's token validator (token(openapi.PoolHashKeyMaxLength))",
	"MemberCreate.address maxLength":                   "checked by fulcrum.HostOrIP (a hostname of at most 253 characters)",
}

// docLimits are the limits of one property of the document.
type docLimits map[string]any // keyword ("minimum", "maxLength", "default", …) → value

func limitsOf(s *openapi3.Schema) docLimits {
	l := docLimits{}
	if s.Min != nil {
		l["minimum"] = int64(*s.Min)
	}
	if s.Max != nil {
		l["maximum"] = int64(*s.Max)
	}
	if s.MinLength > 0 {
		l["minLength"] = int64(s.MinLength)
	}
	if s.MaxLength != nil {
		l["maxLength"] = int64(*s.MaxLength)
	}
	if s.MinItems > 0 {
		l["minItems"] = int64(s.MinItems)
	}
	if s.MaxItems != nil {
		l["maxItems"] = int64(*s.MaxItems)
	}
	if s.Items != nil && s.Items.Value != nil && s.Items.Value.Type.Is("integer") {
		if it := s.Items.Value; it.Min != nil && it.Max != nil {
			l["items minimum"], l["items maximum"] = int64(*it.Min), int64(*it.Max)
		}
	}
	switch d := s.Default.(type) {
	case float64:
		l["default"] = int64(d)
	case string, bool:
		l["default"] = d
	}
	return l
}

// children returns the properties of s, through allOf, $ref and array items.
func children(s *openapi3.Schema) openapi3.Schemas {
	if s.Items != nil && s.Items.Value != nil && len(s.Items.Value.Properties) > 0 {
		return s.Items.Value.Properties
	}
	if len(s.Properties) > 0 {
		return s.Properties
	}
	for _, a := range s.AllOf {
		if a.Value != nil && len(a.Value.Properties) > 0 {
			return a.Value.Properties
		}
	}
	return nil
}

// docBounded lists every property of s (at where) with limits, by path.
func docBounded(where string, s *openapi3.Schema, depth int, out map[string]docLimits) {
	if depth > 4 {
		return
	}
	for name, p := range children(s) {
		if p.Value == nil {
			continue
		}
		if l := limitsOf(p.Value); len(l) > 0 {
			out[where+"."+name] = l
		}
		docBounded(where+"."+name, p.Value, depth+1, out)
	}
}

// providerLimits reads the bounds of an attribute's validators from their
// descriptions (the framework validators' own wording) and its default.
func providerLimits(t *testing.T, where string, a schema.Attribute) docLimits {
	ctx := context.Background()
	l := docLimits{}
	var descs []string
	add := func(vs ...interface{ Description(context.Context) string }) {
		for _, v := range vs {
			descs = append(descs, v.Description(ctx))
		}
	}
	switch a := a.(type) {
	case schema.Int64Attribute:
		for _, v := range a.Validators {
			add(v)
		}
		if a.Default != nil {
			var resp defaults.Int64Response
			a.Default.DefaultInt64(ctx, defaults.Int64Request{}, &resp)
			l["default"] = resp.PlanValue.ValueInt64()
		}
	case schema.StringAttribute:
		for _, v := range a.Validators {
			add(v)
		}
		if a.Default != nil {
			var resp defaults.StringResponse
			a.Default.DefaultString(ctx, defaults.StringRequest{}, &resp)
			if s := resp.PlanValue.ValueString(); s != "" {
				l["default"] = s
			}
		}
	case schema.BoolAttribute:
		if a.Default != nil {
			var resp defaults.BoolResponse
			a.Default.DefaultBool(ctx, defaults.BoolRequest{}, &resp)
			l["default"] = resp.PlanValue.ValueBool()
		}
	case schema.ListAttribute:
		for _, v := range a.Validators {
			add(v)
		}
	case schema.SetAttribute:
		for _, v := range a.Validators {
			add(v)
		}
	case schema.ListNestedAttribute:
		for _, v := range a.Validators {
			add(v)
		}
	}
	for _, d := range descs {
		for _, p := range validatorWording {
			if m := p.re.FindStringSubmatch(d); m != nil {
				for i, kw := range p.keywords {
					n, _ := strconv.ParseInt(m[i+1], 10, 64)
					l[kw] = n
				}
				break
			}
		}
	}
	return l
}

// validatorWording maps the framework validators' descriptions to keywords.
var validatorWording = []struct {
	re       *regexp.Regexp
	keywords []string
}{
	{regexp.MustCompile(`^element value must satisfy all validations: value must be between (\d+) and (\d+)$`), []string{"items minimum", "items maximum"}},
	{regexp.MustCompile(`^value must be between (\d+) and (\d+)$`), []string{"minimum", "maximum"}},
	{regexp.MustCompile(`^string length must be between (\d+) and (\d+)$`), []string{"minLength", "maxLength"}},
	{regexp.MustCompile(`^string length must be at most (\d+)$`), []string{"maxLength"}},
	{regexp.MustCompile(`^(?:list|set) must contain at least (\d+) elements and at most (\d+) elements$`), []string{"minItems", "maxItems"}},
	{regexp.MustCompile(`^(?:list|set) must contain at most (\d+) elements$`), []string{"maxItems"}},
}

func nested(a schema.Attribute) map[string]schema.Attribute {
	switch a := a.(type) {
	case schema.SingleNestedAttribute:
		return a.Attributes
	case schema.ListNestedAttribute:
		return a.NestedObject.Attributes
	case schema.SetNestedAttribute:
		return a.NestedObject.Attributes
	}
	return nil
}

// TestLimitsMatchDocument walks every resource's schema and compares each
// attribute's validators (bounds of numbers, lengths, list sizes) and default
// with what openapi.yaml states for the API field: where both state a limit
// they agree, and every limit of a create request is on its attribute (or
// listed in notInProvider with the reason).
func TestLimitsMatchDocument(t *testing.T) {
	doc, err := openapi3.NewLoader().LoadFromData(openapi.Document)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	seen := map[string]bool{}
	compared := 0
	for _, newResource := range resources {
		r := newResource()
		var meta resource.MetadataResponse
		r.Metadata(ctx, resource.MetadataRequest{}, &meta)
		var sch resource.SchemaResponse
		r.Schema(ctx, resource.SchemaRequest{}, &sch)
		m, ok := limitResources[meta.TypeName]
		if !ok {
			t.Errorf("%s: not in limitResources", meta.TypeName)
			continue
		}
		root := doc.Components.Schemas[m.schema]
		if root == nil {
			t.Fatalf("%s: no schema %s in the document", meta.TypeName, m.schema)
		}
		want := map[string]docLimits{}
		docBounded(m.schema, root.Value, 0, want)

		var walk func(attrPath, apiPath string, s *openapi3.Schema, attrs map[string]schema.Attribute)
		walk = func(attrPath, apiPath string, s *openapi3.Schema, attrs map[string]schema.Attribute) {
			props := children(s)
			for name, a := range attrs {
				apiName := name
				if n, ok := m.rename[strings.TrimPrefix(attrPath+"."+name, ".")]; ok {
					apiName = n
				}
				p := props[apiName]
				if p == nil || p.Value == nil {
					continue // computed or provider-only attributes
				}
				where := apiPath + "." + apiName
				got := providerLimits(t, meta.TypeName+"."+strings.TrimPrefix(attrPath+"."+name, "."), a)
				docL := limitsOf(p.Value)
				for kw, v := range docL {
					key := where + " " + kw
					gv, ok := got[kw]
					if !ok {
						continue // reported below unless listed
					}
					seen[key] = true
					compared++
					if fmt.Sprint(gv) != fmt.Sprint(v) {
						t.Errorf("%s.%s: the provider's %s is %v, the document's (%s) %v", meta.TypeName, strings.TrimPrefix(attrPath+"."+name, "."), kw, gv, where, v)
					}
				}
				for kw, gv := range got {
					if _, ok := docL[kw]; !ok && (kw == "minimum" || kw == "maximum") {
						t.Errorf("%s.%s: the provider's %s is %v; the document (%s) states none", meta.TypeName, strings.TrimPrefix(attrPath+"."+name, "."), kw, gv, where)
					}
				}
				if sub := nested(a); sub != nil {
					walk(attrPath+"."+name, where, p.Value, sub)
				}
			}
		}
		walk("", m.schema, root.Value, sch.Schema.Attributes)

		var missing []string
		for where, l := range want {
			for kw := range l {
				key := where + " " + kw
				if !seen[key] && notInProvider[key] == "" {
					missing = append(missing, key)
				}
			}
		}
		slices.Sort(missing)
		for _, k := range missing {
			t.Errorf("%s: the document's %s is not on the provider's attribute", meta.TypeName, k)
		}
	}
	for k := range notInProvider {
		if seen[k] {
			t.Errorf("notInProvider lists %q, but the provider states it: remove it from the list", k)
		}
	}
	if compared < 50 {
		t.Errorf("compared only %d limits", compared)
	}
	t.Logf("compared %d limits", compared)
}
