package haproxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"
)

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
