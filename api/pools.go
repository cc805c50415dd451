package api

import (
	"context"

	"github.com/oapi-codegen/nullable"

	"github.com/fulcrumlb/fulcrum/api/problem"
	"github.com/fulcrumlb/fulcrum/api/store"
	"github.com/fulcrumlb/fulcrum/api/validate"
	"github.com/fulcrumlb/fulcrum/openapi"
)

// DefaultCookieName is the cookie cookie_insert persistence uses unless named.
const DefaultCookieName = "FULCRUMSRV"

func poolToAPI(p *store.Pool) openapi.Pool {
	out := openapi.Pool{Id: p.ID, TenantId: p.TenantID, LoadBalancerId: p.LoadBalancerID, Name: p.Name, Description: p.Description,
		Labels: labelsOrEmpty(p.Labels), Protocol: openapi.PoolProtocol(p.Protocol), Algorithm: openapi.PoolAlgorithm(p.Spec.Algorithm),
		HashKey: p.Spec.HashKey, SessionPersistence: convertJSON[openapi.SessionPersistence](p.Spec.SessionPersistence),
		Retries: p.Spec.Retries, Redispatch: p.Spec.Redispatch, ProxyProtocol: openapi.PoolProxyProtocol(p.Spec.ProxyProtocol),
		DrainTimeoutMs: p.Spec.DrainTimeoutMS, TlsToMembers: p.Spec.TLSToMembers,
		ProvisioningStatus: openapi.ProvisioningStatus(p.ProvisioningStatus), OperatingStatus: openapi.OperatingStatus(p.OperatingStatus),
		StatusMessage: msgPtr(p.StatusMessage), CreatedAt: p.CreatedAt, UpdatedAt: p.UpdatedAt, Version: p.Version}
	out.HealthMonitor = nullable.NewNullNullable[openapi.HealthMonitor]()
	if p.Spec.HealthMonitor != nil {
		out.HealthMonitor = nullable.NewNullableWithValue(convertJSON[openapi.HealthMonitor](p.Spec.HealthMonitor))
	}
	return out
}

type poolPatch struct {
	Name, Description  *string
	Labels             *openapi.Labels
	Protocol           *openapi.PoolProtocol
	Algorithm          *openapi.PoolAlgorithm
	HashKey            *string
	SessionPersistence *openapi.SessionPersistence
	HealthMonitor      nullable.Nullable[openapi.HealthMonitor]
	Retries            *int
	Redispatch         *bool
	ProxyProtocol      *string
	DrainTimeoutMS     *int
	TLSToMembers       *bool
}

func (q *poolPatch) apply(p *store.Pool) {
	if q.Name != nil {
		p.Name = *q.Name
	}
	if q.Description != nil {
		p.Description = *q.Description
	}
	if q.Labels != nil {
		p.Labels = *q.Labels
	}
	if q.Protocol != nil {
		p.Protocol = string(*q.Protocol)
	}
	if q.Algorithm != nil {
		p.Spec.Algorithm = string(*q.Algorithm)
	}
	if q.HashKey != nil {
		p.Spec.HashKey = *q.HashKey
	}
	if q.SessionPersistence != nil {
		p.Spec.SessionPersistence = convertJSON[store.SessionPersistence](q.SessionPersistence)
	}
	if q.HealthMonitor.IsSpecified() {
		p.Spec.HealthMonitor = nil
		if v, err := q.HealthMonitor.Get(); err == nil {
			hm := convertJSON[store.HealthMonitor](v)
			p.Spec.HealthMonitor = &hm
		}
	}
	if q.Retries != nil {
		p.Spec.Retries = *q.Retries
	}
	if q.Redispatch != nil {
		p.Spec.Redispatch = *q.Redispatch
	}
	if q.ProxyProtocol != nil {
		p.Spec.ProxyProtocol = *q.ProxyProtocol
	}
	if q.DrainTimeoutMS != nil {
		p.Spec.DrainTimeoutMS = *q.DrainTimeoutMS
	}
	if q.TLSToMembers != nil {
		p.Spec.TLSToMembers = *q.TLSToMembers
	}
	// Defaults for what is still unset.
	if p.Spec.Algorithm == "" {
		p.Spec.Algorithm = "round_robin"
	}
	if p.Spec.SessionPersistence.Type == "" {
		p.Spec.SessionPersistence.Type = "none"
	}
	if sp := &p.Spec.SessionPersistence; sp.Type == "cookie_insert" && sp.CookieName == "" {
		sp.CookieName = DefaultCookieName
	}
	if p.Spec.ProxyProtocol == "" {
		p.Spec.ProxyProtocol = openapi.PoolProxyProtocolDefault
	}
	if hm := p.Spec.HealthMonitor; hm != nil {
		setDefault(&hm.IntervalMS, openapi.HealthMonitorIntervalMsDefault)
		setDefault(&hm.TimeoutMS, min(openapi.HealthMonitorTimeoutMsDefault, hm.IntervalMS))
		setDefault(&hm.Rise, openapi.HealthMonitorRiseDefault)
		setDefault(&hm.Fall, openapi.HealthMonitorFallDefault)
		if hm.Type == "http" || hm.Type == "https" {
			if hm.HTTPMethod == "" {
				hm.HTTPMethod = openapi.HealthMonitorHttpMethodDefault
			}
			if hm.Path == "" {
				hm.Path = openapi.HealthMonitorPathDefault
			}
			if hm.ExpectedCodes == "" {
				hm.ExpectedCodes = openapi.HealthMonitorExpectedCodesDefault
			}
		}
	}
}

func setDefault(v *int, d int) {
	if *v == 0 {
		*v = d
	}
}

func validatePool(p *store.Pool) error {
	var e validate.Errors
	validateMeta(&e, &p.Meta)
	validate.Enum(&e, "protocol", p.Protocol, "tcp", "http")
	s := p.Spec
	validate.Enum(&e, "algorithm", s.Algorithm, "round_robin", "static_round_robin", "least_connections", "source_ip", "uri", "url_param", "header", "random", "first")
	switch s.Algorithm {
	case "url_param":
		if s.HashKey == "" {
			e.Add("hash_key", "is required for the url_param algorithm (the URL parameter to hash)")
		} else {
			validate.HeaderName(&e, "hash_key", s.HashKey)
		}
	case "header":
		if s.HashKey == "" {
			e.Add("hash_key", "is required for the header algorithm (the header to hash)")
		} else {
			validate.HeaderName(&e, "hash_key", s.HashKey)
		}
	default:
		if s.HashKey != "" {
			e.Add("hash_key", "is only for the url_param and header algorithms")
		}
	}
	if p.Protocol == "tcp" && (s.Algorithm == "uri" || s.Algorithm == "url_param" || s.Algorithm == "header") {
		e.Add("algorithm", "%s needs an http pool", s.Algorithm)
	}
	sp := s.SessionPersistence
	validate.Enum(&e, "session_persistence.type", sp.Type, "none", "source_ip", "cookie_insert", "cookie_rewrite", "cookie_prefix", "app_cookie")
	switch sp.Type {
	case "cookie_insert", "cookie_rewrite", "cookie_prefix", "app_cookie":
		if p.Protocol != "http" {
			e.Add("session_persistence.type", "%s needs an http pool", sp.Type)
		}
		if sp.CookieName == "" {
			e.Add("session_persistence.cookie_name", "is required for %s", sp.Type)
		} else {
			validate.CookieName(&e, "session_persistence.cookie_name", sp.CookieName)
		}
	default:
		if sp.CookieName != "" {
			e.Add("session_persistence.cookie_name", "is only for the cookie persistence types")
		}
	}
	validate.IntRange(&e, "session_persistence.cookie_ttl_seconds", sp.CookieTTLSeconds, openapi.SessionPersistenceCookieTtlSecondsMin, openapi.SessionPersistenceCookieTtlSecondsMax)
	if hm := s.HealthMonitor; hm != nil {
		validate.Enum(&e, "health_monitor.type", hm.Type, "tcp", "http", "https")
		validate.DurationMS(&e, "health_monitor.interval_ms", hm.IntervalMS, openapi.HealthMonitorIntervalMsMin, openapi.HealthMonitorIntervalMsMax)
		validate.DurationMS(&e, "health_monitor.timeout_ms", hm.TimeoutMS, openapi.HealthMonitorTimeoutMsMin, openapi.HealthMonitorTimeoutMsMax)
		if hm.TimeoutMS > hm.IntervalMS {
			e.Add("health_monitor.timeout_ms", "must not exceed interval_ms (%d)", hm.IntervalMS)
		}
		validate.IntRange(&e, "health_monitor.rise", hm.Rise, openapi.HealthMonitorRiseMin, openapi.HealthMonitorRiseMax)
		validate.IntRange(&e, "health_monitor.fall", hm.Fall, openapi.HealthMonitorFallMin, openapi.HealthMonitorFallMax)
		if hm.Type == "tcp" {
			for f, v := range map[string]string{"http_method": hm.HTTPMethod, "path": hm.Path, "host": hm.Host, "expected_codes": hm.ExpectedCodes} {
				if v != "" {
					e.Add("health_monitor."+f, "is only for http and https monitors")
				}
			}
		} else {
			validate.HTTPMethod(&e, "health_monitor.http_method", hm.HTTPMethod)
			validate.URLPathQuery(&e, "health_monitor.path", hm.Path)
			if hm.Host != "" {
				validate.HostOrIP(&e, "health_monitor.host", hm.Host)
			}
			validate.StatusCodes(&e, "health_monitor.expected_codes", hm.ExpectedCodes)
		}
	}
	validate.IntRange(&e, "retries", s.Retries, openapi.PoolRetriesMin, openapi.PoolRetriesMax)
	validate.Enum(&e, "proxy_protocol", s.ProxyProtocol, "none", "v1", "v2")
	validate.DurationMS(&e, "drain_timeout_ms", s.DrainTimeoutMS, openapi.PoolDrainTimeoutMsMin, openapi.PoolDrainTimeoutMsMax)
	return e.Err()
}

func poolColumns(p *store.Pool, rev int64) []store.Column {
	return append(metaColumns(&p.Meta, rev), store.Column{Name: "protocol", Value: p.Protocol}, store.Column{Name: "spec", Value: p.Spec})
}

func (h *handlers) ListPools(ctx context.Context, r openapi.ListPoolsRequestObject) (openapi.ListPoolsResponseObject, error) {
	tenant, err := tenantOf(ctx)
	if err != nil {
		return nil, err
	}
	lq := listQuery(r.Params.Limit, r.Params.PageToken, r.Params.Name, r.Params.Label, store.Column{Name: "load_balancer_id", Value: r.Params.LoadBalancerId})
	items, next, err := list[store.Pool](ctx, h, store.KindPool, tenant, lq)
	if err != nil {
		return nil, err
	}
	return openapi.ListPools200JSONResponse{Body: openapi.PoolList{Items: mapSlice(items, poolToAPI), NextPageToken: next}}, nil
}

func (h *handlers) CreatePool(ctx context.Context, r openapi.CreatePoolRequestObject) (openapi.CreatePoolResponseObject, error) {
	tenant, err := tenantOf(ctx)
	if err != nil {
		return nil, err
	}
	b := r.Body
	q := poolPatch{Name: b.Name, Description: b.Description, Labels: b.Labels, Protocol: &b.Protocol, Algorithm: b.Algorithm, HashKey: b.HashKey,
		SessionPersistence: b.SessionPersistence, HealthMonitor: b.HealthMonitor, Retries: b.Retries, Redispatch: b.Redispatch,
		ProxyProtocol: (*string)(b.ProxyProtocol), DrainTimeoutMS: b.DrainTimeoutMs, TLSToMembers: b.TlsToMembers}
	p := &store.Pool{Meta: store.Meta{TenantID: tenant}, LoadBalancerID: b.LoadBalancerId,
		Spec: store.PoolSpec{Retries: openapi.PoolRetriesDefault, Redispatch: openapi.PoolRedispatchDefault, DrainTimeoutMS: openapi.PoolDrainTimeoutMsDefault}}
	q.apply(p)
	if err := validatePool(p); err != nil {
		return nil, err
	}
	out, _, err := createIn(ctx, h, store.ScopeOf(store.KindLoadBalancer, tenant, b.LoadBalancerId), "POST /v1/pools", r.Params.IdempotencyKey, r.Params.DryRun, b, func(tx *store.Tx) (openapi.Pool, error) {
		if _, err := store.GetLiveParent(ctx, tx, store.KindLoadBalancer, tenant, b.LoadBalancerId, true); err != nil {
			return openapi.Pool{}, parentError(err, "load_balancer_id")
		}
		if err := store.CheckQuota(ctx, tx, store.KindPool, tenant); err != nil {
			return openapi.Pool{}, err
		}
		rev, err := tx.Revision(ctx)
		if err != nil {
			return openapi.Pool{}, err
		}
		cols := append(newColumns(store.KindPool, tenant), poolColumns(p, rev)...)
		row, err := store.Insert[store.Pool](ctx, tx, store.KindPool, append(cols, store.Column{Name: "load_balancer_id", Value: p.LoadBalancerID}))
		if err != nil {
			return openapi.Pool{}, err
		}
		return poolToAPI(row), nil
	})
	if err != nil {
		return nil, err
	}
	if isTrue(r.Params.DryRun) {
		return openapi.CreatePool200JSONResponse{Body: out}, nil
	}
	return openapi.CreatePool201JSONResponse{Body: out, Headers: openapi.CreatePool201ResponseHeaders{ETag: etag(out.Version)}}, nil
}

func (h *handlers) GetPool(ctx context.Context, r openapi.GetPoolRequestObject) (openapi.GetPoolResponseObject, error) {
	tenant, err := tenantOf(ctx)
	if err != nil {
		return nil, err
	}
	p, err := get[store.Pool](ctx, h, store.KindPool, tenant, r.Id)
	if err != nil {
		return nil, err
	}
	return openapi.GetPool200JSONResponse{Body: poolToAPI(&p), Headers: openapi.GetPool200ResponseHeaders{ETag: etag(p.Version)}}, nil
}

func (h *handlers) UpdatePool(ctx context.Context, r openapi.UpdatePoolRequestObject) (openapi.UpdatePoolResponseObject, error) {
	tenant, err := tenantOf(ctx)
	if err != nil {
		return nil, err
	}
	b := r.Body
	q := poolPatch{Name: b.Name, Description: b.Description, Labels: b.Labels, Protocol: b.Protocol, Algorithm: b.Algorithm, HashKey: b.HashKey,
		SessionPersistence: b.SessionPersistence, HealthMonitor: b.HealthMonitor, Retries: b.Retries, Redispatch: b.Redispatch,
		ProxyProtocol: (*string)(b.ProxyProtocol), DrainTimeoutMS: b.DrainTimeoutMs, TLSToMembers: b.TlsToMembers}
	out, err := update(ctx, h, store.KindPool, tenant, r.Id, r.Params.IfMatch, r.Params.DryRun, func(tx *store.Tx, p *store.Pool) (openapi.Pool, error) {
		q.apply(p)
		if err := validatePool(p); err != nil {
			return openapi.Pool{}, err
		}
		// Listeners and rules sending here must still fit the protocol.
		users, err := store.PoolListUsers(ctx, tx, tenant, p.ID)
		if err != nil {
			return openapi.Pool{}, err
		}
		for _, u := range users {
			if !protocolsFit(u.Protocol, p.Protocol) {
				return openapi.Pool{}, problem.InvalidField("protocol", "cannot be %s: %s sends %s traffic here", p.Protocol, u.ID, u.Protocol)
			}
		}
		rev, err := tx.Revision(ctx)
		if err != nil {
			return openapi.Pool{}, err
		}
		row, err := store.Update[store.Pool](ctx, tx, store.KindPool, tenant, p.ID, append(poolColumns(p, rev), pendingUpdate(&p.Status)))
		if err != nil {
			return openapi.Pool{}, err
		}
		return poolToAPI(row), nil
	})
	if err != nil {
		return nil, err
	}
	return openapi.UpdatePool200JSONResponse{Body: out, Headers: openapi.UpdatePool200ResponseHeaders{ETag: etag(out.Version)}}, nil
}

func (h *handlers) DeletePool(ctx context.Context, r openapi.DeletePoolRequestObject) (openapi.DeletePoolResponseObject, error) {
	tenant, err := tenantOf(ctx)
	if err != nil {
		return nil, err
	}
	if err := remove[store.Pool](ctx, h, store.KindPool, tenant, r.Id, r.Params.IfMatch, isTrue(r.Params.Cascade), nil); err != nil {
		return nil, err
	}
	return openapi.DeletePool202Response{}, nil
}
