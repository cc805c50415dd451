package listener

import (
	"github.com/hashicorp/terraform-plugin-framework-timeouts/resource/timeouts"
	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/types"
	"github.com/oapi-codegen/nullable"

	"github.com/fulcrumlb/fulcrum/openapi"
	"github.com/fulcrumlb/fulcrum/provider/internal/fulcrum"
)

// model is the resource's plan and state.
type model struct {
	ID                  types.String             `tfsdk:"id"`
	LoadBalancerID      types.String             `tfsdk:"load_balancer_id"`
	Name                types.String             `tfsdk:"name"`
	Description         types.String             `tfsdk:"description"`
	Labels              types.Map                `tfsdk:"labels"`
	Protocol            types.String             `tfsdk:"protocol"`
	Port                types.Int64              `tfsdk:"port"`
	DefaultPoolID       types.String             `tfsdk:"default_pool_id"`
	CertificateIDs      types.List               `tfsdk:"certificate_ids"`
	ConnectionLimit     types.Int64              `tfsdk:"connection_limit"`
	RateLimit           *rateLimitModel          `tfsdk:"rate_limit"`
	AllowedCIDRs        types.List               `tfsdk:"allowed_cidrs"`
	DeniedCIDRs         types.List               `tfsdk:"denied_cidrs"`
	ConnectionTimeouts  *connectionTimeoutsModel `tfsdk:"connection_timeouts"`
	InsertHeaders       *insertHeadersModel      `tfsdk:"insert_headers"`
	RedirectHTTPToHTTPS types.Bool               `tfsdk:"redirect_http_to_https"`
	HSTS                *hstsModel               `tfsdk:"hsts"`
	Compression         types.Bool               `tfsdk:"compression"`
	AccessLog           *accessLogModel          `tfsdk:"access_log"`
	TenantID            types.String             `tfsdk:"tenant_id"`
	ProvisioningStatus  types.String             `tfsdk:"provisioning_status"`
	OperatingStatus     types.String             `tfsdk:"operating_status"`
	Timeouts            timeouts.Value           `tfsdk:"timeouts"`
}

type rateLimitModel struct {
	Type      types.String `tfsdk:"type"`
	PerSecond types.Int64  `tfsdk:"per_second"`
}

// connectionTimeoutsModel is the API's listener `timeouts`, in milliseconds.
type connectionTimeoutsModel struct {
	ClientMS        types.Int64 `tfsdk:"client_ms"`
	ConnectMS       types.Int64 `tfsdk:"connect_ms"`
	ServerMS        types.Int64 `tfsdk:"server_ms"`
	HTTPRequestMS   types.Int64 `tfsdk:"http_request_ms"`
	HTTPKeepAliveMS types.Int64 `tfsdk:"http_keep_alive_ms"`
	TunnelMS        types.Int64 `tfsdk:"tunnel_ms"`
}

type insertHeadersModel struct {
	XForwardedFor   types.Bool `tfsdk:"x_forwarded_for"`
	XForwardedProto types.Bool `tfsdk:"x_forwarded_proto"`
	XForwardedPort  types.Bool `tfsdk:"x_forwarded_port"`
	XRequestID      types.Bool `tfsdk:"x_request_id"`
}

type accessLogModel struct {
	Enabled types.Bool `tfsdk:"enabled"`
}

type hstsModel struct {
	MaxAgeSeconds     types.Int64 `tfsdk:"max_age_seconds"`
	IncludeSubdomains types.Bool  `tfsdk:"include_subdomains"`
	Preload           types.Bool  `tfsdk:"preload"`
}

// fromAPI refreshes m from the API's view, so out-of-band changes show in the
// next plan. CIDRs the API canonicalized ("10.1.2.3/8" → "10.0.0.0/8", a bare
// address → /32) keep the configured spelling when they mean the same.
func (m *model) fromAPI(l *openapi.Listener) {
	m.ID = types.StringValue(l.Id)
	m.LoadBalancerID = types.StringValue(l.LoadBalancerId)
	m.Name = types.StringValue(l.Name)
	m.Description = types.StringValue(l.Description)
	m.Labels = fulcrum.LabelsValue(l.Labels)
	m.Protocol = types.StringValue(string(l.Protocol))
	m.Port = types.Int64Value(int64(l.Port))
	m.DefaultPoolID = types.StringNull()
	if v, err := l.DefaultPoolId.Get(); err == nil && v != "" {
		m.DefaultPoolID = types.StringValue(v)
	}
	m.CertificateIDs = stringList(l.CertificateIds)
	m.ConnectionLimit = types.Int64Value(int64(l.ConnectionLimit))
	m.RateLimit = nil
	if rl, err := l.RateLimit.Get(); err == nil {
		typ := openapi.Requests
		if rl.Type != nil {
			typ = *rl.Type
		}
		m.RateLimit = &rateLimitModel{Type: types.StringValue(string(typ)), PerSecond: types.Int64Value(int64(rl.PerSecond))}
	}
	m.AllowedCIDRs = cidrList(m.AllowedCIDRs, l.AllowedCidrs)
	m.DeniedCIDRs = cidrList(m.DeniedCIDRs, l.DeniedCidrs)
	t := l.Timeouts
	m.ConnectionTimeouts = &connectionTimeoutsModel{
		ClientMS: intValue(t.ClientMs), ConnectMS: intValue(t.ConnectMs), ServerMS: intValue(t.ServerMs),
		HTTPRequestMS: intValue(t.HttpRequestMs), HTTPKeepAliveMS: intValue(t.HttpKeepAliveMs), TunnelMS: intValue(t.TunnelMs),
	}
	h := l.InsertHeaders
	m.InsertHeaders = &insertHeadersModel{
		XForwardedFor: boolValue(h.XForwardedFor), XForwardedProto: boolValue(h.XForwardedProto),
		XForwardedPort: boolValue(h.XForwardedPort), XRequestID: boolValue(h.XRequestId),
	}
	m.RedirectHTTPToHTTPS = types.BoolValue(l.RedirectHttpToHttps)
	m.HSTS = nil
	if h, err := l.Hsts.Get(); err == nil {
		m.HSTS = &hstsModel{MaxAgeSeconds: intValue(h.MaxAgeSeconds), IncludeSubdomains: boolValue(h.IncludeSubdomains), Preload: boolValue(h.Preload)}
	}
	m.Compression = types.BoolValue(l.Compression)
	m.AccessLog = &accessLogModel{Enabled: types.BoolValue(l.AccessLog.Enabled)}
	m.TenantID = types.StringValue(l.TenantId)
	m.ProvisioningStatus = types.StringValue(string(l.ProvisioningStatus))
	m.OperatingStatus = types.StringValue(string(l.OperatingStatus))
}

// toCreate is the POST body for the planned listener.
func (m *model) toCreate() openapi.ListenerCreate {
	u := m.toUpdate()
	c := openapi.ListenerCreate{
		LoadBalancerId: m.LoadBalancerID.ValueString(),
		Protocol:       openapi.ListenerProtocol(m.Protocol.ValueString()),
		Port:           int(m.Port.ValueInt64()),
		Name:           u.Name, Description: u.Description, Labels: u.Labels,
		CertificateIds: u.CertificateIds, ConnectionLimit: u.ConnectionLimit,
		AllowedCidrs: u.AllowedCidrs, DeniedCidrs: u.DeniedCidrs, Timeouts: u.Timeouts, InsertHeaders: u.InsertHeaders,
		RedirectHttpToHttps: u.RedirectHttpToHttps, Compression: u.Compression, AccessLog: u.AccessLog,
	}
	// A create leaves unset nullable objects out rather than sending null.
	if !u.DefaultPoolId.IsNull() {
		c.DefaultPoolId = u.DefaultPoolId
	}
	if !u.RateLimit.IsNull() {
		c.RateLimit = u.RateLimit
	}
	if !u.Hsts.IsNull() {
		c.Hsts = u.Hsts
	}
	return c
}

// toUpdate is the PATCH body: every attribute, with null clearing the
// nullable ones, so the update also undoes drift.
func (m *model) toUpdate() openapi.ListenerUpdate {
	proto := openapi.ListenerProtocol(m.Protocol.ValueString())
	u := openapi.ListenerUpdate{
		Name:                fulcrum.StringPtr(m.Name),
		Description:         fulcrum.StringPtr(m.Description),
		Labels:              fulcrum.LabelsPtr(m.Labels),
		Protocol:            &proto,
		Port:                fulcrum.IntPtr(m.Port),
		CertificateIds:      listPtr(m.CertificateIDs),
		ConnectionLimit:     fulcrum.IntPtr(m.ConnectionLimit),
		AllowedCidrs:        listPtr(m.AllowedCIDRs),
		DeniedCidrs:         listPtr(m.DeniedCIDRs),
		RedirectHttpToHttps: fulcrum.BoolPtr(m.RedirectHTTPToHTTPS),
		Compression:         fulcrum.BoolPtr(m.Compression),
		DefaultPoolId:       nullable.NewNullNullable[string](),
		RateLimit:           nullable.NewNullNullable[openapi.RateLimit](),
		Hsts:                nullable.NewNullNullable[openapi.HSTS](),
	}
	// A missing access_log is disabled, so the update also undoes drift.
	u.AccessLog = &openapi.AccessLog{}
	if al := m.AccessLog; al != nil {
		u.AccessLog.Enabled = al.Enabled.ValueBool()
	}
	if p := fulcrum.StringPtr(m.DefaultPoolID); p != nil && *p != "" {
		u.DefaultPoolId = nullable.NewNullableWithValue(*p)
	}
	if rl := m.RateLimit; rl != nil {
		v := openapi.RateLimit{PerSecond: int(rl.PerSecond.ValueInt64())}
		if t := fulcrum.StringPtr(rl.Type); t != nil {
			typ := openapi.RateLimitType(*t)
			v.Type = &typ
		}
		u.RateLimit = nullable.NewNullableWithValue(v)
	}
	if t := m.ConnectionTimeouts; t != nil {
		u.Timeouts = &openapi.ListenerTimeouts{
			ClientMs: fulcrum.IntPtr(t.ClientMS), ConnectMs: fulcrum.IntPtr(t.ConnectMS), ServerMs: fulcrum.IntPtr(t.ServerMS),
			HttpRequestMs: fulcrum.IntPtr(t.HTTPRequestMS), HttpKeepAliveMs: fulcrum.IntPtr(t.HTTPKeepAliveMS), TunnelMs: fulcrum.IntPtr(t.TunnelMS),
		}
	}
	if h := m.InsertHeaders; h != nil {
		u.InsertHeaders = &openapi.InsertHeaders{
			XForwardedFor: fulcrum.BoolPtr(h.XForwardedFor), XForwardedProto: fulcrum.BoolPtr(h.XForwardedProto),
			XForwardedPort: fulcrum.BoolPtr(h.XForwardedPort), XRequestId: fulcrum.BoolPtr(h.XRequestID),
		}
	}
	if h := m.HSTS; h != nil {
		u.Hsts = nullable.NewNullableWithValue(openapi.HSTS{
			MaxAgeSeconds: fulcrum.IntPtr(h.MaxAgeSeconds), IncludeSubdomains: fulcrum.BoolPtr(h.IncludeSubdomains), Preload: fulcrum.BoolPtr(h.Preload),
		})
	}
	return u
}

// cidrList is the API's list, or prior when it names the same prefixes in
// the same order.
func cidrList(prior types.List, api []string) types.List {
	if !prior.IsNull() && !prior.IsUnknown() && len(prior.Elements()) == len(api) {
		same := true
		for i, e := range prior.Elements() {
			s, ok := e.(types.String)
			if !ok || s.IsUnknown() || !fulcrum.SameCIDR(s.ValueString(), api[i]) {
				same = false
				break
			}
		}
		if same {
			return prior
		}
	}
	return stringList(api)
}

func stringList(l []string) types.List {
	elems := make([]attr.Value, len(l))
	for i, s := range l {
		elems[i] = types.StringValue(s)
	}
	return types.ListValueMust(types.StringType, elems)
}

// listPtr sends a null list as empty, so removing the attribute clears it.
func listPtr(v types.List) *[]string {
	if v.IsUnknown() {
		return nil
	}
	out := []string{}
	for _, e := range v.Elements() {
		if s, ok := e.(types.String); ok && !s.IsNull() && !s.IsUnknown() {
			out = append(out, s.ValueString())
		}
	}
	return &out
}

func intValue(p *int) types.Int64 {
	if p == nil {
		return types.Int64Value(0)
	}
	return types.Int64Value(int64(*p))
}

func boolValue(p *bool) types.Bool { return types.BoolValue(p != nil && *p) }
