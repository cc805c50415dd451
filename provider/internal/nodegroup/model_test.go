package nodegroup

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/fulcrumlb/fulcrum/openapi"
)

func TestFromAPI(t *testing.T) {
	var m model
	g := &openapi.NodeGroup{Id: "ng_1", Name: "edge", VipRange: "10.0.0.0/24", ReservedPorts: &[]int{9000}, EffectiveReservedPorts: &[]int{22, 8404, 8405, 8406, 9000}}
	if d := m.fromAPI(context.Background(), g); d.HasError() {
		t.Fatal(d)
	}
	if m.ID.ValueString() != "ng_1" || m.Name.ValueString() != "edge" || m.VIPRange.ValueString() != "10.0.0.0/24" || m.Description.ValueString() != "" {
		t.Errorf("model %+v", m)
	}
	if m.Labels.IsNull() || len(m.Labels.Elements()) != 0 {
		t.Errorf("labels = %v, want empty", m.Labels)
	}
	if len(m.ReservedPorts.Elements()) != 1 || len(m.EffectiveReservedPorts.Elements()) != 5 {
		t.Errorf("ports = %v / %v", m.ReservedPorts, m.EffectiveReservedPorts)
	}
	// A group without reserved ports reads as an empty set, never null.
	if d := m.fromAPI(context.Background(), &openapi.NodeGroup{Id: "ng_1"}); d.HasError() || m.ReservedPorts.IsNull() || len(m.ReservedPorts.Elements()) != 0 {
		t.Errorf("no reserved ports: %v %v", m.ReservedPorts, d)
	}
}

func TestToCreateAndUpdate(t *testing.T) {
	ctx := context.Background()
	m := model{Name: types.StringValue("edge"), Description: types.StringValue("d"), VIPRange: types.StringValue("10.0.0.0/24"),
		Labels:        types.MapValueMust(types.StringType, map[string]attr.Value{"a": types.StringValue("b")}),
		ReservedPorts: types.SetValueMust(types.Int64Type, []attr.Value{types.Int64Value(9100), types.Int64Value(9000)})}
	c, d := m.toCreate(ctx)
	if d.HasError() {
		t.Fatal(d)
	}
	want := `{"description":"d","labels":{"a":"b"},"name":"edge","reserved_ports":[9000,9100],"vip_range":"10.0.0.0/24"}`
	if got, _ := json.Marshal(c); string(got) != want {
		t.Errorf("create\n got %s\nwant %s", got, want)
	}
	u, d := m.toUpdate(ctx)
	if d.HasError() {
		t.Fatal(d)
	}
	if got, _ := json.Marshal(u); string(got) != want {
		t.Errorf("update\n got %s\nwant %s", got, want)
	}
}

func TestCIDRProblem(t *testing.T) {
	for in, want := range map[string]string{
		"127.77.0.0/16": "",
		"2001:db8::/32": "",
		"10.0.0.5/24":   "must be written 10.0.0.0/24",
		"2001:DB8::/32": "must be written 2001:db8::/32",
		"10.0.0.1":      "must be a CIDR",
		"10.0.0.0/33":   "must be a CIDR",
		"not-a-cidr/8":  "must be a CIDR",
		"":              "must be a CIDR",
	} {
		got := cidrProblem(in)
		if (want == "") != (got == "") || !strings.Contains(got, want) {
			t.Errorf("cidrProblem(%q) = %q, want %q", in, got, want)
		}
	}
}
