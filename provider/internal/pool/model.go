package pool

import (
	"github.com/hashicorp/terraform-plugin-framework/types"
	"github.com/oapi-codegen/nullable"

	"github.com/fulcrumlb/fulcrum/openapi"
	"github.com/fulcrumlb/fulcrum/provider/internal/fulcrum"
)

// model is what the resource and the data source share: every attribute the
// API returns.
type model struct {
	ID                 types.String             `tfsdk:"id"`
	LoadBalancerID     types.String             `tfsdk:"load_balancer_id"`
	Name               types.String             `tfsdk:"name"`
	Description        types.String             `tfsdk:"description"`
	Labels             types.Map                `tfsdk:"labels"`
	Protocol           types.String             `tfsdk:"protocol"`
	Algorithm          types.String             `tfsdk:"algorithm"`
	HashKey            types.String             `tfsdk:"hash_key"`
	SessionPersistence *sessionPersistenceModel `tfsdk:"session_persistence"`
	HealthMonitor      *healthMonitorModel      `tfsdk:"health_monitor"`
	Retries            types.Int64              `tfsdk:"retries"`
	Redispatch         types.Bool               `tfsdk:"redispatch"`
	ProxyProtocol      types.String             `tfsdk:"proxy_protocol"`
	DrainTimeoutMS     types.Int64              `tfsdk:"drain_timeout_ms"`
	TLSToMembers       types.Bool               `tfsdk:"tls_to_members"`
	TenantID           types.String             `tfsdk:"tenant_id"`
	ProvisioningStatus types.String             `tfsdk:"provisioning_status"`
	OperatingStatus    types.String             `tfsdk:"operating_status"`
}

type sessionPersistenceModel struct {
	Type             types.String `tfsdk:"type"`
	CookieName       types.String `tfsdk:"cookie_name"`
	CookieTTLSeconds types.Int64  `tfsdk:"cookie_ttl_seconds"`
}

type healthMonitorModel struct {
	Type          types.String `tfsdk:"type"`
	IntervalMS    types.Int64  `tfsdk:"interval_ms"`
	TimeoutMS     types.Int64  `tfsdk:"timeout_ms"`
	Rise          types.Int64  `tfsdk:"rise"`
	Fall          types.Int64  `tfsdk:"fall"`
	HTTPMethod    types.String `tfsdk:"http_method"`
	Path          types.String `tfsdk:"path"`
	Host          types.String `tfsdk:"host"`
	ExpectedCodes types.String `tfsdk:"expected_codes"`
}

// fromAPI refreshes m from the API's view, so out-of-band changes show in the
// next plan. Strings the API leaves out are empty, as the schema's defaults.
func (m *model) fromAPI(p *openapi.Pool) {
	m.ID = types.StringValue(p.Id)
	m.LoadBalancerID = types.StringValue(p.LoadBalancerId)
	m.Name = types.StringValue(p.Name)
	m.Description = types.StringValue(p.Description)
	m.Labels = fulcrum.LabelsValue(p.Labels)
	m.Protocol = types.StringValue(string(p.Protocol))
	m.Algorithm = types.StringValue(string(p.Algorithm))
	m.HashKey = types.StringValue(p.HashKey)
	sp := p.SessionPersistence
	typ := string(sp.Type)
	if typ == "" {
		typ = string(openapi.SessionPersistenceTypeNone)
	}
	m.SessionPersistence = &sessionPersistenceModel{
		Type: types.StringValue(typ), CookieName: types.StringValue(deref(sp.CookieName)),
		CookieTTLSeconds: types.Int64Value(int64(deref(sp.CookieTtlSeconds))),
	}
	m.HealthMonitor = nil
	if hm, err := p.HealthMonitor.Get(); err == nil {
		m.HealthMonitor = &healthMonitorModel{
			Type:       types.StringValue(string(hm.Type)),
			IntervalMS: types.Int64Value(int64(deref(hm.IntervalMs))), TimeoutMS: types.Int64Value(int64(deref(hm.TimeoutMs))),
			Rise: types.Int64Value(int64(deref(hm.Rise))), Fall: types.Int64Value(int64(deref(hm.Fall))),
			HTTPMethod: types.StringValue(deref(hm.HttpMethod)), Path: types.StringValue(deref(hm.Path)),
			Host: types.StringValue(deref(hm.Host)), ExpectedCodes: types.StringValue(deref(hm.ExpectedCodes)),
		}
	}
	m.Retries = types.Int64Value(int64(p.Retries))
	m.Redispatch = types.BoolValue(p.Redispatch)
	m.ProxyProtocol = types.StringValue(string(p.ProxyProtocol))
	m.DrainTimeoutMS = types.Int64Value(int64(p.DrainTimeoutMs))
	m.TLSToMembers = types.BoolValue(p.TlsToMembers)
	m.TenantID = types.StringValue(p.TenantId)
	m.ProvisioningStatus = types.StringValue(string(p.ProvisioningStatus))
	m.OperatingStatus = types.StringValue(string(p.OperatingStatus))
}

// toCreate is the POST body for the planned pool.
func (m *model) toCreate() openapi.PoolCreate {
	u := m.toUpdate()
	c := openapi.PoolCreate{
		LoadBalancerId: m.LoadBalancerID.ValueString(),
		Protocol:       openapi.PoolProtocol(m.Protocol.ValueString()),
		Name:           u.Name, Description: u.Description, Labels: u.Labels,
		Algorithm: u.Algorithm, HashKey: u.HashKey, SessionPersistence: u.SessionPersistence,
		Retries: u.Retries, Redispatch: u.Redispatch, DrainTimeoutMs: u.DrainTimeoutMs, TlsToMembers: u.TlsToMembers,
		ProxyProtocol: (*openapi.PoolCreateProxyProtocol)(u.ProxyProtocol),
	}
	if !u.HealthMonitor.IsNull() {
		c.HealthMonitor = u.HealthMonitor
	}
	return c
}

// toUpdate is the PATCH body: every attribute, with null clearing the health
// monitor, so the update also undoes drift. Empty strings the API treats as
// "unset" (cookie name, monitor fields) are left out.
func (m *model) toUpdate() openapi.PoolUpdate {
	u := openapi.PoolUpdate{
		Name:           fulcrum.StringPtr(m.Name),
		Description:    fulcrum.StringPtr(m.Description),
		Labels:         fulcrum.LabelsPtr(m.Labels),
		Protocol:       (*openapi.PoolProtocol)(fulcrum.StringPtr(m.Protocol)),
		Algorithm:      (*openapi.PoolAlgorithm)(fulcrum.StringPtr(m.Algorithm)),
		HashKey:        fulcrum.StringPtr(m.HashKey),
		Retries:        fulcrum.IntPtr(m.Retries),
		Redispatch:     fulcrum.BoolPtr(m.Redispatch),
		ProxyProtocol:  (*openapi.PoolUpdateProxyProtocol)(fulcrum.StringPtr(m.ProxyProtocol)),
		DrainTimeoutMs: fulcrum.IntPtr(m.DrainTimeoutMS),
		TlsToMembers:   fulcrum.BoolPtr(m.TLSToMembers),
		HealthMonitor:  nullable.NewNullNullable[openapi.HealthMonitor](),
	}
	if sp := m.SessionPersistence; sp != nil {
		u.SessionPersistence = &openapi.SessionPersistence{
			Type:             openapi.SessionPersistenceType(sp.Type.ValueString()),
			CookieName:       nonEmpty(sp.CookieName),
			CookieTtlSeconds: fulcrum.IntPtr(sp.CookieTTLSeconds),
		}
	}
	if hm := m.HealthMonitor; hm != nil {
		u.HealthMonitor = nullable.NewNullableWithValue(openapi.HealthMonitor{
			Type:       openapi.HealthMonitorType(hm.Type.ValueString()),
			IntervalMs: fulcrum.IntPtr(hm.IntervalMS), TimeoutMs: fulcrum.IntPtr(hm.TimeoutMS), Rise: fulcrum.IntPtr(hm.Rise), Fall: fulcrum.IntPtr(hm.Fall),
			HttpMethod: nonEmpty(hm.HTTPMethod), Path: nonEmpty(hm.Path), Host: nonEmpty(hm.Host), ExpectedCodes: nonEmpty(hm.ExpectedCodes),
		})
	}
	return u
}

func deref[T any](p *T) T {
	var zero T
	if p != nil {
		return *p
	}
	return zero
}

func nonEmpty(v types.String) *string {
	if p := fulcrum.StringPtr(v); p != nil && *p != "" {
		return p
	}
	return nil
}
