package listener

import (
	"encoding/json"
	"testing"

	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/types"
	"github.com/oapi-codegen/nullable"

	"github.com/fulcrumlb/fulcrum/openapi"
)

func ptr[T any](v T) *T { return &v }

func apiListener() *openapi.Listener {
	typ := openapi.Connections
	return &openapi.Listener{
		Id: "lsn_1", TenantId: "tnt_1", LoadBalancerId: "lb_1", Name: "web", Labels: openapi.Labels{"a": "b"},
		Protocol: openapi.ListenerProtocolHttps, Port: 443, DefaultPoolId: nullable.NewNullableWithValue("pool_1"),
		CertificateIds: []string{"cert_1", "cert_2"}, ConnectionLimit: 100,
		RateLimit:    nullable.NewNullableWithValue(openapi.RateLimit{Type: &typ, PerSecond: 50}),
		AllowedCidrs: []string{"10.0.0.0/8", "192.0.2.1/32"}, DeniedCidrs: []string{},
		Timeouts: openapi.ListenerTimeouts{ClientMs: ptr(1), ConnectMs: ptr(2), ServerMs: ptr(3), HttpRequestMs: ptr(4),
			HttpKeepAliveMs: ptr(5), TunnelMs: ptr(6)},
		InsertHeaders: openapi.InsertHeaders{XForwardedFor: ptr(true), XForwardedProto: ptr(false)},
		Hsts:          nullable.NewNullableWithValue(openapi.HSTS{MaxAgeSeconds: ptr(60), Preload: ptr(true)}),
		Compression:   true, ProvisioningStatus: openapi.ProvisioningStatusActive, OperatingStatus: openapi.OperatingStatusOnline,
	}
}

func listStrings(l types.List) []string {
	var out []string
	for _, e := range l.Elements() {
		out = append(out, e.(types.String).ValueString())
	}
	return out
}

func TestFromAPI(t *testing.T) {
	var m model
	m.fromAPI(apiListener())
	if m.ID.ValueString() != "lsn_1" || m.LoadBalancerID.ValueString() != "lb_1" || m.Protocol.ValueString() != "https" || m.Port.ValueInt64() != 443 {
		t.Errorf("identity: %+v", m)
	}
	if m.DefaultPoolID.ValueString() != "pool_1" || m.ConnectionLimit.ValueInt64() != 100 || !m.Compression.ValueBool() {
		t.Errorf("scalars: %+v", m)
	}
	if got := listStrings(m.CertificateIDs); len(got) != 2 || got[0] != "cert_1" {
		t.Errorf("certificate_ids = %v", got)
	}
	if m.RateLimit == nil || m.RateLimit.Type.ValueString() != "connections" || m.RateLimit.PerSecond.ValueInt64() != 50 {
		t.Errorf("rate_limit = %+v", m.RateLimit)
	}
	if ct := m.ConnectionTimeouts; ct == nil || ct.ClientMS.ValueInt64() != 1 || ct.TunnelMS.ValueInt64() != 6 {
		t.Errorf("connection_timeouts = %+v", ct)
	}
	if h := m.InsertHeaders; !h.XForwardedFor.ValueBool() || h.XForwardedProto.ValueBool() || h.XRequestID.IsNull() || h.XRequestID.ValueBool() {
		t.Errorf("insert_headers = %+v", h)
	}
	if h := m.HSTS; h == nil || h.MaxAgeSeconds.ValueInt64() != 60 || !h.Preload.ValueBool() || h.IncludeSubdomains.ValueBool() {
		t.Errorf("hsts = %+v", h)
	}
	if d := m.DeniedCIDRs; d.IsNull() || len(d.Elements()) != 0 {
		t.Errorf("denied_cidrs = %v, want empty", d)
	}
}

func TestFromAPINulls(t *testing.T) {
	l := apiListener()
	l.DefaultPoolId = nullable.NewNullNullable[string]()
	l.RateLimit = nullable.NewNullNullable[openapi.RateLimit]()
	l.Hsts = nullable.Nullable[openapi.HSTS]{} // omitted
	m := model{RateLimit: &rateLimitModel{}, HSTS: &hstsModel{}}
	m.fromAPI(l)
	if !m.DefaultPoolID.IsNull() || m.RateLimit != nil || m.HSTS != nil {
		t.Errorf("want nulls, got default_pool_id=%v rate_limit=%v hsts=%v", m.DefaultPoolID, m.RateLimit, m.HSTS)
	}
}

func TestFromAPIRateLimitDefaultType(t *testing.T) {
	l := apiListener()
	l.RateLimit = nullable.NewNullableWithValue(openapi.RateLimit{PerSecond: 5})
	var m model
	m.fromAPI(l)
	if m.RateLimit.Type.ValueString() != "requests" {
		t.Errorf("rate_limit.type = %v, want the API default requests", m.RateLimit.Type)
	}
}

func TestFromAPIKeepsCIDRSpelling(t *testing.T) {
	m := model{AllowedCIDRs: stringList([]string{"10.1.2.3/8", "192.0.2.1"})}
	m.fromAPI(apiListener())
	if got := listStrings(m.AllowedCIDRs); got[0] != "10.1.2.3/8" || got[1] != "192.0.2.1" {
		t.Errorf("allowed_cidrs = %v, want the configured spelling", got)
	}
	m = model{AllowedCIDRs: stringList([]string{"10.0.0.0/16", "192.0.2.1"})}
	m.fromAPI(apiListener())
	if got := listStrings(m.AllowedCIDRs); got[0] != "10.0.0.0/8" {
		t.Errorf("allowed_cidrs = %v, want the API's list when a prefix differs", got)
	}
}

func TestToUpdateClearsNullables(t *testing.T) {
	var m model
	m.fromAPI(apiListener())
	m.DefaultPoolID, m.RateLimit, m.HSTS = types.StringNull(), nil, nil
	m.Labels = types.MapNull(types.StringType)
	b, err := json.Marshal(m.toUpdate())
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	_ = json.Unmarshal(b, &got)
	for _, k := range []string{"default_pool_id", "rate_limit", "hsts"} {
		if v, ok := got[k]; !ok || v != nil {
			t.Errorf("%s = %v (present %v), want an explicit null", k, v, ok)
		}
	}
	if l, ok := got["labels"].(map[string]any); !ok || len(l) != 0 {
		t.Errorf("labels = %v, want {}", got["labels"])
	}
	tm := got["timeouts"].(map[string]any)
	if tm["client_ms"] != float64(1) || tm["tunnel_ms"] != float64(6) {
		t.Errorf("timeouts = %v", tm)
	}
}

func TestToCreateOmitsNulls(t *testing.T) {
	var m model
	m.fromAPI(apiListener())
	m.DefaultPoolID, m.RateLimit, m.HSTS = types.StringNull(), nil, nil
	b, _ := json.Marshal(m.toCreate())
	var got map[string]any
	_ = json.Unmarshal(b, &got)
	for _, k := range []string{"default_pool_id", "rate_limit", "hsts"} {
		if _, ok := got[k]; ok {
			t.Errorf("%s sent on create: %s", k, b)
		}
	}
	if got["load_balancer_id"] != "lb_1" || got["protocol"] != "https" || got["port"] != float64(443) {
		t.Errorf("create body %s", b)
	}
	m.fromAPI(apiListener())
	b, _ = json.Marshal(m.toCreate())
	_ = json.Unmarshal(b, &got)
	if got["default_pool_id"] != "pool_1" || got["rate_limit"] == nil || got["hsts"] == nil {
		t.Errorf("create body %s, want the nullable objects", b)
	}
}

func TestProblemRenamesTimeouts(t *testing.T) {
	body := []byte(`{"type":"about:blank","title":"Invalid request","status":422,
"errors":[{"field":"timeouts.client_ms","message":"must be between 1 and 86400000 milliseconds"},{"field":"allowed_cidrs[1]","message":"bad"}]}`)
	var diags diag.Diagnostics
	addProblem(&diags, "Could not create the listener", 422, body)
	if len(diags) != 2 {
		t.Fatalf("diags = %v", diags)
	}
	want := []path.Path{path.Root("connection_timeouts").AtName("client_ms"), path.Root("allowed_cidrs").AtListIndex(1)}
	for i, d := range diags {
		wp, ok := d.(diag.DiagnosticWithPath)
		if !ok || !wp.Path().Equal(want[i]) {
			t.Errorf("diag %d path = %v, want %v", i, d, want[i])
		}
	}
}

func TestHeaderName(t *testing.T) {
	if got := headerName("x_forwarded_for"); got != "X-Forwarded-For" {
		t.Error(got)
	}
	if got := headerName("x_request_id"); got != "X-Request-ID" {
		t.Error(got)
	}
}

func TestAccessLogModel(t *testing.T) {
	l := apiListener()
	l.AccessLog = openapi.AccessLog{Enabled: true}
	var m model
	m.fromAPI(l)
	if m.AccessLog == nil || !m.AccessLog.Enabled.ValueBool() {
		t.Fatalf("access_log = %+v, want enabled", m.AccessLog)
	}
	for _, tc := range []struct {
		al   *accessLogModel
		want bool
	}{{&accessLogModel{Enabled: types.BoolValue(true)}, true}, {&accessLogModel{Enabled: types.BoolValue(false)}, false}, {nil, false}} {
		m.AccessLog = tc.al
		if u := m.toUpdate(); u.AccessLog == nil || u.AccessLog.Enabled != tc.want {
			t.Errorf("access_log %+v: update sends %+v, want enabled=%v", tc.al, u.AccessLog, tc.want)
		}
		if c := m.toCreate(); c.AccessLog == nil || c.AccessLog.Enabled != tc.want {
			t.Errorf("access_log %+v: create sends %+v, want enabled=%v", tc.al, c.AccessLog, tc.want)
		}
	}
}
