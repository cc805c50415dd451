package haproxy

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

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
