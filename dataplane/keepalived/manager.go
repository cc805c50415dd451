package keepalived

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/fulcrumlb/fulcrum/internal/atomicfile"
)

// Config configures a Manager.
type Config struct {
	// Binary is keepalived's path. Defaults to "keepalived".
	Binary string
	// Dir holds keepalived.conf, the pid files, the ready file and the log.
	Dir string
	// NodeName names the node (the VRRP router_id and the priority hash).
	NodeName string
	// Healthy says whether HAProxy serves (e.g. asks its stats socket).
	Healthy func(ctx context.Context) error
	// CheckInterval is how often Healthy is asked. Defaults to 100ms.
	CheckInterval time.Duration
	// Fall is how many failed checks in a row give the VIPs up. Defaults to 3.
	Fall int
	// Hold is how long HAProxy must answer again, after it gave the VIPs up,
	// before the node may hold VIPs again: the new owner settles first, so
	// the VIPs do not bounce. Defaults to 2s.
	Hold time.Duration
	// Settle is how long the node must have held an instance's VIPs before
	// it takes the holder bonus (see Render): longer than two nodes may be
	// master at once while a failover settles. Defaults to 1s.
	Settle time.Duration
	Logger *slog.Logger
}

// Admin states (the snapshot's node.admin_state) the manager acts on.
const (
	// AdminCordoned: keep the VIPs held, claim no other.
	AdminCordoned = "cordoned"
	// AdminDraining: give every VIP up (other nodes take them).
	AdminDraining = "draining"
)

// Manager renders keepalived's config, keeps keepalived running while the
// node group uses VRRP, and writes the ready file keepalived tracks.
type Manager struct {
	cfg Config
	log *slog.Logger

	mu        sync.Mutex
	settings  Settings
	vips      []netip.Addr
	instances []Instance // of want
	admin     string     // AdminCordoned, AdminDraining or "" (in service)
	applied   bool       // a snapshot was applied
	released  bool       // VIPs given up for good (stop)
	want      []byte
	// heldSince is when the node started holding each instance's VIPs;
	// hold is the value last written to each instance's hold file.
	heldSince map[string]time.Time
	hold      map[string]int
	// nodes are the group's nodes (SetGroupNodes); rank is the value last
	// written to each instance's rank file.
	nodes []string
	rank  map[string]int
	// nodesGen counts the changes of nodes; ranked holds each instance's
	// rank value (rankValue) computed for the nodes of generation
	// rankedGen, so the check loop (every 100 ms) hashes the group's nodes
	// only after they or the instance changed.
	nodesGen  uint64
	ranked    map[string]rankMemo
	rankedGen uint64
	// draining: the VIPs a drain or a stop parked on lo (true once added).
	draining map[netip.Addr]bool
	loSwept  bool          // VIPs an earlier agent parked on lo were looked for
	pid      int           // running keepalived (ours or adopted)
	done     chan struct{} // closed when our child exits; nil when adopted
	ready    string        // last value written to the ready file
	failures int
	fell     bool      // gave the VIPs up for failed checks; back after Hold
	okSince  time.Time // checks have passed since (while fell)
	kick     chan struct{}
}

// New builds a Manager; Run starts its loops.
func New(cfg Config) *Manager {
	if cfg.Binary == "" {
		cfg.Binary = "keepalived"
	}
	if cfg.CheckInterval == 0 {
		cfg.CheckInterval = 100 * time.Millisecond
	}
	if cfg.Fall == 0 {
		cfg.Fall = 3
	}
	if cfg.Hold == 0 {
		cfg.Hold = 2 * time.Second
	}
	if cfg.Settle == 0 {
		cfg.Settle = time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Manager{cfg: cfg, log: cfg.Logger.With("component", "keepalived"), kick: make(chan struct{}, 1),
		heldSince: map[string]time.Time{}, hold: map[string]int{}, rank: map[string]int{}}
}

func (m *Manager) path(name string) string { return filepath.Join(m.cfg.Dir, name) }

// ConfigPath is keepalived.conf.
func (m *Manager) ConfigPath() string { return m.path("keepalived.conf") }

// ReadyFile is the file keepalived tracks: "0" lets the node hold VIPs.
func (m *Manager) ReadyFile() string { return m.path("ready") }

// HoldFile is the file whose value keepalived adds to the priority of an
// instance (see Render).
func (m *Manager) HoldFile(instance string) string { return m.path(holdName(instance)) }

// RankFile is the file whose value keepalived adds to the priority of an
// instance to make it the node's RankedPriority (see Render).
func (m *Manager) RankFile(instance string) string { return m.path(rankName(instance)) }

// PIDFile is keepalived's parent pid file.
func (m *Manager) PIDFile() string { return m.path("keepalived.pid") }

// EnableNonlocalBind lets HAProxy bind VIPs the node does not hold yet (in the
// caller's network namespace), and makes the node answer ARP only for
// addresses on the interface asked (arp_ignore 1) and never announce a VIP it
// does not hold on it (arp_announce 2): a drained node keeps its VIPs on lo
// for the connections it still serves (see parkDrained) without drawing new
// ones.
func EnableNonlocalBind() error {
	var errs []error
	for _, s := range []struct{ file, val string }{
		{"/proc/sys/net/ipv4/ip_nonlocal_bind", "1"}, {"/proc/sys/net/ipv6/ip_nonlocal_bind", "1"},
		{"/proc/sys/net/ipv4/conf/all/arp_ignore", "1"}, {"/proc/sys/net/ipv4/conf/all/arp_announce", "2"},
	} {
		f := s.file
		if b, err := os.ReadFile(f); err == nil && strings.TrimSpace(string(b)) == s.val {
			continue
		}
		if err := os.WriteFile(f, []byte(s.val+"\n"), 0o644); err != nil {
			errs = append(errs, fmt.Errorf("keepalived: set %s: %w", f, err))
		}
	}
	return errors.Join(errs...)
}

// Update hands the manager the VRRP settings and VIPs of the snapshot just
// applied (nil settings: the group does not use VRRP; keepalived stops).
func (m *Manager) Update(s *Settings, vips []netip.Addr) {
	m.mu.Lock()
	m.applied = true
	if s == nil {
		m.settings, m.vips, m.want = Settings{}, nil, nil
	} else {
		m.settings, m.vips = *s, vips
		// The config depends on the VIPs alone, never on who holds them:
		// the holder's precedence lives in the hold files (see Render).
		m.instances = Instances(*s, m.cfg.NodeName, vips)
		if len(m.instances) == 0 {
			m.want = nil
		} else {
			m.want = Render(*s, m.cfg.NodeName, m.ReadyFile(), m.HoldFile, m.RankFile, m.instances)
		}
	}
	m.mu.Unlock()
	m.poke()
}

// SetGroupNodes hands the manager the names of the group's nodes (this one
// among them), from the snapshot: each instance's priority becomes the
// node's RankedPriority among them, through its rank file (no reload), so
// the nodes of a group never share a priority for a router id. With fewer
// than two, or without this node, the hashed Priority stays.
func (m *Manager) SetGroupNodes(nodes []string) {
	nodes = slices.Clone(nodes)
	slices.Sort(nodes)
	nodes = slices.Compact(nodes)
	m.mu.Lock()
	changed := !slices.Equal(m.nodes, nodes)
	if changed {
		m.nodes = nodes
		m.nodesGen++
	}
	m.mu.Unlock()
	if changed {
		m.log.Info("group nodes", "nodes", len(nodes))
		m.poke()
	}
}

// rankValue is what instance in's rank file holds: the difference between
// the node's ranked priority and the hashed one in the config.
func rankValue(node string, in Instance, nodes []string) int {
	if p := RankedPriority(node, in.RouterID, nodes); p > 0 {
		return p - in.Priority
	}
	return 0
}

func (m *Manager) poke() {
	select {
	case m.kick <- struct{}{}:
	default:
	}
}

// SetAdminState hands the manager the node's admin state from the snapshot:
// draining gives every VIP up (keepalived's FAULT: its priority-0 advert lets
// a backup take over at once, while HAProxy keeps serving the connections it
// has); cordoned keeps the VIPs held and claims no other (the instances it
// does not hold go to FAULT); anything else is in service.
func (m *Manager) SetAdminState(state string) {
	if state != AdminCordoned && state != AdminDraining {
		state = ""
	}
	m.mu.Lock()
	changed := m.admin != state
	m.admin = state
	m.mu.Unlock()
	if changed {
		m.log.Info("admin state", "admin_state", state)
		m.poke()
	}
}

// Release gives every VIP up for good (before a drain or a stop): the node
// stays in FAULT until the manager is rebuilt.
func (m *Manager) Release() {
	m.mu.Lock()
	m.released = true
	m.mu.Unlock()
	m.writeReady(false)
}

// Holding lists the VIPs this node holds now (on the VRRP interface).
func (m *Manager) Holding() []netip.Addr {
	m.mu.Lock()
	iface, vips := m.settings.Interface, m.vips
	m.mu.Unlock()
	return holding(iface, vips)
}

// holding lists which of vips are on iface.
func holding(iface string, vips []netip.Addr) []netip.Addr {
	if iface == "" {
		return nil
	}
	out, err := exec.Command("ip", "-o", "addr", "show", "dev", iface).Output()
	if err != nil {
		return nil
	}
	var held []netip.Addr
	for _, v := range vips {
		if bytes.Contains(out, []byte(" "+v.String()+"/")) {
			held = append(held, v)
		}
	}
	return held
}

// Run checks health and keeps keepalived's config and process in line until
// ctx ends; it leaves keepalived running (Stop gives the VIPs up and stops it).
func (m *Manager) Run(ctx context.Context) {
	if err := os.MkdirAll(m.cfg.Dir, 0o700); err != nil {
		m.log.Error("state dir", "err", err)
		return
	}
	m.adopt()
	t := time.NewTicker(m.cfg.CheckInterval)
	defer t.Stop()
	for {
		m.check(ctx)
		m.sync(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-m.kick:
		}
	}
}

// check asks Healthy and writes the ready file: ready once HAProxy answers and
// a snapshot is applied; not ready after Fall failures in a row.
func (m *Manager) check(ctx context.Context) {
	m.mu.Lock()
	idle := m.want == nil && m.pid == 0
	m.mu.Unlock()
	if idle {
		return // no VRRP here: nothing asks for the ready file
	}
	cctx, cancel := context.WithTimeout(ctx, max(m.cfg.CheckInterval*3, 300*time.Millisecond))
	err := m.cfg.Healthy(cctx)
	cancel()
	m.mu.Lock()
	now := time.Now()
	if err == nil {
		m.failures = 0
		if m.okSince.IsZero() {
			m.okSince = now
		}
	} else {
		m.failures++
		m.okSince = time.Time{}
	}
	if m.failures >= m.cfg.Fall {
		m.fell = true
	} else if m.fell && !m.okSince.IsZero() && now.Sub(m.okSince) >= m.cfg.Hold {
		m.fell = false
	}
	ready := m.applied && !m.released && !m.fell && m.admin != AdminDraining
	if !ready && err != nil && m.failures == m.cfg.Fall {
		m.log.Warn("HAProxy does not answer: giving VIPs up", "err", err)
	}
	iface, vips := m.settings.Interface, m.vips
	m.mu.Unlock()
	// What the node holds before the ready file changes: keepalived drops
	// the VIPs at once when it does, and a drain parks those it held.
	held := holding(iface, vips)
	m.parkDrained(held) // before the ready file: no moment without the address
	m.writeReady(ready)
	m.updateHolds(held)
}

// parkDrained keeps the connections a draining node serves alive after its
// VIPs moved: a VIP the node holds when it drains goes on lo as well, before
// keepalived takes it off the VRRP interface, so HAProxy can still send from
// it at every moment (a socket cannot send from an address the node no longer
// has; its peer would retransmit to the new owner, which resets it), while
// the node neither answers ARP for it on the LAN nor announces it (see
// EnableNonlocalBind), so new connections go to the new owner. The VIPs leave
// lo when the node returns to service, before it may claim VIPs again.
func (m *Manager) parkDrained(held []netip.Addr) {
	m.mu.Lock()
	iface, vips, draining := m.settings.Interface, m.vips, m.admin == AdminDraining && !m.released
	if m.draining == nil {
		m.draining = map[netip.Addr]bool{}
	}
	m.mu.Unlock()
	if iface == "" {
		return
	}
	if !draining {
		m.mu.Lock()
		parked, swept := m.draining, m.loSwept
		m.draining, m.loSwept = map[netip.Addr]bool{}, true
		m.mu.Unlock()
		for v, onLo := range parked {
			if onLo {
				m.addrOnLo("del", v)
			}
		}
		if !swept { // parked by an earlier agent, whose drain has ended
			for _, v := range holding("lo", vips) {
				if _, done := parked[v]; !done {
					m.addrOnLo("del", v)
				}
			}
		}
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, v := range held {
		if !m.draining[v] {
			m.addrOnLo("add", v)
			m.draining[v] = true
		}
	}
}

// addrOnLo adds or deletes vip on lo.
func (m *Manager) addrOnLo(op string, vip netip.Addr) {
	out, err := exec.Command("ip", "addr", op, netip.PrefixFrom(vip, vip.BitLen()).String(), "dev", "lo").CombinedOutput()
	if err != nil && !(op == "add" && bytes.Contains(out, []byte("exists"))) {
		m.log.Warn("VIP on lo", "op", op, "vip", vip, "err", err, "output", string(out))
		return
	}
	m.log.Info("VIP on lo for the connections of a drain", "op", op, "vip", vip)
}

// updateHolds writes each instance's hold file: HolderBonus once the node has
// held the instance's VIPs for Settle, FAULT for an instance a cordoned node
// does not hold, else 0.
func (m *Manager) updateHolds(held []netip.Addr) {
	m.mu.Lock()
	instances, admin, running, nodes, gen := m.instances, m.admin, m.pid != 0, m.nodes, m.nodesGen
	m.mu.Unlock()
	if !running || len(instances) == 0 {
		return
	}
	m.writeRanks(instances, nodes, gen)
	now := time.Now()
	for _, in := range instances {
		holds := false
		for _, v := range in.VIPs {
			if slices.Contains(held, v) {
				holds = true
			}
		}
		m.mu.Lock()
		val := holdNone
		switch {
		case holds:
			if m.heldSince[in.Name].IsZero() {
				m.heldSince[in.Name] = now
			}
			if now.Sub(m.heldSince[in.Name]) >= m.cfg.Settle {
				val = holdBonus
			}
		case admin == AdminCordoned:
			delete(m.heldSince, in.Name)
			val = holdFault
		default:
			delete(m.heldSince, in.Name)
		}
		cur, known := m.hold[in.Name]
		m.mu.Unlock()
		if known && cur == val {
			continue
		}
		m.writeHold(in.Name, val)
	}
}

func (m *Manager) writeHold(instance string, val int) {
	m.writeTracked("hold", m.HoldFile(instance), m.hold, instance, val)
}

// writeRanks writes each instance's rank file whose value (rankValue of
// this node among nodes, computed once per generation of nodes and
// instance) is not the one last written.
func (m *Manager) writeRanks(instances []Instance, nodes []string, gen uint64) {
	for _, in := range instances {
		m.mu.Lock()
		if m.ranked == nil || m.rankedGen != gen {
			m.ranked, m.rankedGen = map[string]rankMemo{}, gen
		}
		memo, ok := m.ranked[in.Name]
		m.mu.Unlock()
		val := memo.val
		if !ok || memo.routerID != in.RouterID || memo.priority != in.Priority {
			val = rankValue(m.cfg.NodeName, in, nodes)
			m.mu.Lock()
			if m.rankedGen == gen {
				m.ranked[in.Name] = rankMemo{routerID: in.RouterID, priority: in.Priority, val: val}
			}
			m.mu.Unlock()
		}
		m.mu.Lock()
		cur, known := m.rank[in.Name]
		m.mu.Unlock()
		if !known || cur != val {
			m.writeRank(in.Name, val)
		}
	}
}

// rankMemo is an instance's rank value for the router id and hashed
// priority it had.
type rankMemo struct {
	routerID, priority, val int
}

func (m *Manager) writeRank(instance string, val int) {
	m.writeTracked("rank", m.RankFile(instance), m.rank, instance, val)
}

// writeTracked writes val to one of the files keepalived tracks for instance
// (kind "hold" or "rank", at path) and records it in seen.
func (m *Manager) writeTracked(kind, path string, seen map[string]int, instance string, val int) {
	if err := atomicfile.Write(path, []byte(strconv.Itoa(val)+"\n"), 0o600); err != nil {
		m.log.Error("write "+kind+" file", "instance", instance, "err", err)
		return
	}
	m.mu.Lock()
	seen[instance] = val
	m.mu.Unlock()
	m.log.Info(kind+" file", "instance", instance, "value", val)
}

// ensureHolds creates the hold files keepalived is about to track (0) and
// reads those a running keepalived already tracks; and writes the rank
// files before keepalived reads them.
func (m *Manager) ensureHolds(reset bool) {
	m.mu.Lock()
	instances, nodes, gen := m.instances, m.nodes, m.nodesGen
	m.mu.Unlock()
	m.writeRanks(instances, nodes, gen)
	for _, in := range instances {
		b, err := os.ReadFile(m.HoldFile(in.Name))
		if err == nil && !reset {
			if v, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
				m.mu.Lock()
				if _, known := m.hold[in.Name]; !known {
					m.hold[in.Name] = v
					if v == holdBonus { // an adopted keepalived's holder keeps its bonus
						m.heldSince[in.Name] = time.Now().Add(-m.cfg.Settle)
					}
				}
				m.mu.Unlock()
				continue
			}
		}
		m.mu.Lock()
		delete(m.heldSince, in.Name)
		m.mu.Unlock()
		m.writeHold(in.Name, holdNone)
	}
}

func (m *Manager) writeReady(ready bool) {
	v := "1\n"
	if ready {
		v = "0\n"
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.ready == v {
		return
	}
	if err := atomicfile.Write(m.ReadyFile(), []byte(v), 0o600); err != nil {
		m.log.Error("write ready file", "err", err)
		return
	}
	m.ready = v
	m.log.Info("ready file", "ready", ready)
}

// sync writes the config when it changed and starts, reloads or stops
// keepalived to match.
func (m *Manager) sync(ctx context.Context) {
	m.mu.Lock()
	want, pid, done, applied := m.want, m.pid, m.done, m.applied
	m.mu.Unlock()
	if !applied {
		return // nothing to go by yet: leave an adopted keepalived alone
	}
	if pid != 0 && !m.alive(pid, done) {
		m.log.Warn("keepalived exited; restarting", "pid", pid)
		m.mu.Lock()
		m.pid, m.done = 0, nil
		m.mu.Unlock()
		pid = 0
		sleep(ctx, 200*time.Millisecond)
	}
	if want == nil {
		if pid != 0 {
			m.stop(5 * time.Second)
		}
		return
	}
	m.ensureHolds(pid == 0)
	cur, _ := os.ReadFile(m.ConfigPath())
	changed := !bytes.Equal(cur, want)
	if changed {
		if err := atomicfile.Write(m.ConfigPath(), want, 0o600); err != nil {
			m.log.Error("write keepalived.conf", "err", err)
			return
		}
	}
	if pid == 0 {
		if err := m.start(); err != nil {
			m.log.Error("start keepalived", "err", err)
		}
		return
	}
	if changed {
		if err := syscall.Kill(pid, syscall.SIGHUP); err != nil {
			m.log.Error("reload keepalived", "pid", pid, "err", err)
		} else {
			m.log.Info("reloaded keepalived", "pid", pid)
		}
	}
}

func (m *Manager) start() error {
	// A keepalived that died hard (kill -9) leaves its VIPs on the interface;
	// a fresh one must not start out holding them next to the new owner.
	m.mu.Lock()
	iface := m.settings.Interface
	m.mu.Unlock()
	for _, v := range m.Holding() {
		bits := 32
		if v.Is6() {
			bits = 128
		}
		if out, err := exec.Command("ip", "addr", "del", netip.PrefixFrom(v, bits).String(), "dev", iface).CombinedOutput(); err != nil {
			m.log.Warn("remove stale VIP", "vip", v, "err", err, "output", string(out))
		} else {
			m.log.Info("removed stale VIP left by a previous keepalived", "vip", v)
		}
	}
	logf, err := os.OpenFile(m.path("keepalived.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(m.cfg.Binary, "--dont-fork", "--vrrp", "--log-console", "--log-detail", "--no-syslog",
		"--use-file", m.ConfigPath(), "--pid", m.PIDFile(), "--vrrp_pid", m.path("vrrp.pid"), "--checkers_pid", m.path("checkers.pid"))
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own process group: a signal meant for the agent's group (a terminal's
	// ^C) does not drop the VIPs behind the agent's back.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("keepalived: %w", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	m.mu.Lock()
	m.pid, m.done = cmd.Process.Pid, done
	m.mu.Unlock()
	m.log.Info("started keepalived", "pid", cmd.Process.Pid, "config", m.ConfigPath())
	return nil
}

// adopt takes over a keepalived a previous agent left running with this
// manager's config (an agent restart keeps the VIPs where they are).
func (m *Manager) adopt() {
	b, err := os.ReadFile(m.PIDFile())
	if err != nil {
		return
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 || !m.ours(pid) {
		return
	}
	m.mu.Lock()
	m.pid, m.done = pid, nil
	m.mu.Unlock()
	m.log.Info("adopted running keepalived", "pid", pid)
}

// ours says whether pid is a keepalived running this manager's config.
func (m *Manager) ours(pid int) bool {
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return false
	}
	args := strings.Split(string(cmdline), "\x00")
	return len(args) > 0 && strings.Contains(filepath.Base(args[0]), "keepalived") && slices.Contains(args, m.ConfigPath())
}

func (m *Manager) alive(pid int, done chan struct{}) bool {
	if done != nil {
		select {
		case <-done:
			return false
		default:
			return true
		}
	}
	return m.ours(pid)
}

// Stop gives the VIPs up (FAULT, then keepalived's own priority-0 adverts on
// SIGTERM) and stops keepalived, waiting up to grace.
//
// The VIPs the node held go on lo meanwhile (as in a drain, see parkDrained),
// so HAProxy can finish the connections it has; Unpark takes them off once
// HAProxy has stopped.
func (m *Manager) Stop(grace time.Duration) {
	held := m.Holding()
	m.mu.Lock()
	if m.draining == nil {
		m.draining = map[netip.Addr]bool{}
	}
	for _, v := range held {
		if !m.draining[v] {
			m.addrOnLo("add", v)
			m.draining[v] = true
		}
	}
	m.mu.Unlock()
	m.Release()
	m.WaitReleased(grace)
	m.stop(grace)
}

// Unpark takes the VIPs a Stop or a drain put on lo off again.
func (m *Manager) Unpark() {
	m.mu.Lock()
	parked := m.draining
	m.draining = map[netip.Addr]bool{}
	m.mu.Unlock()
	for v, onLo := range parked {
		if onLo {
			m.addrOnLo("del", v)
		}
	}
}

// WaitReleased waits, up to d, until keepalived has taken this node's VIPs off
// its interface after a drain or Release, then two advert intervals more so a
// backup holds them before anything else on this node goes away. It reports
// whether the node holds none.
func (m *Manager) WaitReleased(d time.Duration) bool {
	m.mu.Lock()
	running, advert := m.pid != 0, time.Duration(m.settings.AdvertIntervalMS)*time.Millisecond
	m.mu.Unlock()
	if !running {
		return len(m.Holding()) == 0
	}
	deadline := time.Now().Add(d)
	for len(m.Holding()) > 0 {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(2 * advert)
	return true
}

func (m *Manager) stop(grace time.Duration) {
	m.mu.Lock()
	pid, done := m.pid, m.done
	m.pid, m.done = 0, nil
	m.mu.Unlock()
	if pid == 0 {
		return
	}
	_ = syscall.Kill(pid, syscall.SIGTERM)
	deadline := time.Now().Add(grace)
	for time.Now().Before(deadline) {
		if !m.alive(pid, done) {
			m.log.Info("stopped keepalived", "pid", pid)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
	m.log.Warn("keepalived did not stop in time; killed", "pid", pid)
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
