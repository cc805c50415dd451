package haproxy

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

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

// TakeOver takes over the master of an earlier run that answers on our
// master socket, as Start does, but leaves it serving what it serves: no
// reload (its configuration may be newer than what the caller knows: an
// agent killed after a reload, before its state reached the disk). Every
// other HAProxy of this configuration is stopped once it is taken over. It
// reports false, leaving everything as it found it, when there is no such
// master or it cannot be taken over; Start then starts one. It reports true
// when a master already runs.
func (p *Process) TakeOver(ctx context.Context) (bool, error) {
	p.op.Lock()
	defer p.op.Unlock()
	return p.takeOver(ctx, false)
}

func (p *Process) start(ctx context.Context) error {
	_, err := p.takeOver(ctx, true)
	return err
}

// takeOver is TakeOver, and with launch Start: a master is started when none
// can be taken over, and one taken over is reloaded; p.op held.
func (p *Process) takeOver(ctx context.Context, launch bool) (bool, error) {
	p.mu.Lock()
	running := p.cur != nil
	p.mu.Unlock()
	if running {
		return true, nil
	}
	if p.configPath == "" || p.dir == "" {
		return false, errors.New("haproxy: ProcessConfig.ConfigPath and Dir are required")
	}
	// sockaddr_un holds 108 bytes; HAProxy binds "<path>.<pid>.tmp" first.
	if len(p.masterSock)+16 > 107 {
		return false, fmt.Errorf("haproxy: runtime dir %q is too long for a unix socket path", p.dir)
	}
	if _, err := os.Stat(p.configPath); err != nil {
		return false, fmt.Errorf("haproxy: config: %w", err)
	}
	if err := os.MkdirAll(p.dir, 0o750); err != nil {
		return false, fmt.Errorf("haproxy: runtime dir: %w", err)
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
		return false, fmt.Errorf("haproxy: start: %w", ctx.Err())
	}
	if adopted == 0 && !launch {
		return false, nil
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
			return false, err
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
	if adopted > 0 && launch {
		if err := p.reload(ctx); err != nil {
			return true, fmt.Errorf("haproxy: took over master %d, but it did not reload: %w", adopted, err)
		}
	}
	return adopted > 0, nil
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
