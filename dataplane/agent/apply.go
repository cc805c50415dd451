package agent

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/fulcrumlb/fulcrum/dataplane/haproxy"
	snapconv "github.com/fulcrumlb/fulcrum/dataplane/snapshot"
	"github.com/fulcrumlb/fulcrum/internal/atomicfile"
	"github.com/fulcrumlb/fulcrum/openapi"
)

// Kinds of load balancer failures.
const (
	failConvert = "convert" // the snapshot's LB could not be turned into HAProxy's model
	failCheck   = "check"   // haproxy -c rejected it
	failBind    = "bind"    // one of its new VIP:ports cannot be bound
	failReload  = "reload"  // a reload with it failed
	failStart   = "start"   // HAProxy did not start with it
)

// lbFailure is why a load balancer is held at its last good version (or left
// out when it has none).
type lbFailure struct {
	Message  string `json:"message"`
	ObjectID string `json:"object_id,omitempty"`
	Field    string `json:"field,omitempty"`
	Kind     string `json:"kind"`
	// Candidate fingerprints the rejected version: the same version is not
	// tried again (a failed reload pauses every listener of the node). Bind
	// failures are re-checked, as a port may be freed.
	Candidate string `json:"candidate,omitempty"`
}

// applyError is an apply that failed as a whole, with the node error it
// stands for.
type applyError struct {
	kind openapi.NodeErrorKind
	err  error
}

func (e *applyError) Error() string { return e.err.Error() }
func (e *applyError) Unwrap() error { return e.err }

func nodeFailure(kind openapi.NodeErrorKind, err error) error {
	var ae *applyError
	if errors.As(err, &ae) {
		return err
	}
	return &applyError{kind: kind, err: err}
}

// retryable kinds may succeed later with the same snapshot.
func retryable(kind openapi.NodeErrorKind) bool {
	return kind == openapi.Disk || kind == openapi.HaproxyStart
}

// fingerprint identifies a version of a load balancer's model.
func fingerprint(v any) string {
	b, _ := json.Marshal(v)
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:12])
}

// Apply realizes a snapshot: older or equal revisions are ignored. Load
// balancers HAProxy rejects — by `haproxy -c`, because a new VIP:port cannot
// be bound, or because a reload (or start) with them fails — stay at their
// last good version (or out, when new), reported with the reason; everything
// else applies. Member-only changes go through the runtime API, rotated
// certificates through `set ssl cert`, without a reload. A snapshot that fails
// as a whole (a node-level failure) is not tried again until a newer one
// arrives, or, for failures that may pass (disk, start), on the retry tick.
func (a *Agent) Apply(ctx context.Context, snap *openapi.Snapshot) error {
	return a.apply(ctx, snap, false)
}

func (a *Agent) apply(ctx context.Context, snap *openapi.Snapshot, force bool) (err error) {
	ctx, span := a.tracer.Start(ctx, "agent.apply", applySpanOptions(snap, a.cfg.NodeName)...)
	defer a.metrics.observeApply(ctx, time.Now(), snap, &err)
	defer func() {
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
	}()

	// Snapshots that arrive while an apply runs wait for it; the first
	// of them to go applies the newest, the others find it applied: changes
	// that arrive together become one apply (and at most one reload).
	a.offer(snap)
	a.mu.Lock()
	defer a.mu.Unlock()
	if n := a.newest.Load(); n != nil && n.Revision > snap.Revision {
		snap = n
	}
	if force && a.want != nil && a.want.Revision > snap.Revision {
		snap = a.want // a retry never goes back to an older snapshot
	}
	if !force && ((a.snap != nil && snap.Revision <= a.snap.Revision) || snap.Revision <= a.failedRev) {
		return nil
	}
	if a.want == nil || snap.Revision >= a.want.Revision {
		a.want = snap
	}
	if a.live == nil {
		return nodeFailure(openapi.HaproxyStart, errors.New("haproxy is not running"))
	}
	a.prepareVIPs(snap)
	err = a.applyLocked(ctx, span, snap)
	if err != nil {
		var ae *applyError
		if !errors.As(err, &ae) {
			ae = &applyError{kind: openapi.Other, err: err}
			err = ae
		}
		a.nodeErrors = map[openapi.NodeErrorKind]string{ae.kind: truncate(ae.err.Error(), 8000)}
		a.scope = reportScope{all: true} // what HAProxy runs may have changed half way
		a.failedRev = max(a.failedRev, snap.Revision)
		a.retry = retryable(ae.kind)
	}
	a.notifyReport()
	return err
}

// offer notes snap as the newest snapshot received when it is.
func (a *Agent) offer(snap *openapi.Snapshot) {
	for {
		n := a.newest.Load()
		if n != nil && n.Revision >= snap.Revision {
			return
		}
		if a.newest.CompareAndSwap(n, snap) {
			return
		}
	}
}

func (a *Agent) notifyReport() {
	select {
	case a.reportCh <- struct{}{}:
	default:
	}
}

// plan is one apply in the making.
type plan struct {
	cfg     haproxy.Config                  // what HAProxy should serve
	prev    map[string]haproxy.LoadBalancer // what it serves now, by LB id
	cands   map[string]haproxy.LoadBalancer // the snapshot's versions, by LB id
	changed map[string]bool                 // LBs whose candidate is in cfg and differs from prev
	errs    map[string]lbFailure
}

// hold puts id back to its last good version (or takes it out) with f.
func (p *plan) hold(id string, f lbFailure) {
	if c, ok := p.cands[id]; ok && f.Candidate == "" {
		f.Candidate = fingerprint(c)
	}
	p.errs[id] = f
	delete(p.changed, id)
	p.cfg = withLB(p.cfg, id, p.prev)
}

// withLB returns cfg with LB id at its version in from, or without it.
func withLB(cfg haproxy.Config, id string, from map[string]haproxy.LoadBalancer) haproxy.Config {
	out := haproxy.Config{Global: cfg.Global}
	for _, lb := range cfg.LoadBalancers {
		if lb.ID != id {
			out.LoadBalancers = append(out.LoadBalancers, lb)
		}
	}
	if lb, ok := from[id]; ok {
		out.LoadBalancers = append(out.LoadBalancers, lb)
	}
	sort.Slice(out.LoadBalancers, func(i, j int) bool { return out.LoadBalancers[i].ID < out.LoadBalancers[j].ID })
	return out
}

func (p *plan) changedIDs() []string {
	ids := make([]string, 0, len(p.changed))
	for id := range p.changed {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

func (a *Agent) applyLocked(ctx context.Context, span trace.Span, snap *openapi.Snapshot) error {
	badCerts, err := a.writeCertificates(snap.Certificates)
	if err != nil {
		return nodeFailure(openapi.Disk, fmt.Errorf("write certificates: %w", err))
	}
	// Sized up front: at 1,000 load balancers growing these maps cost an
	// apply ≈ 1 MB, a sixth of an apply that changes nothing in HAProxy (a
	// load balancer, pool or member created before its listener).
	// The maps of what runs and of the candidates are the agent's, reused
	// (emptied) by every apply: nothing keeps them past it.
	a.planPrev, a.planCands = emptied(a.planPrev, len(a.live.LoadBalancers)), emptied(a.planCands, len(snap.LoadBalancers))
	defer func() { clear(a.planPrev); clear(a.planCands) }() // no model kept past the apply
	p := &plan{cfg: haproxy.Config{Global: a.globalFor(snap), LoadBalancers: make([]haproxy.LoadBalancer, 0, len(snap.LoadBalancers))},
		prev: a.planPrev, cands: a.planCands, changed: map[string]bool{}, errs: map[string]lbFailure{}}
	before := a.live // what HAProxy ran before this apply (reloads below replace a.live)
	for _, lb := range a.live.LoadBalancers {
		p.prev[lb.ID] = lb
	}
	conv := a.converted.next(snap)
	for i := range snap.LoadBalancers {
		sl := &snap.LoadBalancers[i]
		id := sl.LoadBalancer.Id
		lb, err := conv.convert(sl, a.certFile)
		if err != nil {
			p.errs[id] = lbFailure{Kind: failConvert, Message: err.Error(), ObjectID: idRE.FindString(err.Error()), Candidate: fingerprint(sl)}
			if old, ok := p.prev[id]; ok {
				p.cfg.LoadBalancers = append(p.cfg.LoadBalancers, old)
			}
			continue
		}
		if len(lb.Listeners) == 0 {
			// Serves no traffic: left out of HAProxy's configuration (like
			// Octavia's pools without listeners), so creating it, its pools
			// and members changes nothing there; its first listener brings
			// it in with one reload. Its members read no_monitor.
			continue
		}
		p.cands[id] = lb
		old, had := p.prev[id]
		if f, bad := certFailure(sl, badCerts); bad {
			// Held at what runs (its certificate file was left as it was).
			f.Candidate = fingerprint(lb)
			p.errs[id] = f
			if had {
				p.cfg.LoadBalancers = append(p.cfg.LoadBalancers, old)
			}
			continue
		}
		if had && (haproxy.Identical(old, lb) || reflect.DeepEqual(old, lb)) {
			// What runs, by identity: later steps skip it cheaply
			// (haproxy.Identical).
			p.cfg.LoadBalancers = append(p.cfg.LoadBalancers, old)
			continue
		}
		if f, ok := a.lbErrors[id]; ok && f.Kind != failBind && f.Candidate == fingerprint(lb) {
			// This very version failed before: not again.
			p.errs[id] = f
			if had {
				p.cfg.LoadBalancers = append(p.cfg.LoadBalancers, old)
			}
			continue
		}
		p.cfg.LoadBalancers = append(p.cfg.LoadBalancers, lb)
		p.changed[id] = true
	}
	byID := func(a, b haproxy.LoadBalancer) int { return strings.Compare(a.ID, b.ID) }
	if !slices.IsSortedFunc(p.cfg.LoadBalancers, byID) { // snapshots list them by id
		slices.SortFunc(p.cfg.LoadBalancers, byID)
	}

	// Member-only changes need neither the candidate check nor a reload.
	ops, runtimeOK := memberOps(*a.live, p.cfg)
	runtimeOK = runtimeOK && !a.liveUnsure // what runs is not a.live (startServing): reloaded onto p.cfg
	if !runtimeOK {
		// The old worker's counters are read while the check runs.
		a.early = a.sampleEarly(a.live)
		defer a.endEarlySample()
		if err := a.validate(ctx, p); err != nil {
			return err
		}
		a.checkBinds(p)
		ops, runtimeOK = memberOps(*a.live, p.cfg)
		runtimeOK = runtimeOK && !a.liveUnsure
	}
	reloaded := false
	if runtimeOK {
		if len(ops) > 0 {
			if err := a.applyRuntime(ctx, ops); err != nil {
				a.log.WarnContext(ctx, "runtime change failed; reloading instead", "err", err)
				runtimeOK = false
			}
		}
		// Then the file, so that whatever reloads next agrees with what
		// runs: written configWriteDelay later while Run runs, off the
		// change's way into traffic (members_config.go), else here. Should
		// it fail here, what runs is not recorded (a.live): the next apply
		// makes the same changes again, which the runtime API takes or a
		// reload does.
		if runtimeOK {
			if err := a.configChanged(p.cfg); err != nil {
				return err
			}
		}
	}
	if !runtimeOK {
		if err := a.reloadIsolated(ctx, p); err != nil {
			return err
		}
		reloaded = true
	}
	// Certificates whose content changed under an unchanged file name.
	if !reloaded {
		if err := a.rotateCertificates(ctx, p.cfg); err != nil {
			a.log.Warn("runtime certificate update failed; reloading instead", "err", err)
			if err := a.reloadTo(ctx, p.cfg); err != nil {
				return nodeFailure(openapi.Reload, err)
			}
			reloaded = true
		}
	}
	a.startDrains(ctx, before, p.cfg, reloaded)
	a.noteScope(reloaded, p.prev, p.cfg, p.changedIDs())
	a.live, a.snap, a.lbErrors, a.parked = &p.cfg, snap, p.errs, parkedMembers(snap)
	conv.prune(snap)
	a.converted = conv
	a.updateVIPs(snap)
	a.nodeErrors = map[openapi.NodeErrorKind]string{}
	a.retry = false
	for _, f := range p.errs {
		if f.Kind == failBind {
			a.retry = true // the port may be freed
		}
	}
	a.removeStaleCertificates(snap, p.cfg)
	a.stateChanged() // state.go: snapshot.json, after what runs changed

	span.SetAttributes(attribute.Bool("fulcrum.reloaded", reloaded), attribute.Int("fulcrum.load_balancer_errors", len(p.errs)))
	lbErrors := make(map[string]string, len(p.errs))
	for id, f := range p.errs {
		lbErrors[id] = f.Message
	}
	recordLBErrors(span, snap, lbErrors)
	a.log.InfoContext(ctx, "applied snapshot", "revision", snap.Revision, "reloaded", reloaded, "load_balancers", len(p.cfg.LoadBalancers), "errors", len(p.errs))
	return nil
}

// conversions keeps each load balancer's model as converted from the
// snapshot, by the revision it last changed at (format 2 snapshots carry
// it): an apply converts only the load balancers that changed, and the
// others keep the very model that runs, which later steps compare by
// identity (haproxy.Identical) instead of field by field.
type conversions struct {
	group string
	byID  map[string]conversion
}

type conversion struct {
	revision int64
	lb       haproxy.LoadBalancer
}

// next is the cache for an apply of snap: it starts from c (an apply that
// fails leaves c as it was) and holds only snap's load balancers.
//
// The map is updated in place (a copy of 1,000 conversions per apply was a
// tenth of a member change's garbage): an entry is a load balancer's model
// at one revision, right whether or not the apply that made it succeeds, so
// an apply that fails leaves none that is wrong.
func (c conversions) next(snap *openapi.Snapshot) conversions {
	if c.byID == nil || c.group != snap.NodeGroupId {
		return conversions{group: snap.NodeGroupId, byID: make(map[string]conversion, len(snap.LoadBalancers))}
	}
	return c
}

// prune drops the conversions of load balancers snap no longer has.
func (c conversions) prune(snap *openapi.Snapshot) {
	if len(c.byID) <= len(snap.LoadBalancers) {
		return // as many as snap has, or fewer: nothing to drop, or little (see below)
	}
	// More than snap has: some load balancer left. (One that left as another
	// came, in one snapshot, leaves its entry until the next prune.)
	in := make(map[string]bool, len(snap.LoadBalancers))
	for i := range snap.LoadBalancers {
		in[snap.LoadBalancers[i].LoadBalancer.Id] = true
	}
	for id := range c.byID {
		if !in[id] {
			delete(c.byID, id)
		}
	}
}

// emptied is m emptied, made with room for n entries when nil.
func emptied(m map[string]haproxy.LoadBalancer, n int) map[string]haproxy.LoadBalancer {
	if m == nil {
		return make(map[string]haproxy.LoadBalancer, n)
	}
	clear(m)
	return m
}

// convert is snapconv.ToLoadBalancer, from the cache when sl's revision is
// the one converted before (revision 0, unknown, is always converted).
func (c conversions) convert(sl *openapi.SnapshotLoadBalancer, certFile func(string) string) (haproxy.LoadBalancer, error) {
	id := sl.LoadBalancer.Id
	if cv, ok := c.byID[id]; ok && sl.Revision > 0 && cv.revision == sl.Revision {
		return cv.lb, nil
	}
	delete(c.byID, id)
	lb, err := snapconv.ToLoadBalancer(sl, certFile)
	if err == nil && sl.Revision > 0 {
		c.byID[id] = conversion{revision: sl.Revision, lb: lb}
	}
	return lb, err
}

// parkedMember is a member of a load balancer without listeners and the
// status reported for it: HAProxy has no server for it, so no health check
// runs (no_monitor), and a disabled one reads like one in maintenance.
type parkedMember struct {
	id     string
	status openapi.NodeReportMembersStatus
}

// parkedMembers are the members of snap's load balancers without listeners.
func parkedMembers(snap *openapi.Snapshot) []parkedMember {
	var out []parkedMember
	for i := range snap.LoadBalancers {
		if sl := &snap.LoadBalancers[i]; len(sl.Listeners) == 0 {
			for _, m := range sl.Members {
				st := openapi.NodeReportMembersStatusNoMonitor
				if !m.Enabled {
					st = openapi.NodeReportMembersStatusMaint
				}
				out = append(out, parkedMember{id: m.Id, status: st})
			}
		}
	}
	return out
}

// certFailure reports whether a listener of sl uses a certificate that does
// not load.
func certFailure(sl *openapi.SnapshotLoadBalancer, bad map[string]error) (lbFailure, bool) {
	for _, l := range sl.Listeners {
		for _, id := range l.CertificateIds {
			if err, ok := bad[id]; ok {
				return lbFailure{Kind: failCheck, Message: err.Error(), ObjectID: id}, true
			}
		}
	}
	return lbFailure{}, false
}

// validate runs `haproxy -c` on the plan; when it fails, each changed load
// balancer is checked alone and the ones HAProxy rejects are held back.
func (a *Agent) validate(ctx context.Context, p *plan) error {
	ctx, span := a.tracer.Start(ctx, "agent.validate")
	defer span.End()
	// verdict is nil when cfg renders and passes `haproxy -c`, a *CheckError
	// or render error when HAProxy (or the renderer) refuses it, and an
	// *applyError when it could not be checked at all.
	verdict := func(cfg haproxy.Config, one *haproxy.LoadBalancer) error {
		var text []byte
		var err error
		if one != nil {
			text, err = haproxy.RenderLoadBalancer(cfg.Global, *one)
		} else {
			text, err = a.render.Render(cfg)
		}
		a.checkedCfg = nil
		if err == nil {
			err = a.checkText(ctx, text)
		}
		if err == nil && one == nil {
			a.checkedCfg = &cfg // the text a reload onto cfg renders (reloadTo)
		}
		var ae *applyError
		var ce *haproxy.CheckError
		if err != nil && !errors.As(err, &ae) && !errors.As(err, &ce) && !strings.HasPrefix(err.Error(), "haproxy: ") {
			// Not HAProxy's verdict: it could not run.
			return nodeFailure(openapi.Other, fmt.Errorf("check configuration: %w", err))
		}
		return err
	}
	var ae *applyError
	err := verdict(p.cfg, nil)
	if err == nil || errors.As(err, &ae) {
		return err
	}
	// Each changed load balancer alone.
	for _, id := range p.changedIDs() {
		lb := p.cands[id]
		err := verdict(p.cfg, &lb)
		if errors.As(err, &ae) {
			return err
		}
		if err != nil {
			p.hold(id, checkFailure(err, lb))
		}
	}
	err = verdict(p.cfg, nil)
	if err == nil || errors.As(err, &ae) {
		return err
	}
	// They pass alone but not together (two binding one address, say): add
	// them one at a time to what runs now.
	changed := p.changedIDs()
	acc := p.cfg
	for _, id := range changed {
		acc = withLB(acc, id, p.prev)
	}
	if err := verdict(acc, nil); err != nil {
		return nodeFailure(openapi.Config, fmt.Errorf("config invalid even without the changed load balancers: %w", err))
	}
	for _, id := range changed {
		next := withLB(acc, id, p.cands)
		err := verdict(next, nil)
		if errors.As(err, &ae) {
			return err
		}
		if err != nil {
			p.errs[id] = checkFailure(err, p.cands[id])
			delete(p.changed, id)
			continue
		}
		acc = next
	}
	p.cfg = acc
	return nil
}

// checkFailure describes a load balancer `haproxy -c` or the renderer refused.
func checkFailure(err error, lb haproxy.LoadBalancer) lbFailure {
	f := lbFailure{Kind: failCheck, Message: err.Error(), Candidate: fingerprint(lb)}
	f.ObjectID, f.Field = objectOf(err, lb)
	return f
}

// checkBinds holds back changed load balancers with a listener on a
// VIP:port HAProxy does not bind yet and cannot bind: a port another process
// holds would otherwise fail the reload (and pause every listener).
func (a *Agent) checkBinds(p *plan) {
	bound := map[netip.AddrPort]bool{}
	for _, lb := range a.live.LoadBalancers {
		if !lb.Enabled {
			continue
		}
		for _, l := range lb.Listeners {
			bound[netip.AddrPortFrom(lb.VIP, uint16(l.Port))] = true
		}
	}
	for _, id := range p.changedIDs() {
		lb := p.cands[id]
		if !lb.Enabled {
			continue
		}
		for _, l := range lb.Listeners {
			ap := netip.AddrPortFrom(lb.VIP, uint16(l.Port))
			if bound[ap] {
				continue
			}
			if err := a.binder.CanBind(ap); err != nil {
				a.log.Warn("listener cannot be bound; load balancer kept at its last good version", "load_balancer", id, "listener", l.ID, "err", err)
				p.hold(id, lbFailure{Kind: failBind, Message: err.Error(), ObjectID: l.ID, Field: "port"})
				break
			}
		}
	}
}

// reloadIsolated reloads HAProxy onto p.cfg. When the reload fails, the load
// balancers HAProxy names (sections are object ids; bind addresses map to
// listeners) are held back and the rest reloaded again; when it names none,
// the changed load balancers are bisected. Load balancers that did not change
// are never blamed: they run now.
func (a *Agent) reloadIsolated(ctx context.Context, p *plan) error {
	for attempt := 0; ; attempt++ {
		err := a.reloadTo(ctx, p.cfg)
		if err == nil {
			return nil
		}
		var ae *applyError
		if errors.As(err, &ae) {
			return err
		}
		var re *haproxy.ReloadError
		if !errors.As(err, &re) {
			// Not HAProxy's verdict on the configuration (no answer in
			// time, the master went away): nothing to blame a tenant for.
			return nodeFailure(openapi.Reload, err)
		}
		culprits := a.culprits(err, p)
		if len(culprits) == 0 || attempt >= 3 {
			return a.bisect(ctx, p, err)
		}
		for id, f := range culprits {
			a.log.Warn("reload failed because of a load balancer; keeping it at its last good version", "load_balancer", id, "err", f.Message)
			p.hold(id, f)
		}
	}
}

// bisect finds the changed load balancers a reload fails with when HAProxy
// names none: it applies halves of them, keeping what reloads.
func (a *Agent) bisect(ctx context.Context, p *plan, cause error) error {
	changed := p.changedIDs()
	a.log.Warn("reload failed without naming a load balancer; bisecting the changed ones", "changed", len(changed), "err", cause)
	good := map[string]bool{} // changed LBs applied successfully
	build := func(with []string) haproxy.Config {
		cfg := p.cfg
		in := map[string]bool{}
		for _, id := range with {
			in[id] = true
		}
		for _, id := range changed {
			if !in[id] && !good[id] {
				cfg = withLB(cfg, id, p.prev)
			}
		}
		return cfg
	}
	var blamed []string
	var try func(ids []string, known bool) error
	try = func(ids []string, knownBad bool) error {
		if len(ids) == 0 {
			return nil
		}
		if !knownBad {
			err := a.reloadTo(ctx, build(ids))
			var ae *applyError
			if errors.As(err, &ae) {
				return err
			}
			var re *haproxy.ReloadError
			if err != nil && !errors.As(err, &re) {
				return nodeFailure(openapi.Reload, err)
			}
			if err == nil {
				for _, id := range ids {
					good[id] = true
				}
				return nil
			}
			cause = err
		}
		if len(ids) == 1 {
			blamed = append(blamed, ids[0])
			p.hold(ids[0], lbFailure{Kind: failReload, Message: cause.Error()})
			return nil
		}
		h := len(ids) / 2
		if err := try(ids[:h], false); err != nil {
			return err
		}
		return try(ids[h:], false)
	}
	if len(changed) == 0 {
		return nodeFailure(openapi.Reload, cause)
	}
	if err := try(changed, true); err != nil {
		return err
	}
	// The last reload that worked is what remains; make sure it runs.
	if !reflect.DeepEqual(p.cfg, *a.live) {
		if err := a.reloadTo(ctx, p.cfg); err != nil {
			return nodeFailure(openapi.Reload, err)
		}
	}
	a.log.Warn("bisected a failing reload", "blamed", blamed)
	return nil
}

// reloadTo writes cfg and reloads HAProxy onto it. On failure the file is put
// back to what runs, so the next reload agrees with it. Failures to write are
// *applyError (kind disk); HAProxy's refusals are returned as they are.
func (a *Agent) reloadTo(ctx context.Context, cfg haproxy.Config) error {
	var text []byte
	if a.checked != nil && a.checkedCfg != nil && sameConfig(*a.checkedCfg, cfg) {
		// What `haproxy -c` just passed: not rendered again (2–5 ms at
		// 1,000 load balancers, between the check and the reload).
		text = a.checked
	} else {
		var err error
		if text, err = a.render.Render(cfg); err != nil {
			return nodeFailure(openapi.Config, err)
		}
	}
	a.written = nil // unknown until the reload is done or undone
	// The candidate `haproxy -c` just passed, when it is this text, moved
	// into place (no second write of the same bytes on the reload's path);
	// else written. Neither is synced, nor started on its way to the disk
	// (atomicfile.Swap, Replace), before the reload — and the previous file,
	// swapped out, is unlinked only after it (dropChecked) — and need not be:
	//   - the master re-reads haproxy.cfg at the reload through the page
	//     cache, which holds the complete new file once the rename is done
	//     (the rename is atomic: it reads the old file or the new one);
	//   - what survives a crash of the machine is snapshot.json (written in
	//     the background, synced), and every start renders and writes
	//     haproxy.cfg anew from it before HAProxy starts (startServing), so
	//     an old or empty haproxy.cfg after a crash is never served;
	//   - a crash of the agent alone leaves HAProxy running on what it
	//     reloaded, and the file in the page cache, complete (the next
	//     start takes it over as it runs: startServing, runsNewer).
	// An fsync here (or the flush ext4 starts on a plain rename over an
	// existing file) would put the disk's latency — hundreds of ms when
	// other work fills it — between the check and the reload, for nothing.
	if !a.takeChecked(text) {
		if err := replaceFile(a.path("haproxy.cfg"), text); err != nil {
			return nodeFailure(openapi.Disk, fmt.Errorf("write haproxy.cfg: %w", err))
		}
	}
	// A reload is not abandoned half way when the agent stops: what HAProxy
	// then serves must be what the state on disk says.
	ctx = context.WithoutCancel(ctx)
	rctx, rspan := a.tracer.Start(ctx, "haproxy.reload")
	a.saveServerState(rctx, cfg)
	err := a.reloader.Reload(rctx)
	rspan.End()
	a.dropChecked() // the previous haproxy.cfg, off the reload's path
	a.stats.flush() // the old worker's last counts (sampled above), now that it serves no more: written off this path (statsStore.saveLocked)
	if err != nil {
		if old, rerr := a.render.Render(*a.live); rerr == nil {
			if replaceFile(a.path("haproxy.cfg"), old) == nil {
				a.written = old
			}
		}
		if errors.Is(err, haproxy.ErrNotRunning) {
			return nodeFailure(openapi.HaproxyStart, err)
		}
		return err
	}
	a.live = &cfg // what runs now (the plan may still change)
	a.liveUnsure = false
	a.written = text
	a.markCertificatesLoaded(cfg)
	return nil
}

// sameConfig reports whether a and b are the same configuration by
// identity: equal globals and haproxy.Identical load balancers in the same
// order, from which the same text renders.
func sameConfig(a, b haproxy.Config) bool {
	if len(a.LoadBalancers) != len(b.LoadBalancers) || !reflect.DeepEqual(a.Global, b.Global) {
		return false
	}
	for i := range a.LoadBalancers {
		if !haproxy.Identical(a.LoadBalancers[i], b.LoadBalancers[i]) {
			return false
		}
	}
	return true
}

// writeConfig writes the file HAProxy would load on its next reload, when
// it differs from what was written last. It is replaced atomically but not
// synced: what runs is already in HAProxy, the state that survives a crash
// is snapshot.json, and every start writes the file anew (startServing) —
// an fsync of a large file would delay a member change for nothing.
//
// It renders into buffers of its own, reused (1.2 MB at 1,000 load
// balancers, once per member change): cfgSpare, which nothing references,
// and cfgMine, the text it wrote last, which only a.written may reference —
// free again once a.written is another text.
func (a *Agent) writeConfig(cfg haproxy.Config) error {
	text, err := a.render.AppendRender(a.cfgSpare[:0], cfg)
	if err != nil {
		return nodeFailure(openapi.Config, err)
	}
	if bytes.Equal(text, a.written) {
		a.cfgSpare = text
		return nil
	}
	a.written = nil
	if err := replaceFile(a.path("haproxy.cfg"), text); err != nil {
		a.cfgSpare = text
		return nodeFailure(openapi.Disk, fmt.Errorf("write haproxy.cfg: %w", err))
	}
	a.written = text
	a.cfgSpare, a.cfgMine = a.cfgMine, text
	return nil
}

// replaceFile replaces path with data (mode 0600) atomically, without an
// fsync and without starting the write to disk (atomicfile.WriteUnsynced).
func replaceFile(path string, data []byte) error {
	return atomicfile.WriteUnsynced(path, data, 0o600)
}

// said is one thing HAProxy said about a failure: text to match object ids
// and addresses in, and the message to show.
type said struct{ text, message string }

// alertText is what HAProxy said about a failed reload or start: its alerts
// when known (warnings name sections that are not at fault), else the error.
func alertText(err error) []said {
	var alerts []haproxy.Alert
	var re *haproxy.ReloadError
	var ce *haproxy.CheckError
	switch {
	case errors.As(err, &re):
		alerts = re.Alerts
	case errors.As(err, &ce):
		alerts = ce.Alerts
	}
	if len(alerts) == 0 {
		return []said{{err.Error(), err.Error()}}
	}
	out := make([]said, 0, len(alerts))
	for _, al := range alerts {
		out = append(out, said{al.String() + " " + al.Server, al.Message})
	}
	return out
}

// idRE matches object ids (a rule's ACLs are named <rule id>_c<n>).
var idRE = regexp.MustCompile(`\b(?:lsn|pool|mbr|rule)_[A-Za-z0-9]+`)

// culprits maps what HAProxy said to the changed load balancers it names:
// a listener (frontend), pool (backend) or member (server) id, or a bind
// address [ip:port] of a listener.
func (a *Agent) culprits(err error, p *plan) map[string]lbFailure {
	owner := map[string]string{} // object id → LB id
	binds := map[string]string{} // "[ip:port]" → listener id
	for id := range p.changed {
		lb := p.cands[id]
		for _, l := range lb.Listeners {
			owner[l.ID] = id
			ap := netip.AddrPortFrom(lb.VIP, uint16(l.Port))
			binds["["+ap.String()+"]"] = l.ID
			binds["["+lb.VIP.String()+":"+strconv.Itoa(l.Port)+"]"] = l.ID
			for _, r := range l.Rules {
				owner[r.ID] = id
			}
		}
		for _, pl := range lb.Pools {
			owner[pl.ID] = id
			for _, m := range pl.Members {
				owner[m.ID] = id
			}
		}
	}
	out := map[string]lbFailure{}
	for _, s := range alertText(err) {
		text := s.text
		for b, lsn := range binds {
			if strings.Contains(text, b) {
				if _, seen := out[owner[lsn]]; !seen {
					out[owner[lsn]] = lbFailure{Kind: failReload, Message: s.message, ObjectID: lsn, Field: "port"}
				}
			}
		}
		for _, obj := range idRE.FindAllString(text, -1) {
			lbID, ok := owner[obj]
			if !ok {
				continue
			}
			if _, seen := out[lbID]; !seen {
				f := lbFailure{Kind: failReload, Message: s.message, ObjectID: obj}
				if strings.Contains(text, "cannot bind") {
					f.Field = "port"
				}
				out[lbID] = f
			}
		}
	}
	return out
}

// renderErrorRE matches the renderer's "haproxy: <kind> <id>: <field>: …".
var renderErrorRE = regexp.MustCompile(`^haproxy: (?:listener|pool|rule|member) ((?:lsn|pool|rule|mbr)_[A-Za-z0-9]+): ([a-z_]+(?:\[\d+\])?(?:\.[a-z_]+(?:\[\d+\])?)*): `)

// objectOf names the object (and field, when known) a check error is about.
func objectOf(err error, lb haproxy.LoadBalancer) (string, string) {
	if m := renderErrorRE.FindStringSubmatch(err.Error()); m != nil {
		return m[1], m[2]
	}
	known := map[string]bool{}
	for _, l := range lb.Listeners {
		known[l.ID] = true
		for _, r := range l.Rules {
			known[r.ID] = true
		}
	}
	for _, pl := range lb.Pools {
		known[pl.ID] = true
		for _, m := range pl.Members {
			known[m.ID] = true
		}
	}
	for _, s := range alertText(err) {
		text := s.text
		// The most specific object named: a member over its pool.
		var best string
		for _, obj := range idRE.FindAllString(text, -1) {
			if known[obj] && (best == "" || strings.HasPrefix(obj, "mbr_") || strings.HasPrefix(obj, "rule_")) {
				best = obj
			}
		}
		if best != "" {
			field := ""
			if strings.Contains(text, "cannot bind") {
				field = "port"
			}
			return best, field
		}
	}
	return "", ""
}
