package pool

import (
	"encoding/json"
	"testing"

	"github.com/hashicorp/terraform-plugin-framework/types"
	"github.com/oapi-codegen/nullable"

	"github.com/fulcrumlb/fulcrum/openapi"
)

func ptr[T any](v T) *T { return &v }

func apiPool() *openapi.Pool {
	return &openapi.Pool{
		Id: "pool_1", TenantId: "tnt_1", LoadBalancerId: "lb_1", Name: "app", Labels: openapi.Labels{},
		Protocol: openapi.PoolProtocolHttp, Algorithm: openapi.PoolAlgorithmHeader, HashKey: "X-User",
		SessionPersistence: openapi.SessionPersistence{Type: openapi.SessionPersistenceTypeCookieInsert, CookieName: ptr("FULCRUMSRV")},
		HealthMonitor: nullable.NewNullableWithValue(openapi.HealthMonitor{Type: openapi.HealthMonitorTypeHttp,
			IntervalMs: ptr(2000), TimeoutMs: ptr(2000), Rise: ptr(2), Fall: ptr(3), HttpMethod: ptr("GET"), Path: ptr("/healthz"), ExpectedCodes: ptr("200-399")}),
		Retries: 3, Redispatch: true, ProxyProtocol: "v2", DrainTimeoutMs: 30000,
		ProvisioningStatus: openapi.ProvisioningStatusActive, OperatingStatus: openapi.OperatingStatusNoMonitor,
	}
}

func TestFromAPI(t *testing.T) {
	var m model
	m.fromAPI(apiPool())
	if m.Algorithm.ValueString() != "header" || m.HashKey.ValueString() != "X-User" || m.ProxyProtocol.ValueString() != "v2" || !m.Redispatch.ValueBool() {
		t.Errorf("scalars: %+v", m)
	}
	sp := m.SessionPersistence
	if sp.Type.ValueString() != "cookie_insert" || sp.CookieName.ValueString() != "FULCRUMSRV" || sp.CookieTTLSeconds.ValueInt64() != 0 {
		t.Errorf("session_persistence = %+v", sp)
	}
	hm := m.HealthMonitor
	if hm == nil || hm.IntervalMS.ValueInt64() != 2000 || hm.Path.ValueString() != "/healthz" || hm.Host.IsNull() || hm.Host.ValueString() != "" {
		t.Errorf("health_monitor = %+v", hm)
	}
}

func TestFromAPINoMonitor(t *testing.T) {
	p := apiPool()
	p.HealthMonitor = nullable.NewNullNullable[openapi.HealthMonitor]()
	p.SessionPersistence = openapi.SessionPersistence{}
	m := model{HealthMonitor: &healthMonitorModel{}}
	m.fromAPI(p)
	if m.HealthMonitor != nil {
		t.Errorf("health_monitor = %+v, want null", m.HealthMonitor)
	}
	if sp := m.SessionPersistence; sp.Type.ValueString() != "none" || sp.CookieName.ValueString() != "" {
		t.Errorf("session_persistence = %+v, want the schema default", sp)
	}
}

func body(t *testing.T, v any) map[string]any {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestToUpdate(t *testing.T) {
	var m model
	m.fromAPI(apiPool())
	got := body(t, m.toUpdate())
	hm := got["health_monitor"].(map[string]any)
	if _, ok := hm["host"]; ok {
		t.Errorf("empty host sent: %v", hm)
	}
	if hm["path"] != "/healthz" || hm["interval_ms"] != float64(2000) {
		t.Errorf("health_monitor = %v", hm)
	}
	if got["algorithm"] != "header" || got["hash_key"] != "X-User" || got["retries"] != float64(3) || got["proxy_protocol"] != "v2" {
		t.Errorf("update body = %v", got)
	}
	m.HealthMonitor = nil
	m.SessionPersistence.Type, m.SessionPersistence.CookieName = types.StringValue("source_ip"), types.StringValue("")
	got = body(t, m.toUpdate())
	if v, ok := got["health_monitor"]; !ok || v != nil {
		t.Errorf("health_monitor = %v, want an explicit null", v)
	}
	if sp := got["session_persistence"].(map[string]any); sp["type"] != "source_ip" || sp["cookie_name"] != nil {
		t.Errorf("session_persistence = %v", sp)
	}
}

func TestToCreate(t *testing.T) {
	var m model
	m.fromAPI(apiPool())
	m.HealthMonitor = nil
	got := body(t, m.toCreate())
	if _, ok := got["health_monitor"]; ok {
		t.Errorf("null health_monitor sent on create: %v", got)
	}
	if got["load_balancer_id"] != "lb_1" || got["protocol"] != "http" || got["drain_timeout_ms"] != float64(30000) {
		t.Errorf("create body = %v", got)
	}
}

func TestRules(t *testing.T) {
	for _, c := range []struct {
		rule stringRule
		good []string
		bad  []string
	}{
		{token(64), []string{"SRV", "x-user_1"}, []string{"a b", "a;b", string(make([]byte, 65))}},
		{httpMethod, []string{"GET", "PURGE"}, []string{"get", "GE T"}},
		{checkPath, []string{"/", "/healthz?full=1"}, []string{"healthz", "/a b", "/a#b"}},
		{statusCodes, []string{"200", "200-399", "200,204,301-302"}, []string{"2xx", "200-", "399-200", "600", "200,,204"}},
		{hostOrIP, []string{"example.com", "10.0.0.1", "::1", "a-b.example"}, []string{"-a.example", "a_b.example", "10.0.0.300", "fe80::1%eth0", "example.123"}},
	} {
		for _, v := range c.good {
			if msg := c.rule.check(v); msg != "" {
				t.Errorf("%s: %q refused: %s", c.rule.desc, v, msg)
			}
		}
		for _, v := range c.bad {
			if msg := c.rule.check(v); msg == "" {
				t.Errorf("%s: %q accepted", c.rule.desc, v)
			}
		}
	}
}
