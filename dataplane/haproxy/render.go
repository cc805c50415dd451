package haproxy

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// Limits and defaults of the renderer.
const (
	// DefaultMaxConn is the process-wide maxconn when Global.MaxConn is 0.
	DefaultMaxConn = 4000
	// MaxFixedResponseBody is the largest fixed response body, in bytes.
	// HAProxy builds the whole response in one buffer (tune.bufsize 16384
	// minus tune.maxrewrite 1024, less the status line and headers); a
	// larger "string" payload is rejected or silently dropped.
	MaxFixedResponseBody = 15000
	// aclValuesPerLine bounds the patterns on one "acl" line: HAProxy
	// refuses lines of more than 64 words.
	aclValuesPerLine = 16
)

// Render returns the haproxy.cfg text for c. It never fails on a model the API
// accepted; it returns an error for values it cannot render safely.
func Render(c Config) ([]byte, error) {
	r, err := render(c.Global, c.LoadBalancers, true, false)
	return r.Text, err
}

// RenderLoadBalancer renders a config holding only global/defaults and one LB's
// sections (used to find which LB makes a candidate invalid). The Prometheus
// exporter frontend is left out: it belongs to no load balancer.
func RenderLoadBalancer(g Global, lb LoadBalancer) ([]byte, error) {
	r, err := render(g, []LoadBalancer{lb}, false, false)
	return r.Text, err
}

// RenderWithOrigins is Render that also tells where each line comes from.
func RenderWithOrigins(c Config) (Rendered, error) {
	return render(c.Global, c.LoadBalancers, true, true)
}

// RenderLoadBalancerWithOrigins is RenderLoadBalancer that also tells where
// each line comes from.
func RenderLoadBalancerWithOrigins(g Global, lb LoadBalancer) (Rendered, error) {
	return render(g, []LoadBalancer{lb}, false, true)
}

func render(g Global, lbs []LoadBalancer, withPrometheus, withOrigins bool) (Rendered, error) {
	v, err := buildView(g, lbs, withPrometheus)
	if err != nil {
		return Rendered{}, err
	}
	w := &cfgWriter{track: withOrigins}
	v.write(w)
	return Rendered{Text: w.b.Bytes(), Origins: w.origins}, nil
}

// The view is the model resolved into HAProxy terms: every string in it is
// either a constant of the renderer, a number, a validated id or the output
// of an escaping helper (escape.go). The section writers (global.go,
// frontend.go, backend.go) only lay it out, one line at a time, recording
// where each line comes from.

type cfgView struct {
	Global     globalView
	Prometheus string // bind address of the exporter frontend, or ""
	LBs        []lbView
	Peers      *peersView // render_peers.go; nil without peers
}

type lbView struct {
	ID        string
	Frontends []frontendView
	Backends  []backendView
}

func (v *cfgView) write(w *cfgWriter) {
	v.Global.write(w)
	if v.Prometheus != "" {
		writePrometheus(w, v.Prometheus)
	}
	for _, lv := range v.LBs {
		w.blank()
		w.line(Origin{Kind: KindLoadBalancer, ID: lv.ID}, "# load balancer ", lv.ID)
		for i := range lv.Frontends {
			lv.Frontends[i].write(w)
		}
		for i := range lv.Backends {
			lv.Backends[i].write(w)
		}
	}
	if v.Peers != nil {
		v.Peers.write(w)
	}
}

// fieldError wraps err with the path of the offending model field.
func fieldError(path string, err error) error {
	return fmt.Errorf("haproxy: %s: %w", path, err)
}

// ms formats a duration in milliseconds for HAProxy.
func ms(n int) string { return strconv.Itoa(n) + "ms" }

func buildView(g Global, lbs []LoadBalancer, withPrometheus bool) (*cfgView, error) {
	gv, err := buildGlobal(g, lbs)
	if err != nil {
		return nil, err
	}
	v := &cfgView{Global: gv}
	if v.Peers, err = buildPeers(g); err != nil {
		return nil, err
	}
	if v.Peers != nil {
		v.Global.LocalPeer = v.Peers.Local
	}
	frontends := map[string]string{} // section name -> owner, to catch duplicates
	if withPrometheus && g.PrometheusBind.IsValid() {
		bind, err := addrPort(g.PrometheusBind.Addr(), int(g.PrometheusBind.Port()))
		if err != nil {
			return nil, fieldError("global.prometheus_bind", err)
		}
		v.Prometheus = bind
		frontends["prometheus"] = "the Prometheus exporter"
	}

	lbs = slices.Clone(lbs)
	slices.SortStableFunc(lbs, func(a, b LoadBalancer) int { return cmp.Compare(a.ID, b.ID) })
	backends := map[string]string{}
	binds := map[string]string{}
	if v.Prometheus != "" {
		binds[v.Prometheus] = "prometheus"
	}
	for _, lb := range lbs {
		if !lb.Enabled {
			continue // nothing of it is rendered, so nothing of it can break the config
		}
		if err := checkID(lb.ID); err != nil {
			return nil, fieldError("load_balancer", err)
		}
		lv, err := buildLB(lb)
		if err != nil {
			return nil, err
		}
		if err := addAccessLogs(&lv, g, lb); err != nil {
			return nil, err
		}
		if v.Peers != nil {
			sharePeers(&lv)
		}
		for _, f := range lv.Frontends {
			if owner, dup := frontends[f.Name]; dup {
				return nil, fieldError("listener "+f.Name, fmt.Errorf("id is also used by %s", owner))
			}
			frontends[f.Name] = "load balancer " + lb.ID
			addr, _, _ := strings.Cut(f.Bind, " ")
			if other, dup := binds[addr]; dup {
				return nil, fieldError("listener "+f.Name, fmt.Errorf("binds %s like listener %s", addr, other))
			}
			binds[addr] = f.Name
		}
		for _, b := range lv.Backends {
			if owner, dup := backends[b.Name]; dup {
				return nil, fieldError("pool "+b.Name, fmt.Errorf("id is also used by %s", owner))
			}
			backends[b.Name] = "load balancer " + lb.ID
		}
		v.LBs = append(v.LBs, lv)
	}
	return v, nil
}

// addrPort formats addr:port for bind and server lines, IPv6 in brackets.
func addrPort(a netip.Addr, port int) (string, error) {
	if !a.IsValid() {
		return "", errors.New("address is not set")
	}
	if a.Zone() != "" {
		return "", errors.New("address must not have an IPv6 zone")
	}
	if port < 1 || port > 65535 {
		return "", fmt.Errorf("port %d is not between 1 and 65535", port)
	}
	return netip.AddrPortFrom(a, uint16(port)).String(), nil
}

func buildLB(lb LoadBalancer) (lbView, error) {
	lv := lbView{ID: lb.ID}
	pools := map[string]*Pool{}
	sortedPools := slices.Clone(lb.Pools)
	slices.SortStableFunc(sortedPools, func(a, b Pool) int { return cmp.Compare(a.ID, b.ID) })
	for i := range sortedPools {
		p := &sortedPools[i]
		if err := checkID(p.ID); err != nil {
			return lv, fieldError("load balancer "+lb.ID+": pool", err)
		}
		if _, dup := pools[p.ID]; dup {
			return lv, fieldError("pool "+p.ID, errors.New("is listed twice"))
		}
		pools[p.ID] = p
	}
	listeners := slices.Clone(lb.Listeners)
	slices.SortStableFunc(listeners, func(a, b Listener) int {
		return cmp.Or(cmp.Compare(a.Port, b.Port), cmp.Compare(a.ID, b.ID))
	})
	for _, l := range listeners {
		fv, err := buildFrontend(lb, l, pools)
		if err != nil {
			return lv, err
		}
		lv.Frontends = append(lv.Frontends, fv)
	}
	for _, p := range sortedPools {
		bv, err := buildBackend(lb, p)
		if err != nil {
			return lv, err
		}
		lv.Backends = append(lv.Backends, bv)
	}
	return lv, nil
}

// poolRef checks that id names an http-compatible pool of the load balancer.
func poolRef(id string, pools map[string]*Pool, httpFrontend bool) error {
	p, ok := pools[id]
	if !ok {
		return fmt.Errorf("pool %s is not a pool of this load balancer", strconv.QuoteToASCII(id))
	}
	if httpFrontend && p.Protocol != "http" {
		return fmt.Errorf("pool %s is a %s pool; an http listener needs http pools", id, p.Protocol)
	}
	return nil
}

// srcTableType is the stick-table type keyed by client addresses of lb.
func srcTableType(lb LoadBalancer) string {
	if lb.VIP.Is6() && !lb.VIP.Is4In6() {
		return "ipv6"
	}
	return "ip"
}
