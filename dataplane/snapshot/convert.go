package snapshot

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sort"

	"github.com/fulcrumlb/fulcrum/dataplane/haproxy"
	"github.com/fulcrumlb/fulcrum/internal/atomicfile"
	"github.com/fulcrumlb/fulcrum/openapi"
)

// Backend timeouts when no listener sets them (the API's listener defaults).
const (
	defaultConnectMS = openapi.ListenerTimeoutsConnectMsDefault
	defaultServerMS  = openapi.ListenerTimeoutsServerMsDefault
	defaultTunnelMS  = openapi.ListenerTimeoutsTunnelMsDefault
)

// ToConfig turns a snapshot into the HAProxy model. certFile names the file a
// certificate's PEM bundle is written to (see WriteCertificates).
func ToConfig(s *openapi.Snapshot, g haproxy.Global, certFile func(id string) string) (haproxy.Config, error) {
	cfg := haproxy.Config{Global: g}
	for _, sl := range s.LoadBalancers {
		lb, err := ToLoadBalancer(&sl, certFile)
		if err != nil {
			return cfg, fmt.Errorf("load balancer %s: %w", sl.LoadBalancer.Id, err)
		}
		cfg.LoadBalancers = append(cfg.LoadBalancers, lb)
	}
	sort.Slice(cfg.LoadBalancers, func(i, j int) bool { return cfg.LoadBalancers[i].ID < cfg.LoadBalancers[j].ID })
	return cfg, nil
}

func prefixes(ss []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(ss))
	for _, s := range ss {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

// ToLoadBalancer turns one load balancer of a snapshot into the HAProxy
// model; an error names the object (by id) and field it cannot convert.
func ToLoadBalancer(sl *openapi.SnapshotLoadBalancer, certFile func(string) string) (haproxy.LoadBalancer, error) {
	vip, err := netip.ParseAddr(sl.LoadBalancer.VipAddress)
	if err != nil {
		return haproxy.LoadBalancer{}, fmt.Errorf("vip_address: %w", err)
	}
	lb := haproxy.LoadBalancer{ID: sl.LoadBalancer.Id, TenantID: sl.LoadBalancer.TenantId, VIP: vip, Enabled: sl.LoadBalancer.Enabled}
	poolTimeouts := map[string]haproxy.Timeouts{}
	listeners := append([]openapi.Listener(nil), sl.Listeners...)
	sort.Slice(listeners, func(i, j int) bool { return listeners[i].Port < listeners[j].Port })
	for _, l := range listeners {
		hl := haproxy.Listener{ID: l.Id, Protocol: string(l.Protocol), Port: l.Port, ConnectionLimit: l.ConnectionLimit,
			RedirectHTTPToHTTPS: l.RedirectHttpToHttps, Compression: l.Compression, AccessLog: l.AccessLog.Enabled}
		if v, err := l.DefaultPoolId.Get(); err == nil {
			hl.DefaultPoolID = v
		}
		if hl.AllowedCIDRs, err = prefixes(l.AllowedCidrs); err != nil {
			return lb, fmt.Errorf("listener %s: %w", l.Id, err)
		}
		if hl.DeniedCIDRs, err = prefixes(l.DeniedCidrs); err != nil {
			return lb, fmt.Errorf("listener %s: %w", l.Id, err)
		}
		t := l.Timeouts
		hl.Timeouts = haproxy.Timeouts{ClientMS: deref(t.ClientMs), ConnectMS: deref(t.ConnectMs), ServerMS: deref(t.ServerMs),
			HTTPRequestMS: deref(t.HttpRequestMs), HTTPKeepAliveMS: deref(t.HttpKeepAliveMs), TunnelMS: deref(t.TunnelMs)}
		ih := l.InsertHeaders
		hl.InsertHeaders = haproxy.InsertHeaders{XForwardedFor: deref(ih.XForwardedFor), XForwardedProto: deref(ih.XForwardedProto),
			XForwardedPort: deref(ih.XForwardedPort), XRequestID: deref(ih.XRequestId)}
		if rl, err := l.RateLimit.Get(); err == nil {
			typ := "requests"
			if rl.Type != nil {
				typ = string(*rl.Type)
			}
			hl.RateLimit = &haproxy.RateLimit{Type: typ, PerSecond: rl.PerSecond}
		}
		if h, err := l.Hsts.Get(); err == nil {
			hl.HSTS = &haproxy.HSTS{MaxAgeSeconds: deref(h.MaxAgeSeconds), IncludeSubdomains: deref(h.IncludeSubdomains), Preload: deref(h.Preload)}
		}
		for _, id := range l.CertificateIds {
			hl.CertFiles = append(hl.CertFiles, certFile(id))
		}
		for _, r := range sl.RoutingRules {
			if r.ListenerId == l.Id {
				hl.Rules = append(hl.Rules, toRule(r))
			}
		}
		sort.Slice(hl.Rules, func(i, j int) bool { return hl.Rules[i].Priority < hl.Rules[j].Priority })
		// A pool takes its backend timeouts from the first listener using it.
		users := []string{hl.DefaultPoolID}
		for _, r := range hl.Rules {
			for _, p := range r.Action.Pools {
				users = append(users, p.PoolID)
			}
		}
		for _, id := range users {
			if _, seen := poolTimeouts[id]; id != "" && !seen {
				poolTimeouts[id] = hl.Timeouts
			}
		}
		lb.Listeners = append(lb.Listeners, hl)
	}
	for _, p := range sl.Pools {
		hp := haproxy.Pool{ID: p.Id, Protocol: string(p.Protocol), Algorithm: string(p.Algorithm), HashKey: p.HashKey,
			Retries: p.Retries, Redispatch: p.Redispatch, ProxyProtocol: string(p.ProxyProtocol), DrainTimeoutMS: p.DrainTimeoutMs,
			TLSToMembers: p.TlsToMembers, ConnectTimeoutMS: defaultConnectMS, ServerTimeoutMS: defaultServerMS, TunnelTimeoutMS: defaultTunnelMS}
		if t, ok := poolTimeouts[p.Id]; ok {
			hp.ConnectTimeoutMS, hp.ServerTimeoutMS, hp.TunnelTimeoutMS = t.ConnectMS, t.ServerMS, t.TunnelMS
		}
		if hp.Protocol == "tcp" {
			// In TCP mode HAProxy's tunnel timeout would replace the client and
			// server timeouts once connected; tcp listeners are bounded by those.
			hp.TunnelTimeoutMS = 0
		}
		sp := p.SessionPersistence
		hp.Persistence = haproxy.Persistence{Type: string(sp.Type), CookieName: deref(sp.CookieName), CookieTTLSeconds: deref(sp.CookieTtlSeconds)}
		if hm, err := p.HealthMonitor.Get(); err == nil {
			hp.Monitor = &haproxy.Monitor{Type: string(hm.Type), IntervalMS: deref(hm.IntervalMs), TimeoutMS: deref(hm.TimeoutMs),
				Rise: deref(hm.Rise), Fall: deref(hm.Fall), Method: deref(hm.HttpMethod), Path: deref(hm.Path), Host: deref(hm.Host),
				Expect: deref(hm.ExpectedCodes)}
		}
		for _, m := range sl.Members {
			if m.PoolId == p.Id {
				hp.Members = append(hp.Members, haproxy.Member{ID: m.Id, Address: m.Address, Port: m.Port, Weight: m.Weight,
					Backup: m.Backup, Enabled: m.Enabled, MaxConnections: m.MaxConnections})
			}
		}
		sort.Slice(hp.Members, func(i, j int) bool { return hp.Members[i].ID < hp.Members[j].ID })
		lb.Pools = append(lb.Pools, hp)
	}
	sort.Slice(lb.Pools, func(i, j int) bool { return lb.Pools[i].ID < lb.Pools[j].ID })
	return lb, nil
}

func toRule(r openapi.RoutingRule) haproxy.Rule {
	hr := haproxy.Rule{ID: r.Id, Priority: r.Priority}
	for _, c := range r.Conditions {
		match := "exact"
		if c.Match != nil {
			match = string(*c.Match)
		}
		hr.Conditions = append(hr.Conditions, haproxy.Condition{Field: string(c.Field), Match: match, Key: deref(c.Key),
			Values: c.Values, Invert: deref(c.Invert)})
	}
	a := r.Action
	hr.Action.Type = string(a.Type)
	if a.Forward != nil {
		for _, p := range a.Forward.Pools {
			w := 1
			if p.Weight != nil {
				w = *p.Weight
			}
			hr.Action.Pools = append(hr.Action.Pools, haproxy.WeightedPool{PoolID: p.PoolId, Weight: w})
		}
	}
	if rd := a.Redirect; rd != nil {
		hr.Action.RedirectURL, hr.Action.RedirectPrefix, hr.Action.RedirectHost = deref(rd.Url), deref(rd.Prefix), deref(rd.Host)
		hr.Action.RedirectPort = deref(rd.Port)
		if rd.Scheme != nil {
			hr.Action.RedirectScheme = string(*rd.Scheme)
		}
		hr.Action.RedirectCode = 302
		if rd.Code != nil {
			hr.Action.RedirectCode = int(*rd.Code)
		}
	}
	if fr := a.FixedResponse; fr != nil {
		hr.Action.StatusCode, hr.Action.ContentType, hr.Action.Body = fr.StatusCode, deref(fr.ContentType), deref(fr.Body)
	}
	return hr
}

// WriteCertificates writes each certificate's chain and key as one PEM bundle
// (mode 0600) under dir, atomically, and returns the file namer ToConfig uses.
func WriteCertificates(dir string, certs []openapi.SnapshotCertificate) (func(string) string, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	name := func(id string) string { return filepath.Join(dir, id+".pem") }
	for _, c := range certs {
		bundle := c.Certificate
		if len(bundle) > 0 && bundle[len(bundle)-1] != '\n' {
			bundle += "\n"
		}
		bundle += c.PrivateKey
		if err := atomicfile.Write(name(c.Id), []byte(bundle), 0o600); err != nil {
			return nil, err
		}
	}
	return name, nil
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}
