package fulcrum

import (
	"errors"
	"strings"
	"testing"

	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
)

func TestAddDryRunProblem(t *testing.T) {
	const rejected = `{"type":"https://fulcrum.dev/problems/haproxy-rejected","title":"HAProxy rejects the configuration","status":422,
		"detail":"With this change, HAProxy rejects load balancer lb_1's configuration: regex is invalid. Nothing was stored.",
		"errors":[{"field":"conditions[0].values[1]","message":"regex '^/\\x{100}' is invalid."}]}`
	const brokenElsewhere = `{"type":"https://fulcrum.dev/problems/haproxy-rejected","title":"HAProxy rejects the configuration","status":422,
		"errors":[{"field":"body","message":"[frontend lsn_1] error detected while parsing ACL 'rule_2_c0'"}]}`
	const invalid = `{"type":"https://fulcrum.dev/problems/invalid","title":"Invalid request","status":422,
		"errors":[{"field":"timeouts.client_ms","message":"must be at most 86400000"}]}`
	const conflict = `{"type":"https://fulcrum.dev/problems/conflict","title":"Conflict","status":409,"errors":[{"field":"port","message":"is taken"}]}`
	cases := map[string]struct {
		status         int
		body           string
		rename         map[string]string
		errors, warns  int
		path, contains string
	}{
		"ok":                         {status: 200, body: `{}`},
		"HAProxy refuses a value":    {status: 422, body: rejected, errors: 1, path: "conditions[0].values[1]", contains: "HAProxy refuses the planned routing rule"},
		"HAProxy refuses the others": {status: 422, body: brokenElsewhere, warns: 1},
		"invalid value, renamed":     {status: 422, body: invalid, rename: map[string]string{"timeouts.client_ms": "connection_timeouts.client_ms"}, errors: 1, path: "connection_timeouts.client_ms"},
		"conflict":                   {status: 409, body: conflict, warns: 1},
		"unavailable":                {status: 503, body: `{"type":"x/haproxy-unavailable","title":"HAProxy check unavailable","status":503}`, warns: 1},
		"unauthorized":               {status: 401, body: `{"title":"Unauthorized"}`, warns: 1},
		"no field errors":            {status: 422, body: `{"type":"x/invalid","title":"Invalid request","status":422,"detail":"bad"}`, errors: 1},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			var d diag.Diagnostics
			AddDryRunProblem(&d, "routing rule", c.status, []byte(c.body), c.rename)
			if got := d.ErrorsCount(); got != c.errors {
				t.Errorf("%d errors, want %d: %v", got, c.errors, d)
			}
			if got := d.WarningsCount(); got != c.warns {
				t.Errorf("%d warnings, want %d: %v", got, c.warns, d)
			}
			if c.path == "" {
				return
			}
			ad, ok := d.Errors()[0].(diag.DiagnosticWithPath)
			if !ok {
				t.Fatalf("error %v names no attribute", d.Errors()[0])
			}
			if got := ad.Path().String(); got != c.path {
				t.Errorf("attribute %s, want %s", got, c.path)
			}
			if !strings.Contains(ad.Summary(), c.contains) {
				t.Errorf("summary %q, want %q", ad.Summary(), c.contains)
			}
		})
	}
}

func TestAddDryRunErrorIsAWarning(t *testing.T) {
	var d diag.Diagnostics
	AddDryRunError(&d, "member", errors.New("connection refused"))
	if d.HasError() || d.WarningsCount() != 1 {
		t.Errorf("diagnostics %v, want one warning", d)
	}
}

func TestFieldPathNested(t *testing.T) {
	want := path.Root("action").AtName("forward").AtName("pools").AtListIndex(1).AtName("pool_id")
	if got := FieldPath("action.forward.pools[1].pool_id", nil); !got.Equal(want) {
		t.Errorf("got %s, want %s", got, want)
	}
}
