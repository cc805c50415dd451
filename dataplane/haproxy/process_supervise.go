package haproxy

import (
	"context"
	"time"
)

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
