package member

import (
	"encoding/json"
	"testing"

	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/fulcrumlb/fulcrum/openapi"
)

func apiMember() *openapi.Member {
	return &openapi.Member{
		Id: "mbr_1", TenantId: "tnt_1", LoadBalancerId: "lb_1", PoolId: "pool_1", Name: "a", Labels: openapi.Labels{"az": "1"},
		Address: "2001:db8::1", Port: 8080, Weight: 7, Backup: true, Enabled: false, MaxConnections: 10,
		ProvisioningStatus: openapi.ProvisioningStatusActive, OperatingStatus: openapi.OperatingStatusOffline,
	}
}

func TestFromAPI(t *testing.T) {
	var m model
	m.fromAPI(apiMember())
	if m.ID.ValueString() != "mbr_1" || m.PoolID.ValueString() != "pool_1" || m.LoadBalancerID.ValueString() != "lb_1" ||
		m.Address.ValueString() != "2001:db8::1" || m.Port.ValueInt64() != 8080 || m.Weight.ValueInt64() != 7 ||
		!m.Backup.ValueBool() || m.Enabled.ValueBool() || m.MaxConnections.ValueInt64() != 10 ||
		m.OperatingStatus.ValueString() != "offline" || m.Labels.Elements()["az"].(types.String).ValueString() != "1" {
		t.Errorf("fromAPI = %+v", m)
	}
}

func TestFromAPIKeepsAddressSpelling(t *testing.T) {
	m := model{Address: types.StringValue("2001:0db8:0::1")}
	m.fromAPI(apiMember())
	if m.Address.ValueString() != "2001:0db8:0::1" {
		t.Errorf("address = %v, want the configured spelling of the same IP", m.Address)
	}
	m = model{Address: types.StringValue("backend.example")}
	m.fromAPI(apiMember())
	if m.Address.ValueString() != "2001:db8::1" {
		t.Errorf("address = %v, want the API's value when it differs", m.Address)
	}
}

func TestToCreateAndUpdate(t *testing.T) {
	var m model
	m.fromAPI(apiMember())
	b, _ := json.Marshal(m.toCreate())
	var got map[string]any
	_ = json.Unmarshal(b, &got)
	if got["pool_id"] != "pool_1" || got["address"] != "2001:db8::1" || got["port"] != float64(8080) || got["weight"] != float64(7) ||
		got["enabled"] != false || got["backup"] != true {
		t.Errorf("create body %s", b)
	}
	m.Labels = types.MapNull(types.StringType)
	u := m.toUpdate()
	if u.Labels == nil || len(*u.Labels) != 0 || *u.Weight != 7 || *u.Address != "2001:db8::1" || *u.Port != 8080 {
		t.Errorf("toUpdate = %+v", u)
	}
}
