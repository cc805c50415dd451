package agent

import (
	"context"
	"time"

	"github.com/fulcrumlb/fulcrum/dataplane/haproxy"
	"github.com/fulcrumlb/fulcrum/openapi"
)

// configWriteDelay is how long after a change made through the runtime API
// haproxy.cfg is written while Run runs. The file is read only by HAProxy's
// next reload or start, and every reload of the agent renders and writes its
// own (reloadTo); written at once, its render and write (1.2 MB and a few ms
// of CPU at 1,000 load balancers) ran right while HAProxy took the change,
// on a machine whose cores HAProxy and the agent share. The changes within
// the delay are one write of the newest configuration.
const configWriteDelay = 25 * time.Millisecond

// configChanged records that what runs changed through the runtime API and
// haproxy.cfg must say so (cfg: what runs now); a.mu held. While Run runs
// the file is written by configLoop configWriteDelay later, from a.live
// then; without Run (tests calling Apply) at once, failures returned.
func (a *Agent) configChanged(cfg haproxy.Config) error {
	if !a.persistAsync || a.cfgWrite == nil {
		return a.writeConfig(cfg)
	}
	a.cfgDirty = true
	select {
	case a.cfgWrite <- struct{}{}:
	default: // a write is due already; it takes this configuration
	}
	return nil
}

// configLoop writes haproxy.cfg configWriteDelay after configChanged, until
// ctx ends (Run's leave then writes what is left: flushConfig).
func (a *Agent) configLoop(ctx context.Context) {
	wait := time.NewTimer(configWriteDelay)
	wait.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-a.cfgWrite:
		}
		wait.Reset(configWriteDelay)
		select {
		case <-ctx.Done():
			return
		case <-wait.C:
		}
		a.flushConfig()
	}
}

// flushConfig writes haproxy.cfg now when a write is due.
func (a *Agent) flushConfig() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.flushConfigLocked()
}

// flushConfigLocked writes haproxy.cfg from a.live when a write is due; a.mu
// held. A failure is reported as a disk error and has the apply retried
// (which marks the write due again); the write stays due meanwhile.
func (a *Agent) flushConfigLocked() {
	if !a.cfgDirty || a.live == nil {
		return
	}
	if err := a.writeConfig(*a.live); err != nil {
		a.nodeErrors[openapi.Disk] = truncate(err.Error(), 8000)
		a.retry = true
		a.log.Error("write haproxy.cfg", "err", err)
		a.notifyReport()
		return
	}
	a.cfgDirty = false
}
