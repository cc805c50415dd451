package haproxy

import (
	"errors"
	"log/slog"
	"os/exec"
	"path/filepath"
	"sync"
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
