package agent

import (
	"context"
	"fmt"
	"net/netip"
	"reflect"
	"strings"

	"github.com/fulcrumlb/fulcrum/dataplane/haproxy"
)

// memberOp is one runtime-API change to a server.
type memberOp struct {
	kind    string // add | del | weight | state | addr
	backend string
	member  haproxy.Member
	pool    haproxy.Pool
}

// dynamicAlgorithms are the balance algorithms HAProxy 2.6 can add servers to at runtime.
var dynamicAlgorithms = map[string]bool{"round_robin": true, "least_connections": true, "first": true, "random": true}

// memberOps returns the runtime changes that turn old into new, and false when
// anything else differs (then only a reload will do).
func memberOps(old, new haproxy.Config) ([]memberOp, bool) {
	if old.Global != new.Global || len(old.LoadBalancers) != len(new.LoadBalancers) {
		return nil, false
	}
	var ops []memberOp
	for i, lb := range new.LoadBalancers {
		if haproxy.Identical(old.LoadBalancers[i], lb) {
			continue // unchanged (the apply keeps what runs by identity)
		}
		if !reflect.DeepEqual(withoutMembers(old.LoadBalancers[i]), withoutMembers(lb)) {
			return nil, false
		}
		for j, pool := range lb.Pools {
			before := map[string]haproxy.Member{}
			for _, m := range old.LoadBalancers[i].Pools[j].Members {
				before[m.ID] = m
			}
			for _, m := range pool.Members {
				o, ok := before[m.ID]
				delete(before, m.ID)
				if !ok {
					// HAProxy 2.6's `add server` has no cookie keyword, and
					// needs a dynamic algorithm and an IP address.
					if !dynamicAlgorithms[pool.Algorithm] || !lb.Enabled || strings.HasPrefix(pool.Persistence.Type, "cookie_") {
						return nil, false
					}
					if _, err := netip.ParseAddr(m.Address); err != nil {
						return nil, false
					}
					ops = append(ops, memberOp{kind: "add", backend: pool.ID, member: m, pool: pool})
					continue
				}
				if o.Backup != m.Backup || o.MaxConnections != m.MaxConnections {
					return nil, false
				}
				if !lb.Enabled {
					continue
				}
				if o.Address != m.Address || o.Port != m.Port {
					if _, err := netip.ParseAddr(m.Address); err != nil {
						return nil, false // DNS names need the resolver setup a reload gives
					}
					ops = append(ops, memberOp{kind: "addr", backend: pool.ID, member: m})
				}
				if o.Weight != m.Weight {
					ops = append(ops, memberOp{kind: "weight", backend: pool.ID, member: m})
				}
				if o.Enabled != m.Enabled || (o.Weight == 0) != (m.Weight == 0) {
					ops = append(ops, memberOp{kind: "state", backend: pool.ID, member: m})
				}
			}
			for _, m := range before {
				if !lb.Enabled {
					continue
				}
				if !dynamicAlgorithms[pool.Algorithm] {
					return nil, false
				}
				ops = append(ops, memberOp{kind: "del", backend: pool.ID, member: m})
			}
		}
	}
	return ops, true
}

// withoutMembers is lb without its pools' members.
func withoutMembers(lb haproxy.LoadBalancer) haproxy.LoadBalancer {
	lb.Pools = append([]haproxy.Pool(nil), lb.Pools...)
	for j := range lb.Pools {
		lb.Pools[j].Members = nil
	}
	return lb
}

// serverOptions are the `add server` keywords for a member, matching what the
// renderer writes on its server line.
func serverOptions(p haproxy.Pool, m haproxy.Member) string {
	opts := []string{fmt.Sprintf("weight %d", m.Weight)}
	if m.Backup {
		opts = append(opts, "backup")
	}
	if m.MaxConnections > 0 {
		opts = append(opts, fmt.Sprintf("maxconn %d", m.MaxConnections))
	}
	if p.Monitor != nil {
		opts = append(opts, fmt.Sprintf("check inter %dms fall %d rise %d", p.Monitor.IntervalMS, p.Monitor.Fall, p.Monitor.Rise))
		if p.Monitor.Type == "https" {
			opts = append(opts, "check-ssl verify none")
		}
	}
	switch p.ProxyProtocol {
	case "v1":
		opts = append(opts, "send-proxy")
	case "v2":
		opts = append(opts, "send-proxy-v2")
	}
	if p.TLSToMembers {
		opts = append(opts, "ssl verify none")
	}
	return strings.Join(opts, " ")
}

func addrPort(m haproxy.Member) string {
	if a, err := netip.ParseAddr(m.Address); err == nil && a.Is6() {
		return fmt.Sprintf("[%s]:%d", m.Address, m.Port)
	}
	return fmt.Sprintf("%s:%d", m.Address, m.Port)
}

// applyRuntime performs member changes through the runtime API, no reload.
func (a *Agent) applyRuntime(ctx context.Context, ops []memberOp) (err error) {
	ctx, span := a.tracer.Start(ctx, "haproxy.runtime")
	defer span.End()
	defer func() { a.metrics.observeRuntime(ctx, ops, err) }()
	rt := a.changes
	for _, op := range ops {
		m := op.member
		var err error
		switch op.kind {
		case "add":
			if err = rt.AddServer(ctx, op.backend, m.ID, addrPort(m), serverOptions(op.pool, m)); err == nil && !m.Enabled {
				err = rt.SetState(ctx, op.backend, m.ID, "maint")
			}
		case "del":
			// No new requests from now on; the member's drain (see
			// startDrains) deletes it once its connections are done or its
			// pool's drain timeout has passed, without holding up the apply.
			err = rt.SetState(ctx, op.backend, m.ID, "maint")
		case "addr":
			err = rt.SetAddr(ctx, op.backend, m.ID, m.Address, m.Port)
		case "weight":
			err = rt.SetWeight(ctx, op.backend, m.ID, m.Weight)
		case "state":
			state := "ready"
			switch {
			case !m.Enabled:
				state = "maint"
			case m.Weight == 0:
				state = "drain"
			}
			err = rt.SetState(ctx, op.backend, m.ID, state)
		}
		if err != nil {
			return fmt.Errorf("%s %s/%s: %w", op.kind, op.backend, m.ID, err)
		}
	}
	return nil
}
