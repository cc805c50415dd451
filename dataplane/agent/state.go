package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/fulcrumlb/fulcrum/dataplane/haproxy"
	snapconv "github.com/fulcrumlb/fulcrum/dataplane/snapshot"
	"github.com/fulcrumlb/fulcrum/internal/atomicfile"
	"github.com/fulcrumlb/fulcrum/openapi"
)

// stateVersion marks the format of snapshot.json.
const stateVersion = 2

// diskState is what the agent keeps in snapshot.json so that a restart (or a
// reboot) serves exactly what was served before: the load balancers as
// HAProxy ran them (a load balancer held at its last good version stays at
// it), their errors, and the last snapshot applied — without private keys,
// which live only in their 0600 files under certs/.
type diskState struct {
	Version  int                    `json:"version"`
	Snapshot *openapi.Snapshot      `json:"snapshot"`
	Served   []haproxy.LoadBalancer `json:"served"`
	Errors   map[string]lbFailure   `json:"errors,omitempty"`
}

// stateChanged records that the state changed (an apply); a.mu held. While
// Run runs, snapshot.json is written by persistLoop, off the apply: a member
// change is live in HAProxy, and reported, without waiting for the state
// file (MBs at 1,000 load balancers) to be encoded, written and synced; the
// writes coalesce when applies come faster than they take. A crash before the
// write leaves the previous state on disk, which the next start serves and
// then converges from: it polls after the revision that state holds and
// applies what changed since (as after any restart). Without Run (tests
// calling Apply) it writes at once.
func (a *Agent) stateChanged() {
	a.stateDirty = true
	if a.persistAsync {
		select {
		case a.persist <- struct{}{}:
		default: // a write is due already; it takes this state
		}
		return
	}
	if err := a.writeStateLocked(); err != nil {
		a.stateWriteFailed(err)
	}
}

// stateWriteEvery is how long after a change of the state snapshot.json is
// written while Run runs: the changes within that time are one write of the
// newest state. At 1,000 load balancers the file is 9 MB; written at once
// after every member change it cost the process more CPU than the change
// itself (and the garbage collections of its buffers), right while the
// change took effect (written at once after a quiet spell, it still slowed
// the first change after it). A crash before the write leaves an older state,
// which the next start serves and then converges from (stateChanged).
const stateWriteEvery = time.Second

// persistLoop writes snapshot.json stateWriteEvery after the state changed,
// until ctx ends (Run's leave then writes what is left: flushState).
func (a *Agent) persistLoop(ctx context.Context) {
	wait := time.NewTimer(stateWriteEvery)
	wait.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-a.persist:
		}
		wait.Reset(stateWriteEvery)
		select {
		case <-ctx.Done():
			return
		case <-wait.C:
		}
		a.flushState()
	}
}

// flushState writes snapshot.json when the state changed since it was last
// written. The state is encoded under a.mu, the file written and synced
// outside it (applies go on meanwhile: a later one writes again).
func (a *Agent) flushState() {
	a.stateMu.Lock()
	defer a.stateMu.Unlock()
	a.mu.Lock()
	if !a.stateDirty {
		a.mu.Unlock()
		return
	}
	b, err := a.encodeStateInto(a.stateBuf)
	a.stateDirty = false
	a.mu.Unlock()
	if err == nil && b != nil {
		err = atomicfile.Write(a.path("snapshot.json"), b, 0o600)
		a.stateBuf = b // the next flushState's buffer (stateMu held)
	}
	if err != nil {
		a.mu.Lock()
		a.stateDirty = true // the retry's apply writes it again
		a.stateWriteFailed(err)
		a.mu.Unlock()
		a.notifyReport()
	}
}

// stateWriteFailed reports a failed write of snapshot.json as a disk error
// and has the apply retried (retryLoop); a.mu held.
func (a *Agent) stateWriteFailed(err error) {
	a.nodeErrors[openapi.Disk] = truncate("save state: "+err.Error(), 8000)
	a.retry = true
	a.log.Error("save state", "err", err)
}

// writeStateLocked writes the state at once; a.mu held.
func (a *Agent) writeStateLocked() error {
	b, err := a.encodeStateLocked()
	if err != nil || b == nil {
		return err
	}
	a.stateDirty = false
	return atomicfile.Write(a.path("snapshot.json"), b, 0o600)
}

// encodeStateLocked is the content of snapshot.json (nil when there is no
// state yet); a.mu held.
func (a *Agent) encodeStateLocked() ([]byte, error) { return a.encodeStateInto(nil) }

// encodeStateInto is encodeStateLocked written into buf when it is large
// enough (stateEncoder.encodeInto); a.mu held.
func (a *Agent) encodeStateInto(buf []byte) ([]byte, error) {
	if a.snap == nil || a.live == nil {
		return nil, nil
	}
	snap := *a.snap
	snap.Certificates = make([]openapi.SnapshotCertificate, len(a.snap.Certificates))
	for i, c := range a.snap.Certificates {
		c.PrivateKey = ""
		snap.Certificates[i] = c
	}
	return a.stateJSON.encodeInto(diskState{Version: stateVersion, Snapshot: &snap, Served: a.live.LoadBalancers, Errors: a.lbErrors}, buf)
}

// stateEncoder encodes diskState as json.Marshal does, byte for byte, but
// keeps each load balancer's encoding while it does not change — the
// snapshot's by the revision it last changed at, the served one by identity
// (haproxy.Identical) — so an apply that changes one load balancer among
// 1,000 encodes one, not the node's whole state (MBs). Not safe for
// concurrent use (a.mu).
type stateEncoder struct {
	snap   map[string]encodedSnapLB
	served map[string]encodedServedLB
}

type encodedSnapLB struct {
	revision int64
	json     []byte
}

type encodedServedLB struct {
	lb   haproxy.LoadBalancer
	json []byte
}

var lbsKey = []byte(`"load_balancers":[]`)

func (e *stateEncoder) encode(st diskState) ([]byte, error) { return e.encodeInto(st, nil) }

// encodeInto is encode written into buf (its content overwritten) when buf
// is large enough: flushState hands it the buffer of the file it wrote last
// (9 MB at 1,000 load balancers, allocated anew at every write before: the
// garbage collections of this process were most of the stalls of a member
// change).
func (e *stateEncoder) encodeInto(st diskState, buf []byte) ([]byte, error) {
	if st.Snapshot == nil || st.Snapshot.LoadBalancers == nil {
		return json.Marshal(st) // nothing to splice ("load_balancers":null)
	}
	snap := *st.Snapshot
	lbs := snap.LoadBalancers
	snap.LoadBalancers = []openapi.SnapshotLoadBalancer{}
	head, err := json.Marshal(snap)
	if err != nil {
		return nil, err
	}
	at := bytes.Index(head, lbsKey)
	if at < 0 || bytes.LastIndex(head, lbsKey) != at {
		return json.Marshal(st) // cannot happen: the key is the snapshot's own
	}
	// The rest of diskState, with Served (and the load balancers of the
	// snapshot) left out to be spliced in.
	rest, err := json.Marshal(struct {
		Errors map[string]lbFailure `json:"errors,omitempty"`
	}{st.Errors})
	if err != nil {
		return nil, err
	}
	snapLBs, err := e.snapshotLBs(lbs)
	if err != nil {
		return nil, err
	}
	served, err := e.servedLBs(st.Served)
	if err != nil {
		return nil, err
	}
	// One buffer of the exact size: at 1,000 load balancers the file is
	// MBs, written after every apply; growing buffers (and one per array)
	// would allocate it about three times over.
	size := len(head) + len(rest) + 64 + arrayLen(snapLBs) + arrayLen(served)
	if cap(buf) < size {
		buf = make([]byte, 0, size+size/16) // room for the next writes' growth
	}
	out := bytes.NewBuffer(buf[:0])
	fmt.Fprintf(out, `{"version":%d,"snapshot":`, st.Version)
	out.Write(head[:at+len(lbsKey)-2]) // up to the array's "["
	writeArray(out, snapLBs)
	out.Write(head[at+len(lbsKey):])
	out.WriteString(`,"served":`)
	if served == nil {
		out.WriteString("null")
	} else {
		writeArray(out, served)
	}
	if len(rest) > 2 { // "{}" without errors
		out.WriteByte(',')
		out.Write(rest[1:])
	} else {
		out.WriteByte('}')
	}
	return out.Bytes(), nil
}

// arrayLen is the length of the JSON array of elems.
func arrayLen(elems [][]byte) int {
	n := 2 + max(len(elems)-1, 0)
	for _, e := range elems {
		n += len(e)
	}
	return n
}

// writeArray writes the JSON array of elems.
func writeArray(out *bytes.Buffer, elems [][]byte) {
	out.WriteByte('[')
	for i, e := range elems {
		if i > 0 {
			out.WriteByte(',')
		}
		out.Write(e)
	}
	out.WriteByte(']')
}

// snapshotLBs encodes each of lbs (the elements of their JSON array).
func (e *stateEncoder) snapshotLBs(lbs []openapi.SnapshotLoadBalancer) ([][]byte, error) {
	next := make(map[string]encodedSnapLB, len(lbs))
	out := make([][]byte, 0, len(lbs))
	for i := range lbs {
		sl := &lbs[i]
		id := sl.LoadBalancer.Id
		enc, ok := e.snap[id]
		if !ok || sl.Revision == 0 || enc.revision != sl.Revision {
			b, err := json.Marshal(sl)
			if err != nil {
				return nil, err
			}
			enc = encodedSnapLB{revision: sl.Revision, json: b}
		}
		if sl.Revision > 0 {
			next[id] = enc
		}
		out = append(out, enc.json)
	}
	e.snap = next
	return out, nil
}

// servedLBs encodes each of lbs (the elements of their JSON array; nil for
// none, which json.Marshal writes "null").
func (e *stateEncoder) servedLBs(lbs []haproxy.LoadBalancer) ([][]byte, error) {
	if lbs == nil {
		return nil, nil
	}
	next := make(map[string]encodedServedLB, len(lbs))
	out := make([][]byte, 0, len(lbs))
	for _, lb := range lbs {
		enc, ok := e.served[lb.ID]
		if !ok || !haproxy.Identical(enc.lb, lb) {
			b, err := json.Marshal(lb)
			if err != nil {
				return nil, err
			}
			enc = encodedServedLB{lb: lb, json: b}
		}
		next[lb.ID] = enc
		out = append(out, enc.json)
	}
	e.served = next
	return out, nil
}

// loadState reads snapshot.json. A file of an older agent (a bare snapshot)
// comes back with Version 0 and no Served.
func (a *Agent) loadState() (*diskState, error) {
	b, err := os.ReadFile(a.path("snapshot.json"))
	if err != nil {
		return nil, err
	}
	var st diskState
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("decode %s: %w", a.path("snapshot.json"), err)
	}
	if st.Version == 0 {
		var snap openapi.Snapshot
		if err := json.Unmarshal(b, &snap); err != nil {
			return nil, fmt.Errorf("decode %s: %w", a.path("snapshot.json"), err)
		}
		return &diskState{Snapshot: &snap}, nil
	}
	if st.Snapshot == nil {
		return nil, fmt.Errorf("%s holds no snapshot", a.path("snapshot.json"))
	}
	// Keys come back from their files.
	for i, c := range st.Snapshot.Certificates {
		if c.PrivateKey != "" {
			continue
		}
		if bundle, err := os.ReadFile(a.certFile(c.Id)); err == nil {
			st.Snapshot.Certificates[i].PrivateKey = keyOf(bundle)
		}
	}
	return &st, nil
}

// restore loads what HAProxy served before this start: the load balancers
// exactly as they ran (kept at their last good version where they were),
// their errors and the last snapshot. Without a usable file it is an empty
// configuration; an older agent's file (a bare snapshot) is converted.
func (a *Agent) restore() haproxy.Config {
	cfg := haproxy.Config{Global: a.global()}
	st, err := a.loadState()
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			a.log.Error("read last state; starting empty", "err", err)
		}
		return cfg
	}
	cfg.Global = a.globalFor(st.Snapshot)
	if st.Version == 0 {
		c, err := snapconv.ToConfig(st.Snapshot, cfg.Global, a.certFile)
		if err != nil {
			a.log.Error("last snapshot on disk cannot be served; starting empty", "err", err)
			return cfg
		}
		cfg = c
		for _, lb := range c.LoadBalancers {
			if len(lb.Listeners) == 0 {
				cfg = withLB(cfg, lb.ID, nil) // serves nothing (see applyLocked)
			}
		}
	} else {
		cfg.LoadBalancers = st.Served
	}
	a.mu.Lock()
	a.snap = st.Snapshot
	a.parked = parkedMembers(st.Snapshot)
	if st.Errors != nil {
		a.lbErrors = st.Errors
	}
	a.mu.Unlock()
	a.log.Info("serving the last state from disk", "revision", st.Snapshot.Revision, "load_balancers", len(cfg.LoadBalancers), "errors", len(st.Errors))
	return cfg
}

// startServing starts HAProxy on cfg. When it does not start, the load
// balancers it names (or all, failing that) are left out with an error and
// it starts on the rest; failing even empty, the node reports haproxy_start.
func (a *Agent) startServing(ctx context.Context, cfg haproxy.Config) error {
	if a.runsNewer(cfg) {
		// An agent killed after a change reached HAProxy but before the
		// state on disk took it (written a second later, state.go) left
		// HAProxy serving more than cfg: reloaded onto cfg, it would drop
		// what that change brought (a new listener refusing connections)
		// until the API is reached again. Taken over as it runs, it serves
		// on; the first snapshot applied reloads it (liveUnsure).
		adopted, err := a.proc.TakeOver(ctx)
		if err != nil && ctx.Err() != nil {
			return err
		}
		if adopted {
			a.log.Warn("the haproxy taken over runs a newer configuration than the state on disk; it serves it until the next apply reloads it",
				"revision_on_disk", a.snapRevision())
			a.mu.Lock()
			a.live = &cfg
			a.liveUnsure = true
			a.markCertificatesLoaded(cfg)
			delete(a.nodeErrors, openapi.HaproxyStart)
			a.mu.Unlock()
			return nil
		}
		if err != nil {
			a.log.Warn("could not take over the running haproxy as it runs", "err", err)
		}
	}
	var lastErr error
	for attempt := 0; attempt < 4; attempt++ {
		if err := ctx.Err(); err != nil {
			return err // stopping: do not replace the config a running HAProxy may reload
		}
		text, err := haproxy.Render(cfg)
		if err != nil {
			a.log.Error("render the last state; starting empty", "err", err)
			cfg.LoadBalancers = nil
			continue
		}
		if err := atomicfile.Write(a.path("haproxy.cfg"), text, 0o600); err != nil {
			a.setStartError(openapi.Disk, err)
			return fmt.Errorf("agent: write haproxy.cfg: %w", err)
		}
		err = a.proc.Start(ctx)
		if err != nil && a.proc.Running() {
			// A master taken over that refused the reload serves what it had.
			a.log.Error("took over the running haproxy, but it did not reload", "err", err)
			err = nil
		}
		if err == nil {
			a.mu.Lock()
			a.live = &cfg
			a.markCertificatesLoaded(cfg)
			delete(a.nodeErrors, openapi.HaproxyStart)
			a.mu.Unlock()
			return nil
		}
		lastErr = err
		if ctx.Err() != nil || len(cfg.LoadBalancers) == 0 {
			break
		}
		p := &plan{cfg: cfg, prev: map[string]haproxy.LoadBalancer{}, cands: map[string]haproxy.LoadBalancer{},
			changed: map[string]bool{}, errs: map[string]lbFailure{}}
		for _, lb := range cfg.LoadBalancers {
			p.cands[lb.ID], p.changed[lb.ID] = lb, true
		}
		culprits := a.culprits(err, p)
		if len(culprits) == 0 || attempt == 2 {
			culprits = map[string]lbFailure{}
			for _, lb := range cfg.LoadBalancers {
				culprits[lb.ID] = lbFailure{Message: err.Error()}
			}
		}
		a.mu.Lock()
		for id, f := range culprits {
			f.Kind = failStart
			if strings.Contains(f.Message, "cannot bind") {
				f.Kind = failBind
			}
			f.Candidate = fingerprint(p.cands[id])
			a.lbErrors[id] = f
			cfg = withLB(cfg, id, nil)
			a.log.Error("haproxy did not start with a load balancer; leaving it out", "load_balancer", id, "err", f.Message)
		}
		a.retry = true
		a.mu.Unlock()
	}
	a.setStartError(openapi.HaproxyStart, lastErr)
	a.reportOnce(ctx)
	return fmt.Errorf("agent: start haproxy: %w", lastErr)
}

// runsNewer reports whether haproxy.cfg, what a running HAProxy last
// loaded (every reload writes it first, a change through the runtime API
// right after), holds more than cfg, the state restored from disk: it is
// not cfg's text and was written after snapshot.json (which follows every
// change, a second later). A snapshot.json written last holds what runs —
// the file differs then only by how an older agent rendered it (an upgrade),
// and the start reloads onto cfg as always. Without a running HAProxy the
// file is not used: after a crash of the machine it may be incomplete (it
// is not synced); snapshot.json is what survives.
func (a *Agent) runsNewer(cfg haproxy.Config) bool {
	running, err := os.ReadFile(a.path("haproxy.cfg"))
	if err != nil || len(running) == 0 {
		return false
	}
	text, err := haproxy.Render(cfg)
	if err != nil || bytes.Equal(text, running) {
		return false
	}
	fileInfo, err := os.Stat(a.path("haproxy.cfg"))
	if err != nil {
		return false
	}
	if st, err := os.Stat(a.path("snapshot.json")); err == nil && st.ModTime().After(fileInfo.ModTime()) {
		return false
	}
	return true
}

// snapRevision is the revision of the snapshot held (0: none).
func (a *Agent) snapRevision() int64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.snap == nil {
		return 0
	}
	return a.snap.Revision
}

func (a *Agent) setStartError(kind openapi.NodeErrorKind, err error) {
	a.mu.Lock()
	a.nodeErrors[kind] = truncate(err.Error(), 8000)
	a.mu.Unlock()
}
