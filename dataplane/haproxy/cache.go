package haproxy

import (
	"cmp"
	"fmt"
	"reflect"
	"slices"
	"strings"
)

// RenderCache renders configurations like Render, one load balancer at a
// time, keeping each load balancer's text while its model does not change:
// with many load balancers on a node, a change to one re-renders only that
// one. Its output is byte for byte Render's (errors included). Not safe for
// concurrent use.
type RenderCache struct {
	lbs map[string]*lbPiece
	// scratch is reused by every render: at 1,000 load balancers its maps
	// and slices were ≈ 0.3 MB of garbage per render.
	scratch struct {
		frontends, binds, backends map[string]string
		seen                       map[string]bool
		lbs                        []LoadBalancer
		pieces                     []*lbPiece
	}
}

// lbPiece is one load balancer's rendered sections and the names they take.
type lbPiece struct {
	lb        LoadBalancer
	ctx       pieceContext // what of the global settings the piece depends on
	text      []byte       // from the blank line before "# load balancer" to its last backend
	frontends []string
	binds     []string // each frontend's bind address, as buildView compares them
	backends  []string
	err       error // buildLB's error for lb (then text is nil)
}

// pieceContext is what of the global settings a load balancer's sections
// depend on: its access log lines name the socket, and its stick tables are
// shared through the peers section when there is one.
type pieceContext struct {
	accessLogSocket string
	peers           bool
}

// Render returns the haproxy.cfg text for c, as Render does.
func (rc *RenderCache) Render(c Config) ([]byte, error) {
	return rc.AppendRender(nil, c)
}

// AppendRender appends the haproxy.cfg text for c to dst and returns the
// extended buffer, as Render does; a caller that renders again and again
// (1.2 MB at 1,000 load balancers) can pass the buffer of an earlier render
// it no longer needs, truncated, and allocate none. On error dst is
// returned unchanged.
func (rc *RenderCache) AppendRender(dst []byte, c Config) ([]byte, error) {
	out, err := rc.appendRender(dst, c)
	if err != nil {
		return dst, err
	}
	return out, nil
}

func (rc *RenderCache) appendRender(dst []byte, c Config) ([]byte, error) {
	if rc.lbs == nil {
		rc.lbs = map[string]*lbPiece{}
	}
	sc := &rc.scratch
	defer func() {
		clear(sc.lbs) // no model kept past the render
		sc.lbs = sc.lbs[:0]
		clear(sc.pieces)
		sc.pieces = sc.pieces[:0]
	}()
	gv, err := buildGlobal(c.Global, c.LoadBalancers)
	if err != nil {
		return nil, err
	}
	peers, err := buildPeers(c.Global)
	if err != nil {
		return nil, err
	}
	if peers != nil {
		gv.LocalPeer = peers.Local
	}
	pctx := pieceContext{accessLogSocket: c.Global.AccessLogSocket, peers: peers != nil}
	head := &cfgWriter{}
	gv.write(head)
	// Names and binds taken so far, by the load balancer that took them
	// ("" for the Prometheus exporter; see owner), sized for one of each
	// per load balancer: a member change renders 1,000 of them.
	frontends, binds := scratchMap(&sc.frontends, len(c.LoadBalancers)+1), scratchMap(&sc.binds, len(c.LoadBalancers)+1)
	if c.Global.PrometheusBind.IsValid() {
		bind, err := addrPort(c.Global.PrometheusBind.Addr(), int(c.Global.PrometheusBind.Port()))
		if err != nil {
			return nil, fieldError("global.prometheus_bind", err)
		}
		writePrometheus(head, bind)
		frontends["prometheus"] = ""
		binds[bind] = "prometheus"
	}
	lbs := append(sc.lbs[:0], c.LoadBalancers...)
	sc.lbs = lbs
	byID := func(a, b LoadBalancer) int { return cmp.Compare(a.ID, b.ID) }
	if !slices.IsSortedFunc(lbs, byID) {
		slices.SortStableFunc(lbs, byID)
	}
	backends := scratchMap(&sc.backends, len(lbs))
	if sc.seen == nil {
		sc.seen = make(map[string]bool, len(lbs))
	}
	seen := sc.seen
	clear(seen)
	pieces := sc.pieces[:0]
	size := head.b.Len()
	for _, lb := range lbs {
		if !lb.Enabled {
			continue
		}
		if err := checkID(lb.ID); err != nil {
			return nil, fieldError("load_balancer", err)
		}
		pc := rc.piece(lb, c.Global, pctx, seen)
		if pc.err != nil {
			return nil, pc.err
		}
		for i, name := range pc.frontends {
			if owner, dup := frontends[name]; dup {
				return nil, fieldError("listener "+name, fmt.Errorf("id is also used by %s", ownerName(owner)))
			}
			frontends[name] = lb.ID
			if other, dup := binds[pc.binds[i]]; dup {
				return nil, fieldError("listener "+name, fmt.Errorf("binds %s like listener %s", pc.binds[i], other))
			}
			binds[pc.binds[i]] = name
		}
		for _, name := range pc.backends {
			if owner, dup := backends[name]; dup {
				return nil, fieldError("pool "+name, fmt.Errorf("id is also used by %s", ownerName(owner)))
			}
			backends[name] = lb.ID
		}
		pieces = append(pieces, pc)
		sc.pieces = pieces
		size += len(pc.text)
	}
	for id := range rc.lbs {
		if !seen[id] {
			delete(rc.lbs, id)
		}
	}
	var tail []byte
	if peers != nil {
		w := &cfgWriter{}
		peers.write(w)
		tail = w.b.Bytes()
	}
	out := slices.Grow(dst, size+len(tail))
	out = append(out, head.b.Bytes()...)
	for _, pc := range pieces {
		out = append(out, pc.text...)
	}
	return append(out, tail...), nil
}

// scratchMap is *m emptied, made with room for n entries when there is none.
func scratchMap(m *map[string]string, n int) map[string]string {
	if *m == nil {
		*m = make(map[string]string, n)
	}
	clear(*m)
	return *m
}

// ownerName names the owner of a frontend or backend name in Render's
// maps: a load balancer by id, or the Prometheus exporter ("").
func ownerName(owner string) string {
	if owner == "" {
		return "the Prometheus exporter"
	}
	return "load balancer " + owner
}

// piece returns lb's rendered piece, from the cache while lb is unchanged.
// Two load balancers with one id (a model the renderer then refuses) share
// no piece.
func (rc *RenderCache) piece(lb LoadBalancer, g Global, pctx pieceContext, seen map[string]bool) *lbPiece {
	if pc, ok := rc.lbs[lb.ID]; ok && pc.ctx == pctx && (Identical(pc.lb, lb) || reflect.DeepEqual(pc.lb, lb)) {
		seen[lb.ID] = true
		return pc
	}
	pc := renderPiece(lb, g, pctx)
	if !seen[lb.ID] {
		rc.lbs[lb.ID] = pc
		seen[lb.ID] = true
	}
	return pc
}

func renderPiece(lb LoadBalancer, g Global, pctx pieceContext) *lbPiece {
	pc := &lbPiece{lb: lb, ctx: pctx}
	lv, err := buildLB(lb)
	if err == nil {
		err = addAccessLogs(&lv, g, lb)
	}
	if err != nil {
		pc.err = err
		return pc
	}
	if pctx.peers {
		sharePeers(&lv)
	}
	w := &cfgWriter{}
	w.blank()
	w.line(Origin{Kind: KindLoadBalancer, ID: lv.ID}, "# load balancer ", lv.ID)
	for i := range lv.Frontends {
		lv.Frontends[i].write(w)
		addr, _, _ := strings.Cut(lv.Frontends[i].Bind, " ")
		pc.frontends = append(pc.frontends, lv.Frontends[i].Name)
		pc.binds = append(pc.binds, addr)
	}
	for i := range lv.Backends {
		lv.Backends[i].write(w)
		pc.backends = append(pc.backends, lv.Backends[i].Name)
	}
	pc.text = w.b.Bytes()
	return pc
}

// Identical reports whether a and b are the same version of a load balancer
// by identity: the same fields and the very same listener and pool slices
// (one backing array). It implies reflect.DeepEqual(a, b) as long as models
// are not changed in place once built, which is how the agent treats them;
// false says nothing.
func Identical(a, b LoadBalancer) bool {
	return a.ID == b.ID && a.TenantID == b.TenantID && a.VIP == b.VIP && a.Enabled == b.Enabled &&
		sameSlice(a.Listeners, b.Listeners) && sameSlice(a.Pools, b.Pools)
}

func sameSlice[T any](a, b []T) bool {
	return len(a) == len(b) && cap(a) == cap(b) && (len(a) == 0 || &a[0] == &b[0])
}
