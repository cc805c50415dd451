package haproxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ProcessConfig configures a Process. Only ConfigPath and Dir are required.
type ProcessConfig struct {
	// Binary is the HAProxy executable; default "haproxy" (looked up in PATH).
	Binary string
	// ConfigPath is the live configuration file (made absolute: the master
	// re-reads it on every reload).
	ConfigPath string
	// Dir is the runtime directory: master.sock (master CLI) and haproxy.pid.
	// Created if missing. Unix socket paths are limited to ~100 bytes.
	Dir string
	// Logger receives HAProxy's stdout/stderr line by line ([ALERT] at Error,
	// [WARNING] at Warn, everything else at Info) and the supervisor's own
	// events. Default slog.Default().
	Logger *slog.Logger

	// StartTimeout bounds Start when its ctx has no deadline. Default 30s.
	StartTimeout time.Duration
	// ReloadTimeout bounds Reload when its ctx has no deadline. Default 30s.
	ReloadTimeout time.Duration
	// StopTimeout is how long Stop lets a soft stop (SIGUSR1) drain
	// connections before it sends SIGTERM, then SIGKILL. Default 10s.
	StopTimeout time.Duration
	// A master that dies is restarted at once. Only a crash loop — more than
	// CrashLoopRestarts masters in a row dying (or failing to start) within
	// HealthyAfter of their start — waits: RestartBackoff, doubling up to
	// MaxRestartBackoff. A master that lived HealthyAfter resets the count.
	// Defaults 3, 3s, 500ms and 30s.
	CrashLoopRestarts                 int
	HealthyAfter                      time.Duration
	RestartBackoff, MaxRestartBackoff time.Duration
}

// Worker is one HAProxy worker process as the master's `show proc` lists it.
type Worker struct {
	PID int
	// Reloads is how many reloads the worker has survived (0 for a worker
	// forked by the latest successful reload).
	Reloads int
	Uptime  string // as HAProxy prints it, e.g. "0d00h01m07s"
	Version string
	// Old is set for workers of previous generations that are still
	// finishing their connections ("# old workers").
	Old bool
}

// ErrNotRunning is returned by Reload and MasterCommand when no master runs.
var ErrNotRunning = errors.New("haproxy: master process is not running")

// ReloadError is a reload HAProxy refused (the new configuration did not load
// or its listeners could not be bound). The previous workers keep serving the
// previous configuration.
type ReloadError struct {
	Reason string
	// Alerts are the [ALERT] lines the master printed for this reload.
	Alerts []Alert
	// Output is what the master printed for this reload.
	Output string
}

func (e *ReloadError) Error() string {
	var b strings.Builder
	b.WriteString("haproxy: reload failed, previous workers keep serving: ")
	b.WriteString(e.Reason)
	for i, a := range e.Alerts {
		if i == 5 {
			fmt.Fprintf(&b, "; and %d more", len(e.Alerts)-5)
			break
		}
		b.WriteString("; ")
		b.WriteString(a.String())
	}
	return b.String()
}

// Process supervises one HAProxy master-worker instance, run in its own
// process group (a Ctrl-C in the agent's terminal reaches the agent only) and
// printing to <dir>/haproxy.log, so that it outlives the agent: Release
// leaves it serving, and the next Process on the same directory takes it over
// (see process_takeover.go) instead of starting another one.
//
// All methods are safe for concurrent use; Start, Reload, Stop, Release and
// Supervise's restarts are serialized.
type Process struct {
	cfg        ProcessConfig
	log        *slog.Logger
	binary     string
	configPath string
	dir        string
	masterSock string
	pidFile    string
	logFile    string

	op sync.Mutex // serializes Start, Reload, Stop, Release and restarts

	mu        sync.Mutex
	cur       *master // current master; nil when none
	ready     bool    // cur passed its start checks
	startedAt time.Time
	exitedAt  time.Time
	want      bool          // Started and not Stopped: Supervise keeps it up
	changed   chan struct{} // closed and replaced on every state change
	exitErr   error         // how the last master ended
	tailing   bool          // the output file is followed

	out  *outputRing
	tail *outputTail
}

// master is one HAProxy master process: our child, or adopted.
type master struct {
	pid     int
	cmd     *exec.Cmd     // nil for an adopted master (not our child)
	done    chan struct{} // closed when it has exited
	unwatch chan struct{} // adopted only: closed by stopWatching
	once    sync.Once
}

// stopWatching ends the watch of an adopted master (a no-op for a child).
func (m *master) stopWatching() {
	if m.unwatch != nil {
		m.once.Do(func() { close(m.unwatch) })
	}
}

// NewProcess returns a supervisor; nothing runs until Start.
func NewProcess(cfg ProcessConfig) *Process {
	if cfg.Binary == "" {
		cfg.Binary = "haproxy"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.StartTimeout <= 0 {
		cfg.StartTimeout = 30 * time.Second
	}
	if cfg.ReloadTimeout <= 0 {
		cfg.ReloadTimeout = 30 * time.Second
	}
	if cfg.StopTimeout <= 0 {
		cfg.StopTimeout = 10 * time.Second
	}
	if cfg.RestartBackoff <= 0 {
		cfg.RestartBackoff = 500 * time.Millisecond
	}
	if cfg.MaxRestartBackoff <= 0 {
		cfg.MaxRestartBackoff = 30 * time.Second
	}
	if cfg.CrashLoopRestarts <= 0 {
		cfg.CrashLoopRestarts = 3
	}
	if cfg.HealthyAfter <= 0 {
		cfg.HealthyAfter = 3 * time.Second
	}
	cfg.MaxRestartBackoff = max(cfg.MaxRestartBackoff, cfg.RestartBackoff)
	p := &Process{
		cfg:        cfg,
		log:        cfg.Logger.With("component", "haproxy"),
		binary:     cfg.Binary,
		configPath: absPath(cfg.ConfigPath),
		dir:        absPath(cfg.Dir),
		changed:    make(chan struct{}),
		out:        newOutputRing(400),
	}
	p.masterSock = filepath.Join(p.dir, "master.sock")
	p.pidFile = filepath.Join(p.dir, "haproxy.pid")
	p.logFile = filepath.Join(p.dir, "haproxy.log")
	p.tail = newOutputTail(p.logFile, p.log, p.out)
	return p
}

func absPath(p string) string {
	if p == "" {
		return ""
	}
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}

// MasterSocket is the master CLI socket path.
func (p *Process) MasterSocket() string { return p.masterSock }

// PIDFile is the pid file HAProxy writes (the master's pid).
func (p *Process) PIDFile() string { return p.pidFile }

// PID is the master's pid, 0 when it is not running (or still starting).
func (p *Process) PID() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cur == nil || !p.ready {
		return 0
	}
	return p.cur.pid
}

// Running reports whether a master started or taken over by this Process is
// alive and came up (its start checks passed).
func (p *Process) Running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cur != nil && p.ready
}

// broadcastLocked wakes everything waiting for a state change; p.mu held.
func (p *Process) broadcastLocked() {
	close(p.changed)
	p.changed = make(chan struct{})
}

// Start brings HAProxy up: it takes over a master of an earlier run that
// answers on our master socket (reloading it with the current configuration),
// or starts `haproxy -W -db -S <dir>/master.sock,level,admin -f <config> -p
// <dir>/haproxy.pid` and waits until the master CLI answers and a worker is up
// and answering. Every other HAProxy of this configuration is stopped. It is a
// no-op when the master already runs. On failure the error carries HAProxy's
// alerts and nothing of ours is left running — except a master taken over
// whose reload failed: it keeps serving what it had (Running reports true).
func (p *Process) Start(ctx context.Context) error {
	p.op.Lock()
	defer p.op.Unlock()
	return p.start(ctx)
}

func (p *Process) start(ctx context.Context) error {
	p.mu.Lock()
	running := p.cur != nil
	p.mu.Unlock()
	if running {
		return nil
	}
	if p.configPath == "" || p.dir == "" {
		return errors.New("haproxy: ProcessConfig.ConfigPath and Dir are required")
	}
	// sockaddr_un holds 108 bytes; HAProxy binds "<path>.<pid>.tmp" first.
	if len(p.masterSock)+16 > 107 {
		return fmt.Errorf("haproxy: runtime dir %q is too long for a unix socket path", p.dir)
	}
	if _, err := os.Stat(p.configPath); err != nil {
		return fmt.Errorf("haproxy: config: %w", err)
	}
	if err := os.MkdirAll(p.dir, 0o750); err != nil {
		return fmt.Errorf("haproxy: runtime dir: %w", err)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, p.cfg.StartTimeout)
		defer cancel()
	}
	p.mu.Lock()
	if !p.tailing {
		p.tailing = true
		p.tail.skipToEnd()
		p.tail.follow()
	}
	p.mu.Unlock()

	procs := p.scanOurs()
	others := roots(procs)
	adopted := 0
	if pid := p.socketMaster(ctx); pid > 0 && slices.Contains(others, pid) {
		if err := p.adopt(ctx, pid); err != nil {
			p.log.Warn("could not take over the running haproxy; starting a new one", "old_master_pid", pid, "err", err)
			procs = p.scanOurs() // it may have forked a worker meanwhile
			others = roots(procs)
		} else {
			adopted = pid
			p.log.Info("took over the running haproxy", "master_pid", pid)
		}
	}
	if ctx.Err() != nil {
		return fmt.Errorf("haproxy: start: %w", ctx.Err())
	}
	others = slices.DeleteFunc(others, func(pid int) bool { return pid == adopted || !processAlive(pid) })
	if adopted == 0 {
		// Masters still starting could bind our master socket after ours:
		// kill them now. Serving ones keep serving until ours does.
		var starting []int
		for _, pid := range others {
			if !hasChild(procs, pid) {
				starting = append(starting, pid)
			}
		}
		if len(starting) > 0 {
			p.stopStale(starting, procs)
		}
		others = slices.DeleteFunc(others, func(pid int) bool { return !processAlive(pid) })
		if len(others) > 0 {
			p.log.Warn("haproxy of an earlier run is still running; starting ours next to it", "old_pids", others)
		}
		err := p.launch(ctx)
		if err != nil && len(others) > 0 && ctx.Err() == nil && bindConflict(err) {
			p.log.Warn("could not start next to the earlier haproxy; stopping it first", "old_pids", others, "err", err)
			p.stopStale(others, procs)
			others = nil
			err = p.launch(ctx)
		}
		if err != nil {
			return err
		}
	}
	p.mu.Lock()
	p.want = true
	p.broadcastLocked()
	p.mu.Unlock()
	if len(others) > 0 {
		p.log.Warn("stopping stale haproxy processes of this state dir", "stale_pids", others)
		go p.stopStale(others, procs)
	}
	if adopted > 0 {
		if err := p.reload(ctx); err != nil {
			return fmt.Errorf("haproxy: took over master %d, but it did not reload: %w", adopted, err)
		}
	}
	return nil
}

// launch starts one master and waits for it to be ready; p.op held.
func (p *Process) launch(ctx context.Context) error {
	w, err := p.tail.openForWrite()
	if err != nil {
		return fmt.Errorf("haproxy: output file: %w", err)
	}
	cmd := exec.Command(p.binary,
		"-W", "-db",
		"-S", p.masterSock+",level,admin",
		"-f", p.configPath,
		"-p", p.pidFile)
	cmd.Stdout = w
	cmd.Stderr = w
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	seq := p.outputSeq()
	err = cmd.Start()
	w.Close() // the master and its workers hold their own copy
	if err != nil {
		return fmt.Errorf("haproxy: start: %w", err)
	}
	pid := cmd.Process.Pid
	m := &master{pid: pid, cmd: cmd, done: make(chan struct{})}
	p.mu.Lock()
	p.cur = m
	p.ready = false
	p.startedAt = time.Now()
	p.exitErr = nil
	p.broadcastLocked()
	p.mu.Unlock()
	go func() { p.exited(m, cmd.Wait()) }()

	p.log.Info("haproxy master started", "pid", pid, "config", p.configPath)
	if err := p.waitReady(ctx, pid, m.done); err != nil {
		p.kill(m)
		alerts, out := p.outputSince(seq, "")
		return &startError{err: err, alerts: alerts, output: out}
	}
	p.mu.Lock()
	if p.cur == m {
		p.ready = true
		p.broadcastLocked()
	}
	p.mu.Unlock()
	return nil
}

// bindConflict reports whether a start failed on listeners it could not bind
// (the previous instance may hold them without SO_REUSEPORT). Any other
// failure (a broken configuration) leaves the previous instance serving.
func bindConflict(err error) bool {
	var se *startError
	if !errors.As(err, &se) {
		return false
	}
	for _, a := range se.alerts {
		if strings.Contains(a.Message, "cannot bind") || strings.Contains(a.Message, "Address already in use") {
			return true
		}
	}
	return false
}

// startError is a master that did not come up.
type startError struct {
	err    error
	alerts []Alert
	output string
}

func (e *startError) Error() string {
	var b strings.Builder
	b.WriteString("haproxy: start: ")
	b.WriteString(e.err.Error())
	for i, a := range e.alerts {
		if i == 5 {
			break
		}
		b.WriteString("; ")
		b.WriteString(a.String())
	}
	return b.String()
}

func (e *startError) Unwrap() error { return e.err }

// exited records the end of master m (err: how it ended).
func (p *Process) exited(m *master, err error) {
	p.mu.Lock()
	unexpected := p.want && p.cur == m
	if p.cur == m {
		p.cur = nil
		p.ready = false
		p.exitErr = err
		p.exitedAt = time.Now()
	}
	p.broadcastLocked()
	p.mu.Unlock()
	close(m.done)
	if unexpected {
		p.log.Error("haproxy master exited unexpectedly", "pid", m.pid, "status", exitStatus(err))
	} else {
		p.log.Info("haproxy master exited", "pid", m.pid, "status", exitStatus(err))
	}
}

func exitStatus(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}

// waitReady polls the master CLI until it is the master pid's and lists a
// current worker that answers its own CLI.
func (p *Process) waitReady(ctx context.Context, pid int, done <-chan struct{}) error {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		select {
		case <-done:
			p.mu.Lock()
			err := p.exitErr
			p.mu.Unlock()
			return fmt.Errorf("master exited during start (%s)", exitStatus(err))
		default:
		}
		st, err := p.showProc(ctx)
		switch {
		case err != nil:
			last = err
		case st.MasterPID != pid:
			last = fmt.Errorf("master socket answered by pid %d, not %d", st.MasterPID, pid)
		default:
			cur := st.current()
			if len(cur) == 0 {
				last = errors.New("no worker yet")
				break
			}
			if err := p.workerAnswers(ctx, cur[0].PID); err != nil {
				last = err
				break
			}
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not ready: %w (last: %v)", ctx.Err(), last)
		case <-done:
		case <-tick.C:
		}
	}
}

// workerAnswers asks worker pid for `show info` through the master.
func (p *Process) workerAnswers(ctx context.Context, pid int) error {
	ctx, cancel := context.WithTimeout(ctx, pollTimeout)
	defer cancel()
	out, err := cliExchange(ctx, p.masterSock, "@!"+strconv.Itoa(pid)+" show info")
	if err != nil {
		return err
	}
	if !strings.Contains(out, "\nPid: "+strconv.Itoa(pid)+"\n") {
		return fmt.Errorf("worker %d does not answer yet: %q", pid, firstLine(out))
	}
	return nil
}

// kill ends a master that failed to come up: SIGKILL to its process group.
func (p *Process) kill(m *master) {
	select {
	case <-m.done:
		return
	default:
	}
	if pgid, err := syscall.Getpgid(m.pid); err == nil && pgid == m.pid {
		_ = syscall.Kill(-m.pid, syscall.SIGKILL)
	}
	_ = syscall.Kill(m.pid, syscall.SIGKILL)
	select {
	case <-m.done:
	case <-time.After(5 * time.Second):
		p.log.Error("haproxy master did not exit after SIGKILL", "pid", m.pid)
	}
}

// Reload reloads hitlessly through the master CLI `reload` command and
// verifies the outcome with `show proc`: the master's reload counter must
// move, its failed-reload counter must be 0, and a worker that was not
// there before must be listed and answer its CLI. If HAProxy refused the
// new configuration it returns *ReloadError (with the master's alerts) and
// the previous workers keep serving.
func (p *Process) Reload(ctx context.Context) error {
	p.op.Lock()
	defer p.op.Unlock()
	return p.reload(ctx)
}

func (p *Process) reload(ctx context.Context) error {
	p.mu.Lock()
	m, ready := p.cur, p.ready
	p.mu.Unlock()
	if m == nil || !ready {
		return ErrNotRunning
	}
	pid, done := m.pid, m.done
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, p.cfg.ReloadTimeout)
		defer cancel()
	}
	before, err := p.showProc(ctx)
	if err != nil {
		return fmt.Errorf("haproxy: reload: master CLI: %w", err)
	}
	if before.MasterPID != pid {
		return fmt.Errorf("haproxy: reload: master socket answered by pid %d, not %d", before.MasterPID, pid)
	}
	known := map[int]bool{}
	for _, w := range before.Workers {
		known[w.PID] = true
	}
	seq := p.outputSeq()
	if err := sendReload(ctx, p.masterSock); err != nil {
		return fmt.Errorf("haproxy: reload: %w", err)
	}

	tick := time.NewTicker(10 * time.Millisecond) // the CLI answers fast; a finer poll confirms reloads sooner
	defer tick.Stop()
	var last error = errors.New("reload not seen yet")
	for {
		select {
		case <-done:
			return fmt.Errorf("haproxy: master exited during reload")
		case <-ctx.Done():
			return fmt.Errorf("haproxy: reload not confirmed: %w (last: %v)", ctx.Err(), last)
		case <-tick.C:
		}
		st, err := p.showProc(ctx)
		if err != nil {
			last = err // the master re-executes itself; its CLI is briefly away
			continue
		}
		if st.Reloads <= before.Reloads {
			last = errors.New("master has not reloaded yet")
			continue
		}
		if st.FailedReloads > 0 {
			alerts, out := p.outputSince(seq, "Loading failure")
			return &ReloadError{Reason: "the master could not load the configuration", Alerts: alerts, Output: out}
		}
		var fresh *Worker
		for _, w := range st.current() {
			if !known[w.PID] {
				fresh = &w
				break
			}
		}
		if fresh == nil {
			last = errors.New("no new worker listed yet")
			continue
		}
		if err := p.workerAnswers(ctx, fresh.PID); err != nil {
			last = err
			continue
		}
		p.log.Info("haproxy reloaded", "master_pid", pid, "worker_pid", fresh.PID,
			"reloads", st.Reloads, "old_workers", len(st.Workers)-len(st.current()))
		return nil
	}
}

// sendReload delivers `reload`; the master closes the connection when it
// re-executes, so nothing useful is read back (HAProxy 2.6 prints nothing).
func sendReload(ctx context.Context, socket string) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", socket)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(conn, "reload\n"); err != nil {
		return err
	}
	if uc, ok := conn.(*net.UnixConn); ok {
		_ = uc.CloseWrite()
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(conn, 1<<20))
	return nil
}

// Stop stops HAProxy gracefully: SIGUSR1 to the master (soft stop: listeners
// close, established connections finish), then after StopTimeout (or when
// ctx ends) SIGTERM (hard stop), then SIGKILL to the process group. Supervise
// does not restart a stopped process.
func (p *Process) Stop(ctx context.Context) error {
	p.op.Lock()
	defer p.op.Unlock()
	p.mu.Lock()
	p.want = false
	p.broadcastLocked()
	m := p.cur
	p.mu.Unlock()
	defer p.stopTailing()
	if m == nil {
		return nil
	}
	pid, done := m.pid, m.done
	p.log.Info("stopping haproxy", "pid", pid)
	waitFor := func(d time.Duration, honourCtx bool) bool {
		t := time.NewTimer(d)
		defer t.Stop()
		var ctxDone <-chan struct{}
		if honourCtx {
			ctxDone = ctx.Done()
		}
		select {
		case <-done:
			return true
		case <-t.C:
		case <-ctxDone:
		}
		return false
	}
	_ = syscall.Kill(pid, syscall.SIGUSR1)
	if !waitFor(p.cfg.StopTimeout, true) {
		p.log.Warn("haproxy did not finish its soft stop; hard-stopping", "pid", pid)
		_ = syscall.Kill(pid, syscall.SIGTERM)
		if !waitFor(2*time.Second, false) {
			p.log.Warn("haproxy did not exit after SIGTERM; killing", "pid", pid)
			if pgid, err := syscall.Getpgid(pid); err == nil && pgid == pid {
				_ = syscall.Kill(-pid, syscall.SIGKILL)
			}
			_ = syscall.Kill(pid, syscall.SIGKILL)
			if !waitFor(5*time.Second, false) {
				return fmt.Errorf("haproxy: master %d did not exit after SIGKILL", pid)
			}
		}
	}
	if b, err := os.ReadFile(p.pidFile); err == nil && strings.TrimSpace(string(b)) == strconv.Itoa(pid) {
		_ = os.Remove(p.pidFile)
	}
	return nil
}

// Release lets go of HAProxy and leaves it serving: Supervise no longer
// restarts it, and the next Process on the same directory takes it over.
// This is what an agent does on exit, so that restarting or upgrading it does
// not interrupt traffic.
func (p *Process) Release() {
	p.op.Lock()
	defer p.op.Unlock()
	p.mu.Lock()
	p.want = false
	p.broadcastLocked()
	m := p.cur
	p.cur, p.ready = nil, false
	p.mu.Unlock()
	if m != nil {
		p.log.Info("leaving haproxy running", "master_pid", m.pid)
		m.stopWatching()
	}
	p.stopTailing()
}

func (p *Process) stopTailing() {
	p.mu.Lock()
	tailing := p.tailing
	p.tailing = false
	p.mu.Unlock()
	if tailing {
		p.tail.stopFollowing()
	}
}

// Supervise restarts the master when it dies without Stop or Release having
// been called: at once, unless it is a crash loop (see
// ProcessConfig.CrashLoopRestarts). It returns when ctx ends, leaving HAProxy
// as it is (call Stop to stop it, Release to leave it). Only one Supervise
// should run per Process.
func (p *Process) Supervise(ctx context.Context) {
	quick := 0 // masters in a row that died (or failed to start) young
	var lastTry time.Time
	for {
		p.mu.Lock()
		running, want := p.cur != nil, p.want
		var exited <-chan struct{}
		if running {
			exited = p.cur.done
		}
		changed, started, ended, exitErr := p.changed, p.startedAt, p.exitedAt, p.exitErr
		p.mu.Unlock()
		if running || !want {
			select {
			case <-ctx.Done():
				return
			case <-exited:
			case <-changed:
			}
			continue
		}
		// Wanted but not running: the master died, or the last restart failed.
		healthy := !started.IsZero() && started.After(lastTry) && ended.Sub(started) >= p.cfg.HealthyAfter
		if healthy {
			quick = 0
		}
		quick++
		var delay time.Duration
		if n := quick - p.cfg.CrashLoopRestarts; n > 0 {
			delay = p.cfg.MaxRestartBackoff
			if n <= 16 {
				delay = min(p.cfg.RestartBackoff<<(n-1), p.cfg.MaxRestartBackoff)
			}
		}
		p.log.Warn("restarting haproxy", "in", delay, "crashes_in_a_row", quick, "last_exit", exitStatus(exitErr))
		if delay > 0 {
			t := time.NewTimer(delay)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
		lastTry = time.Now()
		if err := p.restart(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			p.log.Error("haproxy restart failed", "err", err)
			continue
		}
	}
}

func (p *Process) restart(ctx context.Context) error {
	p.op.Lock()
	defer p.op.Unlock()
	p.mu.Lock()
	need := p.want && p.cur == nil
	p.mu.Unlock()
	if !need {
		return nil
	}
	if err := p.start(ctx); err != nil {
		return err
	}
	p.log.Info("haproxy restarted", "pid", p.PID())
	return nil
}

// Workers lists the worker processes (`show proc` on the master CLI): the
// current ones first, then old ones still finishing connections.
func (p *Process) Workers(ctx context.Context) ([]Worker, error) {
	st, err := p.showProc(ctx)
	if err != nil {
		return nil, err
	}
	return st.Workers, nil
}

// MasterCommand sends one command to the master CLI and returns its answer
// (a command may address a worker: "@!<pid> show info", "@1 show stat").
// It fails when the answer looks like an error message (see Runtime.Command).
func (p *Process) MasterCommand(ctx context.Context, cmd string) (string, error) {
	if err := checkCLICommand(cmd); err != nil {
		return "", err
	}
	if !p.Running() {
		return "", ErrNotRunning
	}
	out, err := cliExchange(ctx, p.masterSock, cmd)
	if err != nil {
		return out, fmt.Errorf("haproxy master CLI %q: %w", cmd, err)
	}
	if msg, bad := cliErrorMessage(out); bad {
		return out, &CommandError{Command: cmd, Message: msg}
	}
	return out, nil
}

// procStatus is a parsed `show proc`.
type procStatus struct {
	MasterPID     int
	Reloads       int
	FailedReloads int
	Workers       []Worker // current then old
}

func (s procStatus) current() []Worker {
	var ws []Worker
	for _, w := range s.Workers {
		if !w.Old {
			ws = append(ws, w)
		}
	}
	return ws
}

// pollTimeout bounds one poll of the master CLI while waiting for it, so a
// socket that accepts but never answers cannot eat the whole wait.
const pollTimeout = 3 * time.Second

func (p *Process) showProc(ctx context.Context) (procStatus, error) {
	ctx, cancel := context.WithTimeout(ctx, pollTimeout)
	defer cancel()
	out, err := cliExchange(ctx, p.masterSock, "show proc")
	if err != nil {
		return procStatus{}, err
	}
	return parseShowProc(out)
}

var (
	procMasterRE = regexp.MustCompile(`^(\d+)\s+master\s+(\d+)(?:\s*\[failed:\s*(\d+)\])?`)
	procWorkerRE = regexp.MustCompile(`^(\d+)\s+worker\s+(\d+)\s+(\S+)(?:\s+(\S+))?`)
)

// parseShowProc parses the master CLI's `show proc` (HAProxy 2.6):
//
//	#<PID>          <type>          <reloads>       <uptime>        <version>
//	9865            master          3 [failed: 0]   0d00h01m07s     2.6.12-1+deb12u4
//	# workers
//	12018           worker          0               0d00h00m01s     2.6.12-1+deb12u4
//	# old workers
//	11522           worker          1               0d00h00m42s     2.6.12-1+deb12u4
//	# programs
func parseShowProc(out string) (procStatus, error) {
	var st procStatus
	section := "master"
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "":
			continue
		case strings.HasPrefix(line, "#<PID>"):
			continue
		case strings.HasPrefix(line, "#"):
			section = strings.TrimSpace(strings.TrimPrefix(line, "#"))
			continue
		}
		switch section {
		case "master":
			if m := procMasterRE.FindStringSubmatch(line); m != nil {
				st.MasterPID, _ = strconv.Atoi(m[1])
				st.Reloads, _ = strconv.Atoi(m[2])
				if m[3] != "" {
					st.FailedReloads, _ = strconv.Atoi(m[3])
				}
			}
		case "workers", "old workers":
			if m := procWorkerRE.FindStringSubmatch(line); m != nil {
				w := Worker{Uptime: m[3], Version: m[4], Old: section == "old workers"}
				w.PID, _ = strconv.Atoi(m[1])
				w.Reloads, _ = strconv.Atoi(m[2])
				st.Workers = append(st.Workers, w)
			}
		}
	}
	if st.MasterPID == 0 {
		return st, fmt.Errorf("haproxy: unexpected `show proc` answer: %q", firstLine(out))
	}
	return st, nil
}
