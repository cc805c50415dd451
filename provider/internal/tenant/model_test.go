package tenant

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/fulcrumlb/fulcrum/api/store"
	"github.com/fulcrumlb/fulcrum/openapi"
)

func TestFromAPI(t *testing.T) {
	var tn openapi.Tenant
	if err := json.Unmarshal([]byte(`{"id":"tnt_1","name":"acme","description":"d","labels":{"a":"b"},
		"quotas":{"load_balancers":3,"listeners":4,"pools":5,"members":6,"routing_rules":7}}`), &tn); err != nil {
		t.Fatal(err)
	}
	var m model
	if d := m.fromAPI(context.Background(), &tn); d.HasError() {
		t.Fatal(d)
	}
	if m.ID.ValueString() != "tnt_1" || m.Name.ValueString() != "acme" || m.Description.ValueString() != "d" || len(m.Labels.Elements()) != 1 {
		t.Errorf("model %+v", m)
	}
	q := m.Quotas
	got := []int64{q.LoadBalancers.ValueInt64(), q.Listeners.ValueInt64(), q.Pools.ValueInt64(), q.Members.ValueInt64(),
		q.RoutingRules.ValueInt64(), q.Certificates.ValueInt64()}
	want := []int64{3, 4, 5, 6, 7, 50} // certificates left out: the default
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("quotas = %v, want %v", got, want)
			break
		}
	}
}

func TestToCreateAndUpdate(t *testing.T) {
	ctx := context.Background()
	m := model{Name: types.StringValue("acme"), Description: types.StringValue(""),
		Labels: types.MapValueMust(types.StringType, map[string]attr.Value{}),
		Quotas: &quotasModel{LoadBalancers: types.Int64Value(0), Listeners: types.Int64Value(50), Pools: types.Int64Value(50),
			Members: types.Int64Value(500), RoutingRules: types.Int64Value(500), Certificates: types.Int64Value(1)}}
	c, d := m.toCreate(ctx)
	if d.HasError() {
		t.Fatal(d)
	}
	got, _ := json.Marshal(c)
	want := `{"description":"","labels":{},"name":"acme","quotas":{"certificates":1,"listeners":50,"load_balancers":0,"members":500,"pools":50,"routing_rules":500}}`
	if string(got) != want {
		t.Errorf("create\n got %s\nwant %s", got, want)
	}
	u, d := m.toUpdate(ctx)
	if d.HasError() {
		t.Fatal(d)
	}
	got, _ = json.Marshal(u)
	if string(got) != want {
		t.Errorf("update\n got %s\nwant %s", got, want)
	}
}

func TestDefaultQuotasMatchAPI(t *testing.T) {
	// The schema's defaults are the API's (store.DefaultQuotas, by JSON name).
	raw, _ := json.Marshal(store.DefaultQuotas)
	var api map[string]int64
	if err := json.Unmarshal(raw, &api); err != nil {
		t.Fatal(err)
	}
	if len(api) != len(quotas) {
		t.Errorf("the API has %d quotas, the schema %d", len(api), len(quotas))
	}
	for name, v := range defaultQuotas().Attributes() {
		if got := v.(types.Int64).ValueInt64(); got != api[name] {
			t.Errorf("quotas.%s defaults to %d, the API to %d", name, got, api[name])
		}
	}
}
