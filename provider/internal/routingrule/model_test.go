package routingrule

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/fulcrumlb/fulcrum/openapi"
)

// decode builds an API rule from JSON, the way the client sees it.
func decode(t *testing.T, s string) *openapi.RoutingRule {
	t.Helper()
	var r openapi.RoutingRule
	if err := json.Unmarshal([]byte(s), &r); err != nil {
		t.Fatal(err)
	}
	return &r
}

func TestFromAPI(t *testing.T) {
	r := decode(t, `{"id":"rule_1","listener_id":"lsn_1","load_balancer_id":"lb_1","name":"api","description":"","labels":{"a":"b"},
		"priority":10,"provisioning_status":"active","operating_status":"online",
		"conditions":[{"field":"path","match":"prefix","values":["/api/"],"invert":false},{"field":"header","match":"exact","key":"X-Env","values":["a","b"],"invert":true}],
		"action":{"type":"forward","forward":{"pools":[{"pool_id":"pool_1","weight":3},{"pool_id":"pool_2"}]}}}`)
	var m model
	if d := m.fromAPI(context.Background(), r); d.HasError() {
		t.Fatal(d)
	}
	if m.ID.ValueString() != "rule_1" || m.ListenerID.ValueString() != "lsn_1" || m.LoadBalancerID.ValueString() != "lb_1" || m.Priority.ValueInt64() != 10 {
		t.Errorf("ids/priority: %+v", m)
	}
	if len(m.Conditions) != 2 {
		t.Fatalf("conditions: %+v", m.Conditions)
	}
	c0, c1 := m.Conditions[0], m.Conditions[1]
	if c0.Field.ValueString() != "path" || c0.Match.ValueString() != "prefix" || !c0.Key.IsNull() || c0.Invert.ValueBool() || c0.Values[0].ValueString() != "/api/" {
		t.Errorf("condition 0: %+v", c0)
	}
	if c1.Key.ValueString() != "X-Env" || !c1.Invert.ValueBool() || len(c1.Values) != 2 {
		t.Errorf("condition 1: %+v", c1)
	}
	a := m.Action
	if a.Type.ValueString() != "forward" || a.Redirect != nil || a.FixedResponse != nil || len(a.Forward.Pools) != 2 {
		t.Fatalf("action: %+v", a)
	}
	if a.Forward.Pools[0].Weight.ValueInt64() != 3 || a.Forward.Pools[1].Weight.ValueInt64() != defaultWeight {
		t.Errorf("weights: %+v", a.Forward.Pools)
	}
}

func TestFromAPIDefaults(t *testing.T) {
	ctx := context.Background()
	r := decode(t, `{"id":"rule_1","priority":1,"conditions":[{"field":"host","values":["x.example.com"]}],
		"action":{"type":"redirect","redirect":{"scheme":"https"}}}`)
	var m model
	if d := m.fromAPI(ctx, r); d.HasError() {
		t.Fatal(d)
	}
	if c := m.Conditions[0]; c.Match.ValueString() != "exact" || c.Invert.IsNull() || c.Invert.ValueBool() {
		t.Errorf("condition defaults: %+v", c)
	}
	if m.Labels.IsNull() || len(m.Labels.Elements()) != 0 {
		t.Errorf("labels = %v, want empty", m.Labels)
	}
	rd := m.Action.Redirect
	if rd.Code.ValueInt64() != 302 || rd.Scheme.ValueString() != "https" || !rd.URL.IsNull() || !rd.Prefix.IsNull() || !rd.Host.IsNull() || !rd.Port.IsNull() {
		t.Errorf("redirect: %+v", rd)
	}

	r = decode(t, `{"id":"rule_1","priority":1,"conditions":null,"action":{"type":"fixed_response","fixed_response":{"status_code":503}}}`)
	if d := m.fromAPI(ctx, r); d.HasError() {
		t.Fatal(d)
	}
	if m.Conditions == nil || len(m.Conditions) != 0 {
		t.Errorf("conditions = %#v, want empty (not null)", m.Conditions)
	}
	fr := m.Action.FixedResponse
	if fr.StatusCode.ValueInt64() != 503 || fr.ContentType.ValueString() != "text/plain" || fr.Body.IsNull() || fr.Body.ValueString() != "" {
		t.Errorf("fixed_response: %+v", fr)
	}
	if m.Action.Forward != nil || m.Action.Redirect != nil {
		t.Errorf("stale nested actions: %+v", m.Action)
	}
}

// emptyLabels is the labels attribute's default.
var emptyLabels = types.MapValueMust(types.StringType, map[string]attr.Value{})

func plannedRule() model {
	return model{
		ListenerID: types.StringValue("lsn_1"), Name: types.StringValue("r"), Description: types.StringValue(""),
		Labels:   types.MapValueMust(types.StringType, map[string]attr.Value{"k": types.StringValue("v")}),
		Priority: types.Int64Value(7),
		Conditions: []conditionModel{{Field: types.StringValue("query"), Match: types.StringValue("exact"), Key: types.StringValue("v"),
			Values: []types.String{types.StringValue("2")}, Invert: types.BoolValue(false)}},
		Action: &actionModel{Type: types.StringValue("redirect"), Redirect: &redirectModel{
			URL: types.StringNull(), Prefix: types.StringValue("https://example.com"), Scheme: types.StringNull(), Host: types.StringNull(),
			Port: types.Int64Null(), Code: types.Int64Value(308)}},
	}
}

func TestToCreate(t *testing.T) {
	m := plannedRule()
	body, d := m.toCreate(context.Background())
	if d.HasError() {
		t.Fatal(d)
	}
	got, _ := json.Marshal(body)
	want := `{"action":{"redirect":{"code":308,"prefix":"https://example.com"},"type":"redirect"},` +
		`"conditions":[{"field":"query","invert":false,"key":"v","match":"exact","values":["2"]}],` +
		`"description":"","labels":{"k":"v"},"listener_id":"lsn_1","name":"r","priority":7}`
	if string(got) != want {
		t.Errorf("body\n got %s\nwant %s", got, want)
	}
}

func TestToUpdateSendsEverything(t *testing.T) {
	m := plannedRule()
	m.Conditions = []conditionModel{}
	m.Labels = emptyLabels
	m.Action = &actionModel{Type: types.StringValue("forward"), Forward: &forwardModel{Pools: []weightedPoolModel{
		{PoolID: types.StringValue("pool_1"), Weight: types.Int64Value(0)}, {PoolID: types.StringValue("pool_2"), Weight: types.Int64Value(5)}}}}
	body, d := m.toUpdate(context.Background())
	if d.HasError() {
		t.Fatal(d)
	}
	got, _ := json.Marshal(body)
	// Empty conditions and labels are sent (they clear what was there); weight 0 is a real value.
	want := `{"action":{"forward":{"pools":[{"pool_id":"pool_1","weight":0},{"pool_id":"pool_2","weight":5}]},"type":"forward"},` +
		`"conditions":[],"description":"","labels":{},"name":"r","priority":7}`
	if string(got) != want {
		t.Errorf("body\n got %s\nwant %s", got, want)
	}
}

func TestRoundTrip(t *testing.T) {
	// What toCreate sends and the API echoes back reads as the same model.
	ctx := context.Background()
	m := plannedRule()
	body, _ := m.toCreate(ctx)
	raw, _ := json.Marshal(body)
	r := decode(t, string(raw))
	var back model
	if d := back.fromAPI(ctx, r); d.HasError() {
		t.Fatal(d)
	}
	back.ID = m.ID
	back.LoadBalancerID = m.LoadBalancerID
	a, _ := json.Marshal(m.Action.toAPI())
	b, _ := json.Marshal(back.Action.toAPI())
	if string(a) != string(b) || len(back.Conditions) != 1 || !back.Conditions[0].Key.Equal(m.Conditions[0].Key) {
		t.Errorf("round trip changed the rule:\n%s\n%s", a, b)
	}
}

func obj(attrs map[string]attr.Value) types.Object {
	ts := map[string]attr.Type{}
	for k, v := range attrs {
		ts[k] = v.Type(context.Background())
	}
	return types.ObjectValueMust(ts, attrs)
}

func str(s string) types.String { return types.StringValue(s) }

func redirect(url, prefix, host types.String) types.Object {
	return obj(map[string]attr.Value{"url": url, "prefix": prefix, "scheme": types.StringNull(), "host": host,
		"port": types.Int64Null(), "code": types.Int64Null()})
}

var nullObj = types.ObjectNull(map[string]attr.Type{})

func TestValidateAction(t *testing.T) {
	null := types.StringNull()
	for name, tc := range map[string]struct {
		attrs map[string]attr.Value
		bad   string // the attribute named, "" for valid
	}{
		"forward ok":        {map[string]attr.Value{"type": str("forward"), "forward": obj(map[string]attr.Value{}), "redirect": nullObj, "fixed_response": nullObj}, ""},
		"deny ok":           {map[string]attr.Value{"type": str("deny"), "forward": nullObj, "redirect": nullObj, "fixed_response": nullObj}, ""},
		"forward missing":   {map[string]attr.Value{"type": str("forward"), "forward": nullObj, "redirect": nullObj, "fixed_response": nullObj}, "action.forward"},
		"deny with forward": {map[string]attr.Value{"type": str("deny"), "forward": obj(map[string]attr.Value{}), "redirect": nullObj, "fixed_response": nullObj}, "action.forward"},
		"redirect two":      {map[string]attr.Value{"type": str("redirect"), "forward": nullObj, "redirect": redirect(str("https://a"), null, str("b")), "fixed_response": nullObj}, "action.redirect"},
		"redirect none":     {map[string]attr.Value{"type": str("redirect"), "forward": nullObj, "redirect": redirect(null, null, null), "fixed_response": nullObj}, "action.redirect"},
		"redirect unknown":  {map[string]attr.Value{"type": str("redirect"), "forward": nullObj, "redirect": redirect(types.StringUnknown(), null, null), "fixed_response": nullObj}, ""},
		"redirect host":     {map[string]attr.Value{"type": str("redirect"), "forward": nullObj, "redirect": redirect(null, null, str("b")), "fixed_response": nullObj}, ""},
		"type unknown":      {map[string]attr.Value{"type": types.StringUnknown(), "forward": nullObj, "redirect": nullObj, "fixed_response": nullObj}, ""},
	} {
		var d diag.Diagnostics
		validateAction(tc.attrs, &d)
		checkDiag(t, name, d, tc.bad)
	}
}

func TestValidateCondition(t *testing.T) {
	p := path.Root("conditions").AtListIndex(0)
	null := types.StringNull()
	for name, tc := range map[string]struct {
		field, match string
		key          types.String
		bad          string
	}{
		"path":               {"path", "prefix", null, ""},
		"header needs key":   {"header", "exact", null, "conditions[0].key"},
		"cookie with key":    {"cookie", "exact", str("sid"), ""},
		"host with key":      {"host", "exact", str("x"), "conditions[0].key"},
		"method exact only":  {"method", "regex", null, "conditions[0].match"},
		"source_ip exact":    {"source_ip", "exact", null, ""},
		"unknown key passes": {"query", "exact", types.StringUnknown(), ""},
	} {
		var d diag.Diagnostics
		validateCondition(p, map[string]attr.Value{"field": str(tc.field), "match": str(tc.match), "key": tc.key}, &d)
		checkDiag(t, name, d, tc.bad)
	}
}

func checkDiag(t *testing.T, name string, d diag.Diagnostics, bad string) {
	t.Helper()
	if bad == "" {
		if d.HasError() {
			t.Errorf("%s: unexpected %v", name, d)
		}
		return
	}
	if d.ErrorsCount() != 1 {
		t.Errorf("%s: want one error on %s, got %v", name, bad, d)
		return
	}
	wp, ok := d.Errors()[0].(diag.DiagnosticWithPath)
	if !ok || wp.Path().String() != bad {
		t.Errorf("%s: error %v not on %s", name, d.Errors()[0], bad)
	}
}

// TestFromAPIKeepsSourceIPSpelling: the API masks source_ip values; the state
// keeps the configured spelling of the same prefix, and takes the API's value
// when the prefix differs (drift).
func TestFromAPIKeepsSourceIPSpelling(t *testing.T) {
	r := decode(t, `{"id":"rule_1","priority":1,"conditions":[
		{"field":"source_ip","values":["10.0.0.0/8","192.168.1.7/32","2001:db8::/32","172.16.0.0/12"]},
		{"field":"host","values":["a.example.com"]}],"action":{"type":"deny"}}`)
	str := func(vs ...string) []types.String {
		var out []types.String
		for _, v := range vs {
			out = append(out, types.StringValue(v))
		}
		return out
	}
	m := model{Conditions: []conditionModel{
		{Field: types.StringValue("source_ip"), Values: str("10.1.2.3/8", "192.168.1.7", "2001:DB8::1/32", "10.0.0.0/8")},
		{Field: types.StringValue("host"), Values: str("A.example.com")},
	}}
	if d := m.fromAPI(context.Background(), r); d.HasError() {
		t.Fatal(d)
	}
	var got []string
	for _, v := range m.Conditions[0].Values {
		got = append(got, v.ValueString())
	}
	want := []string{"10.1.2.3/8", "192.168.1.7", "2001:DB8::1/32", "172.16.0.0/12"}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("source_ip values %v, want %v", got, want)
		}
	}
	if v := m.Conditions[1].Values[0].ValueString(); v != "a.example.com" {
		t.Fatalf("a host value is not a CIDR and follows the API: %q", v)
	}
}
