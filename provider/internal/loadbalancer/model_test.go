package loadbalancer

import (
	"reflect"
	"testing"
	"time"

	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/fulcrumlb/fulcrum/openapi"
)

func apiLoadBalancer() *openapi.LoadBalancer {
	msg := "bind failed"
	return &openapi.LoadBalancer{
		Id: "lb_1", TenantId: "tnt_1", Name: "web", Description: "d", Labels: openapi.Labels{"env": "prod"},
		NodeGroupId: "ng_1", VipAddress: "fd00::1", Enabled: true, DeletionProtection: true,
		ProvisioningStatus: openapi.ProvisioningStatusError, OperatingStatus: openapi.OperatingStatusOnline,
		StatusMessage: &msg, CreatedAt: time.Now(), UpdatedAt: time.Now(), Version: 4,
	}
}

func TestFromAPI(t *testing.T) {
	var m model
	m.fromAPI(apiLoadBalancer())
	want := model{
		ID: types.StringValue("lb_1"), Name: types.StringValue("web"), Description: types.StringValue("d"),
		Labels:      types.MapValueMust(types.StringType, map[string]attr.Value{"env": types.StringValue("prod")}),
		NodeGroupID: types.StringValue("ng_1"), VIPAddress: types.StringValue("fd00::1"),
		Enabled: types.BoolValue(true), DeletionProtection: types.BoolValue(true), TenantID: types.StringValue("tnt_1"),
		ProvisioningStatus: types.StringValue("error"), OperatingStatus: types.StringValue("online"),
	}
	if !reflect.DeepEqual(m, want) {
		t.Errorf("fromAPI =\n%+v\nwant\n%+v", m, want)
	}
}

func TestFromAPIKeepsVIPSpelling(t *testing.T) {
	m := model{VIPAddress: types.StringValue("fd00:0:0::1")}
	m.fromAPI(apiLoadBalancer())
	if got := m.VIPAddress.ValueString(); got != "fd00:0:0::1" {
		t.Errorf("vip_address = %q, want the configured spelling of the same address", got)
	}
	m = model{VIPAddress: types.StringValue("fd00::2")}
	m.fromAPI(apiLoadBalancer())
	if got := m.VIPAddress.ValueString(); got != "fd00::1" {
		t.Errorf("vip_address = %q, want the API's address when it differs", got)
	}
}

func TestFromAPINilLabels(t *testing.T) {
	lb := apiLoadBalancer()
	lb.Labels = nil
	var m model
	m.fromAPI(lb)
	if m.Labels.IsNull() || len(m.Labels.Elements()) != 0 {
		t.Errorf("labels = %v, want an empty map", m.Labels)
	}
}

func TestToCreate(t *testing.T) {
	m := model{
		Name: types.StringValue("web"), Description: types.StringValue(""), Labels: types.MapValueMust(types.StringType, map[string]attr.Value{"a": types.StringValue("b")}),
		NodeGroupID: types.StringUnknown(), VIPAddress: types.StringUnknown(),
		Enabled: types.BoolValue(false), DeletionProtection: types.BoolValue(true),
	}
	c := m.toCreate()
	if c.NodeGroupId != nil || c.VipAddress != nil {
		t.Errorf("unknown node_group_id/vip_address must be left to the API, got %v %v", c.NodeGroupId, c.VipAddress)
	}
	if *c.Name != "web" || *c.Description != "" || (*c.Labels)["a"] != "b" || *c.Enabled || !*c.DeletionProtection {
		t.Errorf("toCreate = %+v", c)
	}
	m.NodeGroupID, m.VIPAddress = types.StringValue("ng_1"), types.StringValue("127.0.0.9")
	c = m.toCreate()
	if *c.NodeGroupId != "ng_1" || *c.VipAddress != "127.0.0.9" {
		t.Errorf("configured node_group_id/vip_address must be sent, got %+v", c)
	}
}

func TestToUpdateClearsLabels(t *testing.T) {
	m := model{Name: types.StringValue("n"), Description: types.StringValue("d"), Labels: types.MapNull(types.StringType),
		Enabled: types.BoolValue(true), DeletionProtection: types.BoolValue(false)}
	u := m.toUpdate()
	if u.Labels == nil || len(*u.Labels) != 0 {
		t.Errorf("labels = %v, want an empty map so the API clears them", u.Labels)
	}
	if *u.Name != "n" || *u.Description != "d" || !*u.Enabled || *u.DeletionProtection {
		t.Errorf("toUpdate = %+v", u)
	}
}

func TestLabelFilter(t *testing.T) {
	if f := labelFilter(types.MapNull(types.StringType)); f != nil {
		t.Errorf("null labels = %v, want no filter", *f)
	}
	f := labelFilter(types.MapValueMust(types.StringType, map[string]attr.Value{"team": types.StringValue("web"), "env": types.StringValue("prod")}))
	if f == nil || len(*f) != 2 || (*f)[0] != "env=prod" || (*f)[1] != "team=web" {
		t.Errorf("labelFilter = %v", f)
	}
}
