package pool

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/fulcrumlb/fulcrum/openapi"
	"github.com/fulcrumlb/fulcrum/provider/internal/fulcrum"
)

// stringRule is a plan-time copy of one of the API's string checks: it
// returns "" for a good value, else what is wrong.
type stringRule struct {
	desc  string
	check func(string) string
}

func (r stringRule) Description(context.Context) string { return r.desc }
func (r stringRule) MarkdownDescription(ctx context.Context) string {
	return r.Description(ctx)
}

func (r stringRule) ValidateString(_ context.Context, req validator.StringRequest, resp *validator.StringResponse) {
	if req.ConfigValue.IsNull() || req.ConfigValue.IsUnknown() || req.ConfigValue.ValueString() == "" {
		return // empty means "unset" for every attribute using a rule
	}
	if msg := r.check(req.ConfigValue.ValueString()); msg != "" {
		resp.Diagnostics.AddAttributeError(req.Path, "Invalid value", fmt.Sprintf("%s %s.", req.Path, msg))
	}
}

func isTchar(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

// token is an RFC 9110 token (header and cookie names) of at most max characters.
func token(max int) stringRule {
	return stringRule{desc: fmt.Sprintf("1 to %d letters, digits and !#$%%&'*+-.^_`|~", max), check: func(v string) string {
		if len(v) > max {
			return fmt.Sprintf("must be at most %d characters", max)
		}
		for i := 0; i < len(v); i++ {
			if !isTchar(v[i]) {
				return fmt.Sprintf("contains %q; only letters, digits and !#$%%&'*+-.^_`|~ are allowed", v[i])
			}
		}
		return ""
	}}
}

var httpMethod = stringRule{desc: "an HTTP method such as GET: 1 to 32 uppercase letters", check: func(v string) string {
	if len(v) > 32 {
		return "must be at most 32 characters"
	}
	for i := 0; i < len(v); i++ {
		if v[i] < 'A' || v[i] > 'Z' {
			return "must be uppercase letters A-Z only, such as GET or HEAD"
		}
	}
	return ""
}}

var checkPath = stringRule{desc: `a request path starting with "/", optionally with a query`, check: func(v string) string {
	if len(v) > 1024 {
		return "must be at most 1024 characters"
	}
	if v[0] != '/' {
		return `must start with "/"`
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; c <= ' ' || c >= 0x7f || c == '#' || c == '"' || c == '\\' {
			return fmt.Sprintf("contains %q; percent-encode it", c)
		}
	}
	return ""
}}

var statusCodes = stringRule{desc: "status codes or ranges such as 200-399 or 200,204", check: func(v string) string {
	if len(v) > 256 {
		return "must be at most 256 characters"
	}
	for entry := range strings.SplitSeq(v, ",") {
		lo, hi, isRange := strings.Cut(entry, "-")
		if !isRange {
			hi = lo
		}
		a, err1 := strconv.Atoi(lo)
		b, err2 := strconv.Atoi(hi)
		if err1 != nil || err2 != nil || len(lo) != 3 || len(hi) != 3 {
			return fmt.Sprintf("entry %q is not a status code (such as 200) or range (such as 200-399)", entry)
		}
		if a < 100 || b > 599 || a > b {
			return fmt.Sprintf("entry %q must lie within 100-599, low to high", entry)
		}
	}
	return ""
}}

// hostOrIP is an IP address or an RFC 1123 host name.
var hostOrIP = stringRule{desc: "a host name or IP address", check: fulcrum.HostOrIPProblem}

// byType plans the API's default for an unset string whose default depends
// on its object's `type` (cookie_insert's cookie name, http monitors' method,
// path and codes), so plans show what the API will store.
type byType struct {
	desc     string
	defaults map[string]string // type → default; other types get ""
}

func (m byType) Description(context.Context) string { return m.desc }
func (m byType) MarkdownDescription(ctx context.Context) string {
	return m.Description(ctx)
}

func (m byType) PlanModifyString(ctx context.Context, req planmodifier.StringRequest, resp *planmodifier.StringResponse) {
	if !req.ConfigValue.IsNull() {
		return
	}
	var typ types.String
	resp.Diagnostics.Append(req.Config.GetAttribute(ctx, req.Path.ParentPath().AtName("type"), &typ)...)
	if typ.IsNull() || typ.IsUnknown() {
		return
	}
	resp.PlanValue = types.StringValue(m.defaults[typ.ValueString()])
}

// timeoutDefault plans health_monitor.timeout_ms as the API defaults it:
// 3000, or interval_ms when that is shorter.
type timeoutDefault struct{}

func (timeoutDefault) Description(context.Context) string {
	return fmt.Sprintf("Defaults to %d, or interval_ms when shorter.", defaultTimeoutMS)
}
func (m timeoutDefault) MarkdownDescription(ctx context.Context) string { return m.Description(ctx) }

func (timeoutDefault) PlanModifyInt64(ctx context.Context, req planmodifier.Int64Request, resp *planmodifier.Int64Response) {
	if !req.ConfigValue.IsNull() {
		return
	}
	var typ types.String
	var interval types.Int64
	resp.Diagnostics.Append(req.Config.GetAttribute(ctx, req.Path.ParentPath().AtName("type"), &typ)...)
	resp.Diagnostics.Append(req.Config.GetAttribute(ctx, req.Path.ParentPath().AtName("interval_ms"), &interval)...)
	if typ.IsNull() || interval.IsUnknown() {
		return
	}
	iv := int64(defaultIntervalMS)
	if !interval.IsNull() {
		iv = interval.ValueInt64()
	}
	resp.PlanValue = types.Int64Value(min(defaultTimeoutMS, iv))
}

const (
	defaultIntervalMS = openapi.HealthMonitorIntervalMsDefault
	defaultTimeoutMS  = openapi.HealthMonitorTimeoutMsDefault
)

func attributeError(diags interface {
	AddAttributeError(path.Path, string, string)
}, at path.Path, msg string) {
	diags.AddAttributeError(at, "Invalid pool", fmt.Sprintf("%s %s.", at, msg))
}
