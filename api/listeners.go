package api

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"

	"github.com/oapi-codegen/nullable"

	"github.com/fulcrumlb/fulcrum/api/problem"
	"github.com/fulcrumlb/fulcrum/api/store"
	"github.com/fulcrumlb/fulcrum/api/validate"
	"github.com/fulcrumlb/fulcrum/openapi"
)

func listenerToAPI(l *store.Listener) openapi.Listener {
	out := openapi.Listener{Id: l.ID, TenantId: l.TenantID, LoadBalancerId: l.LoadBalancerID, Name: l.Name, Description: l.Description,
		Labels: labelsOrEmpty(l.Labels), Protocol: openapi.ListenerProtocol(l.Protocol), Port: l.Port,
		CertificateIds: nonNil(l.Spec.CertificateIDs), ConnectionLimit: l.Spec.ConnectionLimit,
		AllowedCidrs: nonNil(l.Spec.AllowedCIDRs), DeniedCidrs: nonNil(l.Spec.DeniedCIDRs),
		Timeouts: convertJSON[openapi.ListenerTimeouts](l.Spec.Timeouts), InsertHeaders: convertJSON[openapi.InsertHeaders](l.Spec.InsertHeaders),
		RedirectHttpToHttps: l.Spec.RedirectHTTPToHTTPS, Compression: l.Spec.Compression, AccessLog: openapi.AccessLog{Enabled: l.Spec.AccessLog.Enabled},
		ProvisioningStatus: openapi.ProvisioningStatus(l.ProvisioningStatus), OperatingStatus: openapi.OperatingStatus(l.OperatingStatus),
		StatusMessage: msgPtr(l.StatusMessage), CreatedAt: l.CreatedAt, UpdatedAt: l.UpdatedAt, Version: l.Version}
	out.DefaultPoolId = nullable.NewNullNullable[string]()
	if l.DefaultPoolID != nil {
		out.DefaultPoolId = nullable.NewNullableWithValue(*l.DefaultPoolID)
	}
	out.RateLimit = nullable.NewNullNullable[openapi.RateLimit]()
	if l.Spec.RateLimit != nil {
		out.RateLimit = nullable.NewNullableWithValue(convertJSON[openapi.RateLimit](l.Spec.RateLimit))
	}
	out.Hsts = nullable.NewNullNullable[openapi.HSTS]()
	if l.Spec.HSTS != nil {
		out.Hsts = nullable.NewNullableWithValue(convertJSON[openapi.HSTS](l.Spec.HSTS))
	}
	return out
}

func joinInts(v []int) string {
	s := make([]string, len(v))
	for i, n := range v {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, ", ")
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// listenerPatch is the union of the create and update bodies.
type listenerPatch struct {
	Name, Description   *string
	Labels              *openapi.Labels
	Protocol            *openapi.ListenerProtocol
	Port                *int
	DefaultPoolID       nullable.Nullable[string]
	CertificateIDs      *[]string
	ConnectionLimit     *int
	RateLimit           nullable.Nullable[openapi.RateLimit]
	AllowedCIDRs        *[]string
	DeniedCIDRs         *[]string
	Timeouts            *openapi.ListenerTimeouts
	InsertHeaders       *openapi.InsertHeaders
	RedirectHTTPToHTTPS *bool
	HSTS                nullable.Nullable[openapi.HSTS]
	Compression         *bool
	AccessLog           *openapi.AccessLog
}

func (p *listenerPatch) apply(l *store.Listener) {
	if p.Name != nil {
		l.Name = *p.Name
	}
	if p.Description != nil {
		l.Description = *p.Description
	}
	if p.Labels != nil {
		l.Labels = *p.Labels
	}
	if p.Protocol != nil {
		l.Protocol = string(*p.Protocol)
	}
	if p.Port != nil {
		l.Port = *p.Port
	}
	if p.DefaultPoolID.IsSpecified() {
		l.DefaultPoolID = nil
		if v, err := p.DefaultPoolID.Get(); err == nil && v != "" {
			l.DefaultPoolID = &v
		}
	}
	if p.CertificateIDs != nil {
		l.Spec.CertificateIDs = *p.CertificateIDs
	}
	if p.ConnectionLimit != nil {
		l.Spec.ConnectionLimit = *p.ConnectionLimit
	}
	if p.RateLimit.IsSpecified() {
		l.Spec.RateLimit = nil
		if v, err := p.RateLimit.Get(); err == nil {
			rl := convertJSON[store.RateLimit](v)
			if rl.Type == "" {
				rl.Type = "requests"
			}
			l.Spec.RateLimit = &rl
		}
	}
	if p.AllowedCIDRs != nil {
		l.Spec.AllowedCIDRs = *p.AllowedCIDRs
	}
	if p.DeniedCIDRs != nil {
		l.Spec.DeniedCIDRs = *p.DeniedCIDRs
	}
	if p.Timeouts != nil {
		l.Spec.Timeouts = convertJSON[store.Timeouts](p.Timeouts)
	}
	if p.InsertHeaders != nil {
		l.Spec.InsertHeaders = convertJSON[store.InsertHeaders](p.InsertHeaders)
	}
	if p.RedirectHTTPToHTTPS != nil {
		l.Spec.RedirectHTTPToHTTPS = *p.RedirectHTTPToHTTPS
	}
	if p.HSTS.IsSpecified() {
		l.Spec.HSTS = nil
		if v, err := p.HSTS.Get(); err == nil {
			hsts := store.HSTS{MaxAgeSeconds: openapi.HSTSMaxAgeSecondsDefault, IncludeSubdomains: deref(v.IncludeSubdomains), Preload: deref(v.Preload)}
			if v.MaxAgeSeconds != nil {
				hsts.MaxAgeSeconds = *v.MaxAgeSeconds
			}
			l.Spec.HSTS = &hsts
		}
	}
	if p.Compression != nil {
		l.Spec.Compression = *p.Compression
	}
	if p.AccessLog != nil {
		l.Spec.AccessLog = store.AccessLog{Enabled: p.AccessLog.Enabled}
	}
	// Omitted timeouts take the defaults.
	t, d := &l.Spec.Timeouts, store.DefaultTimeouts
	for _, f := range []struct {
		v *int
		d int
	}{{&t.ClientMS, d.ClientMS}, {&t.ConnectMS, d.ConnectMS}, {&t.ServerMS, d.ServerMS},
		{&t.HTTPRequestMS, d.HTTPRequestMS}, {&t.HTTPKeepAliveMS, d.HTTPKeepAliveMS}, {&t.TunnelMS, d.TunnelMS}} {
		if *f.v == 0 {
			*f.v = f.d
		}
	}
}

// validateListener checks the whole listener, including its references, which
// must be live objects of the same tenant and load balancer. A new port
// (newPort: created, or changed by an update) must not be reserved on the
// load balancer's node group; a listener left where it is is not refused for
// a port reserved after it was created.
func validateListener(ctx context.Context, tx *store.Tx, l *store.Listener, newPort bool) error {
	var e validate.Errors
	validateMeta(&e, &l.Meta)
	validate.Enum(&e, "protocol", l.Protocol, "tcp", "http", "https")
	if validate.Port(&e, "port", l.Port) && newPort {
		reserved, err := store.ReservedPortsOfLoadBalancer(ctx, tx, l.LoadBalancerID)
		if err != nil {
			return err
		}
		if slices.Contains(reserved, l.Port) {
			e.Add("port", "is reserved on the load balancer's node group (reserved: %s)", joinInts(reserved))
		}
	}
	validate.IntRange(&e, "connection_limit", l.Spec.ConnectionLimit, openapi.ListenerConnectionLimitMin, openapi.ListenerConnectionLimitMax)
	if ps, ok := validate.CIDRList(&e, "allowed_cidrs", l.Spec.AllowedCIDRs, openapi.ListenerAllowedCidrsMaxItems); ok {
		l.Spec.AllowedCIDRs = prefixStrings(ps)
	}
	if ps, ok := validate.CIDRList(&e, "denied_cidrs", l.Spec.DeniedCIDRs, openapi.ListenerDeniedCidrsMaxItems); ok {
		l.Spec.DeniedCIDRs = prefixStrings(ps)
	}
	t := l.Spec.Timeouts
	validate.DurationMS(&e, "timeouts.client_ms", t.ClientMS, openapi.ListenerTimeoutsClientMsMin, openapi.ListenerTimeoutsClientMsMax)
	validate.DurationMS(&e, "timeouts.connect_ms", t.ConnectMS, openapi.ListenerTimeoutsConnectMsMin, openapi.ListenerTimeoutsConnectMsMax)
	validate.DurationMS(&e, "timeouts.server_ms", t.ServerMS, openapi.ListenerTimeoutsServerMsMin, openapi.ListenerTimeoutsServerMsMax)
	validate.DurationMS(&e, "timeouts.http_request_ms", t.HTTPRequestMS, openapi.ListenerTimeoutsHttpRequestMsMin, openapi.ListenerTimeoutsHttpRequestMsMax)
	validate.DurationMS(&e, "timeouts.http_keep_alive_ms", t.HTTPKeepAliveMS, openapi.ListenerTimeoutsHttpKeepAliveMsMin, openapi.ListenerTimeoutsHttpKeepAliveMsMax)
	validate.DurationMS(&e, "timeouts.tunnel_ms", t.TunnelMS, openapi.ListenerTimeoutsTunnelMsMin, openapi.ListenerTimeoutsTunnelMsMax)
	if rl := l.Spec.RateLimit; rl != nil {
		validate.Enum(&e, "rate_limit.type", rl.Type, "requests", "connections")
		validate.IntRange(&e, "rate_limit.per_second", rl.PerSecond, openapi.RateLimitPerSecondMin, openapi.RateLimitPerSecondMax)
		if l.Protocol == "tcp" && rl.Type == "requests" {
			e.Add("rate_limit.type", "must be connections on a tcp listener")
		}
	}
	if h := l.Spec.HSTS; h != nil {
		validate.IntRange(&e, "hsts.max_age_seconds", h.MaxAgeSeconds, openapi.HSTSMaxAgeSecondsMin, openapi.HSTSMaxAgeSecondsMax)
		if l.Protocol != "https" {
			e.Add("hsts", "is only for https listeners")
		}
	}
	if l.Protocol == "tcp" {
		if l.Spec.InsertHeaders != (store.InsertHeaders{}) {
			e.Add("insert_headers", "is only for http and https listeners")
		}
		if l.Spec.Compression {
			e.Add("compression", "is only for http and https listeners")
		}
	}
	if l.Spec.RedirectHTTPToHTTPS && l.Protocol != "http" {
		e.Add("redirect_http_to_https", "is only for http listeners")
	}
	if l.Protocol == "https" && len(l.Spec.CertificateIDs) == 0 {
		e.Add("certificate_ids", "must name at least one certificate for an https listener")
	}
	if l.Protocol != "https" && len(l.Spec.CertificateIDs) > 0 {
		e.Add("certificate_ids", "is only for https listeners")
	}
	seen := map[string]bool{}
	for i, id := range l.Spec.CertificateIDs {
		f := validate.Index("certificate_ids", i)
		if seen[id] {
			e.Add(f, "is listed twice")
			continue
		}
		seen[id] = true
		if _, err := store.Get[store.Certificate](ctx, tx, store.KindCertificate, l.TenantID, id, false); err != nil {
			if !unusableRef(err) {
				return err
			}
			e.Add(f, "does not exist")
		}
	}
	if l.DefaultPoolID != nil {
		pool, err := store.GetLive[store.Pool](ctx, tx, store.KindPool, l.TenantID, *l.DefaultPoolID, false)
		switch {
		case err != nil && !unusableRef(err):
			return err
		case err != nil:
			e.Add("default_pool_id", "does not exist")
		case pool.LoadBalancerID != l.LoadBalancerID:
			e.Add("default_pool_id", "belongs to another load balancer")
		case !protocolsFit(l.Protocol, pool.Protocol):
			e.Add("default_pool_id", "is a %s pool, which a %s listener cannot use", pool.Protocol, l.Protocol)
		}
	}
	return e.Err()
}

// protocolsFit says whether a listener of one protocol can send to a pool of another.
func protocolsFit(listener, pool string) bool {
	if listener == "tcp" {
		return pool == "tcp"
	}
	return pool == "http"
}

func listenerColumns(l *store.Listener, rev int64) []store.Column {
	return append(metaColumns(&l.Meta, rev), store.Column{Name: "protocol", Value: l.Protocol}, store.Column{Name: "port", Value: l.Port},
		store.Column{Name: "default_pool_id", Value: l.DefaultPoolID}, store.Column{Name: "spec", Value: l.Spec})
}

// saveListenerCertificates keeps the reference rows in step with certificate_ids.
func saveListenerCertificates(ctx context.Context, tx *store.Tx, l *store.Listener) error {
	return store.ListenerSetCertificates(ctx, tx, l.TenantID, l.ID, l.Spec.CertificateIDs)
}

func (h *handlers) ListListeners(ctx context.Context, r openapi.ListListenersRequestObject) (openapi.ListListenersResponseObject, error) {
	tenant, err := tenantOf(ctx)
	if err != nil {
		return nil, err
	}
	lq := listQuery(r.Params.Limit, r.Params.PageToken, r.Params.Name, r.Params.Label, store.Column{Name: "load_balancer_id", Value: r.Params.LoadBalancerId})
	items, next, err := list[store.Listener](ctx, h, store.KindListener, tenant, lq)
	if err != nil {
		return nil, err
	}
	return openapi.ListListeners200JSONResponse{Body: openapi.ListenerList{Items: mapSlice(items, listenerToAPI), NextPageToken: next}}, nil
}

func (h *handlers) CreateListener(ctx context.Context, r openapi.CreateListenerRequestObject) (openapi.CreateListenerResponseObject, error) {
	tenant, err := tenantOf(ctx)
	if err != nil {
		return nil, err
	}
	b := r.Body
	p := listenerPatch{Name: b.Name, Description: b.Description, Labels: b.Labels, Protocol: &b.Protocol, Port: &b.Port,
		DefaultPoolID: b.DefaultPoolId, CertificateIDs: b.CertificateIds, ConnectionLimit: b.ConnectionLimit, RateLimit: b.RateLimit,
		AllowedCIDRs: b.AllowedCidrs, DeniedCIDRs: b.DeniedCidrs, Timeouts: b.Timeouts, InsertHeaders: b.InsertHeaders,
		RedirectHTTPToHTTPS: b.RedirectHttpToHttps, HSTS: b.Hsts, Compression: b.Compression, AccessLog: b.AccessLog}
	out, _, err := createIn(ctx, h, store.ScopeOf(store.KindLoadBalancer, tenant, b.LoadBalancerId), "POST /v1/listeners", r.Params.IdempotencyKey, r.Params.DryRun, b, func(tx *store.Tx) (openapi.Listener, error) {
		if _, err := store.GetLiveParent(ctx, tx, store.KindLoadBalancer, tenant, b.LoadBalancerId, true); err != nil {
			return openapi.Listener{}, parentError(err, "load_balancer_id")
		}
		if err := store.CheckQuota(ctx, tx, store.KindListener, tenant); err != nil {
			return openapi.Listener{}, err
		}
		l := &store.Listener{Meta: store.Meta{TenantID: tenant}, LoadBalancerID: b.LoadBalancerId}
		p.apply(l)
		if err := validateListener(ctx, tx, l, true); err != nil {
			return openapi.Listener{}, err
		}
		rev, err := tx.Revision(ctx)
		if err != nil {
			return openapi.Listener{}, err
		}
		cols := append(newColumns(store.KindListener, tenant), listenerColumns(l, rev)...)
		row, err := store.Insert[store.Listener](ctx, tx, store.KindListener, append(cols, store.Column{Name: "load_balancer_id", Value: l.LoadBalancerID}))
		if err != nil {
			return openapi.Listener{}, err
		}
		if err := saveListenerCertificates(ctx, tx, row); err != nil {
			return openapi.Listener{}, err
		}
		return listenerToAPI(row), nil
	})
	if err != nil {
		return nil, err
	}
	if isTrue(r.Params.DryRun) {
		return openapi.CreateListener200JSONResponse{Body: out}, nil
	}
	return openapi.CreateListener201JSONResponse{Body: out, Headers: openapi.CreateListener201ResponseHeaders{ETag: etag(out.Version)}}, nil
}

// parentError turns a missing parent into a 404 naming the field, and keeps
// other errors (a parent being deleted is 409).
func parentError(err error, field string) error {
	if errors.Is(err, store.ErrNotFound) {
		p := storeProblem(err)
		p.Errors = []validate.FieldError{{Field: field, Message: "does not exist"}}
		return p
	}
	return err
}

func (h *handlers) GetListener(ctx context.Context, r openapi.GetListenerRequestObject) (openapi.GetListenerResponseObject, error) {
	tenant, err := tenantOf(ctx)
	if err != nil {
		return nil, err
	}
	l, err := get[store.Listener](ctx, h, store.KindListener, tenant, r.Id)
	if err != nil {
		return nil, err
	}
	return openapi.GetListener200JSONResponse{Body: listenerToAPI(&l), Headers: openapi.GetListener200ResponseHeaders{ETag: etag(l.Version)}}, nil
}

func (h *handlers) UpdateListener(ctx context.Context, r openapi.UpdateListenerRequestObject) (openapi.UpdateListenerResponseObject, error) {
	tenant, err := tenantOf(ctx)
	if err != nil {
		return nil, err
	}
	b := r.Body
	p := listenerPatch{Name: b.Name, Description: b.Description, Labels: b.Labels, Protocol: b.Protocol, Port: b.Port,
		DefaultPoolID: b.DefaultPoolId, CertificateIDs: b.CertificateIds, ConnectionLimit: b.ConnectionLimit, RateLimit: b.RateLimit,
		AllowedCIDRs: b.AllowedCidrs, DeniedCIDRs: b.DeniedCidrs, Timeouts: b.Timeouts, InsertHeaders: b.InsertHeaders,
		RedirectHTTPToHTTPS: b.RedirectHttpToHttps, HSTS: b.Hsts, Compression: b.Compression, AccessLog: b.AccessLog}
	out, err := update(ctx, h, store.KindListener, tenant, r.Id, r.Params.IfMatch, r.Params.DryRun, func(tx *store.Tx, l *store.Listener) (openapi.Listener, error) {
		oldPort := l.Port
		p.apply(l)
		if err := validateListener(ctx, tx, l, l.Port != oldPort); err != nil {
			return openapi.Listener{}, err
		}
		if l.Protocol == "tcp" {
			n, err := store.RoutingRuleCountByListener(ctx, tx, tenant, l.ID)
			if err != nil {
				return openapi.Listener{}, err
			}
			if n > 0 {
				return openapi.Listener{}, problem.InvalidField("protocol", "cannot be tcp while the listener has routing rules")
			}
		}
		rev, err := tx.Revision(ctx)
		if err != nil {
			return openapi.Listener{}, err
		}
		row, err := store.Update[store.Listener](ctx, tx, store.KindListener, tenant, l.ID, append(listenerColumns(l, rev), pendingUpdate(&l.Status)))
		if err != nil {
			return openapi.Listener{}, err
		}
		if err := saveListenerCertificates(ctx, tx, row); err != nil {
			return openapi.Listener{}, err
		}
		return listenerToAPI(row), nil
	})
	if err != nil {
		return nil, err
	}
	return openapi.UpdateListener200JSONResponse{Body: out, Headers: openapi.UpdateListener200ResponseHeaders{ETag: etag(out.Version)}}, nil
}

func (h *handlers) DeleteListener(ctx context.Context, r openapi.DeleteListenerRequestObject) (openapi.DeleteListenerResponseObject, error) {
	tenant, err := tenantOf(ctx)
	if err != nil {
		return nil, err
	}
	if err := remove[store.Listener](ctx, h, store.KindListener, tenant, r.Id, r.Params.IfMatch, isTrue(r.Params.Cascade), nil); err != nil {
		return nil, err
	}
	return openapi.DeleteListener202Response{}, nil
}
