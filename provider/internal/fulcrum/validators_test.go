package fulcrum

import (
	"context"
	"strings"
	"testing"

	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"
)

func TestHostOrIPProblem(t *testing.T) {
	for _, v := range []string{"10.0.0.1", "::1", "backend", "api.example.com", "a-b.example"} {
		if msg := HostOrIPProblem(v); msg != "" {
			t.Errorf("%q refused: %s", v, msg)
		}
	}
	for _, v := range []string{"", "bad host", "10.0.0.300", "-a.example", "a_b.example", "fe80::1%eth0", "host.123", "a..b"} {
		if msg := HostOrIPProblem(v); msg == "" {
			t.Errorf("%q accepted", v)
		}
	}
}

func TestNoEdgeSpace(t *testing.T) {
	check := func(v types.String) string {
		var resp validator.StringResponse
		NoEdgeSpace().ValidateString(context.Background(), validator.StringRequest{Path: path.Root("name"), ConfigValue: v}, &resp)
		if !resp.Diagnostics.HasError() {
			return ""
		}
		return resp.Diagnostics.Errors()[0].Detail()
	}
	for _, v := range []types.String{types.StringValue(""), types.StringValue("web"), types.StringValue("a b"),
		types.StringNull(), types.StringUnknown()} {
		if msg := check(v); msg != "" {
			t.Errorf("%s refused: %s", v, msg)
		}
	}
	// The API reads white space as Unicode does: a no-break space counts.
	for _, s := range []string{" web", "web\n", "\tweb", "\u00a0web", "web\u2003"} {
		msg := check(types.StringValue(s))
		if !strings.HasPrefix(msg, "Attribute name must not start or end with whitespace") {
			t.Errorf("%q: %q", s, msg)
		}
	}
}
