package haproxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Taking over: a master outlives the agent that started it (stopping or
// upgrading the agent must not interrupt traffic), so Start first looks for
// masters of this runtime directory and configuration:
//
//   - the master answering on our master socket, if its /proc cmdline is
//     ours, is adopted: supervised through a pidfd (it is not our child),
//     controlled through its master CLI and reloaded with the current
//     configuration — a hitless reload, no listener is closed;
//   - every other HAProxy whose command line names our configuration or
//     master socket and whose parent is not one of them (a master, or a
//     worker orphaned by one) is stale and stopped: at once if it has no
//     worker yet (a master still starting could bind our master socket after
//     us), softly otherwise, after ours serves.
//
// With the agent's lock on its state directory, this leaves exactly one
// master per state directory whatever point an earlier agent died at.

// haproxyProc is one HAProxy process found in /proc.
type haproxyProc struct {
	pid, ppid int
}

// scanOurs lists live HAProxy processes whose command line names our
// configuration (-f) or master socket (-S).
func (p *Process) scanOurs() []haproxyProc {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []haproxyProc
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		if !p.cmdlineOurs(pid) {
			continue
		}
		ppid, state, ok := procStat(pid)
		if !ok || state == 'Z' || state == 'X' {
			continue
		}
		out = append(out, haproxyProc{pid: pid, ppid: ppid})
	}
	return out
}

// roots are the processes of procs whose parent is not among them: masters,
// and workers whose master is gone.
func roots(procs []haproxyProc) []int {
	in := map[int]bool{}
	for _, pr := range procs {
		in[pr.pid] = true
	}
	var out []int
	for _, pr := range procs {
		if !in[pr.ppid] {
			out = append(out, pr.pid)
		}
	}
	slices.Sort(out)
	return out
}

func hasChild(procs []haproxyProc, pid int) bool {
	for _, pr := range procs {
		if pr.ppid == pid {
			return true
		}
	}
	return false
}

// procStat reads the parent pid and state of pid from /proc/<pid>/stat.
func procStat(pid int) (ppid int, state byte, ok bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 >= len(s) {
		return 0, 0, false
	}
	f := strings.Fields(s[i+2:])
	if len(f) < 2 {
		return 0, 0, false
	}
	ppid, err = strconv.Atoi(f[1])
	return ppid, f[0][0], err == nil
}

// cmdlineOurs reports whether pid is an HAProxy whose command line names our
// configuration file or our master socket.
func (p *Process) cmdlineOurs(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || len(b) == 0 {
		return false
	}
	args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
	if !strings.Contains(filepath.Base(args[0]), "haproxy") || slices.Contains(args, "-c") {
		return false // not haproxy, or only checking a configuration
	}
	for i := 0; i+1 < len(args); i++ {
		switch a, v := args[i], args[i+1]; a {
		case "-S":
			if v == p.masterSock || strings.HasPrefix(v, p.masterSock+",") {
				return true
			}
		case "-f":
			if v == p.configPath {
				return true
			}
		}
	}
	return false
}

// isOurMaster reports whether pid is a live HAProxy of ours (see cmdlineOurs).
func (p *Process) isOurMaster(pid int) bool {
	return processAlive(pid) && p.cmdlineOurs(pid)
}

// Masters lists the pids of HAProxy masters (and orphaned workers) of this
// configuration or master socket running on this machine, found in /proc.
// Exactly one — PID — is expected while a Process runs.
func (p *Process) Masters() []int { return roots(p.scanOurs()) }

// socketMaster returns the pid answering `show proc` on our master socket, or 0.
func (p *Process) socketMaster(ctx context.Context) int {
	if _, err := os.Stat(p.masterSock); err != nil {
		return 0
	}
	cctx, cancel := context.WithTimeout(ctx, pollTimeout)
	defer cancel()
	out, err := cliExchange(cctx, p.masterSock, "show proc")
	if err != nil {
		return 0
	}
	st, err := parseShowProc(out)
	if err != nil {
		return 0
	}
	return st.MasterPID
}

// adopt takes over the running master pid: it becomes the current master,
// watched through a pidfd, once its master CLI lists a worker that answers
// (within a few seconds; otherwise it is left as it is). p.op held.
func (p *Process) adopt(ctx context.Context, pid int) error {
	fd, ferr := unix.PidfdOpen(pid, 0)
	if !p.isOurMaster(pid) { // checked after opening the pidfd: it cannot be a reused pid
		if ferr == nil {
			unix.Close(fd)
		}
		return fmt.Errorf("pid %d is not an haproxy of ours", pid)
	}
	if ferr != nil {
		fd = -1 // no pidfd (old kernel): poll the pid instead
	}
	m := &master{pid: pid, done: make(chan struct{}), unwatch: make(chan struct{})}
	p.mu.Lock()
	p.cur, p.ready = m, false
	p.startedAt, p.exitErr = time.Now(), nil
	p.broadcastLocked()
	p.mu.Unlock()
	go p.watch(m, fd)

	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := p.waitReady(wctx, pid, m.done); err != nil {
		// Not taken over, but left alone: when we are being stopped it is
		// the next agent's, and a master too slow to answer may still serve
		// (Start treats it as any other stale one).
		p.mu.Lock()
		if p.cur == m {
			p.cur = nil
		}
		p.mu.Unlock()
		m.stopWatching()
		return fmt.Errorf("master %d is not ready: %w", pid, err)
	}
	p.mu.Lock()
	if p.cur == m {
		p.ready = true
		p.broadcastLocked()
	}
	p.mu.Unlock()
	return nil
}

// watch waits for an adopted master to end (pidfd readable, or the pid gone)
// and records it, unless Release stops watching first.
func (p *Process) watch(m *master, fd int) {
	if fd >= 0 {
		defer unix.Close(fd)
	}
	unwatch := m.unwatch
	for {
		select {
		case <-unwatch:
			return
		default:
		}
		if fd >= 0 {
			fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
			n, err := unix.Poll(fds, 200)
			if n > 0 {
				break
			}
			if err != nil && !errors.Is(err, unix.EINTR) {
				fd = -1
			}
			continue
		}
		if !processAlive(m.pid) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	p.exited(m, errors.New("the master (not our child) exited; its status is unknown"))
}

// stopStale stops the HAProxy processes pids (not ours): SIGKILL at once
// for those in starting (no worker yet) when now is set, otherwise a soft
// stop (stopForeign). It waits for all of them.
func (p *Process) stopStale(pids []int, procs []haproxyProc) {
	done := make(chan struct{}, len(pids))
	for _, pid := range pids {
		go func() {
			defer func() { done <- struct{}{} }()
			if !hasChild(procs, pid) {
				killGroup(pid, p.log)
				return
			}
			p.log.Info("soft-stopping a stale haproxy", "stale_pid", pid)
			stopForeign(pid, p.cfg.StopTimeout, p.log)
		}()
	}
	for range pids {
		<-done
	}
}

// killGroup SIGKILLs pid and its process group and waits (bounded) for it.
func killGroup(pid int, log *slog.Logger) {
	log.Warn("killing a stale haproxy", "stale_pid", pid)
	if pgid, err := syscall.Getpgid(pid); err == nil && pgid == pid {
		_ = syscall.Kill(-pid, syscall.SIGKILL)
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
	deadline := time.Now().Add(3 * time.Second)
	for processAlive(pid) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
}

// processAlive reports whether pid exists and is not a zombie.
func processAlive(pid int) bool {
	if _, state, ok := procStat(pid); ok {
		return state != 'Z' && state != 'X'
	}
	return syscall.Kill(pid, 0) == nil
}

// stopForeign stops a master that is not our child: SIGUSR1, then SIGTERM
// after grace, then SIGKILL to it and its process group. Bounded.
func stopForeign(pid int, grace time.Duration, log *slog.Logger) {
	waitGone := func(d time.Duration) bool {
		deadline := time.Now().Add(d)
		for time.Now().Before(deadline) {
			if !processAlive(pid) {
				return true
			}
			time.Sleep(50 * time.Millisecond)
		}
		return !processAlive(pid)
	}
	_ = syscall.Kill(pid, syscall.SIGUSR1)
	if waitGone(grace) {
		log.Info("previous haproxy exited", "old_master_pid", pid)
		return
	}
	_ = syscall.Kill(pid, syscall.SIGTERM)
	if waitGone(2 * time.Second) {
		log.Info("previous haproxy exited after SIGTERM", "old_master_pid", pid)
		return
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
	if pgid, err := syscall.Getpgid(pid); err == nil && pgid == pid {
		_ = syscall.Kill(-pid, syscall.SIGKILL)
	}
	if !waitGone(2 * time.Second) {
		log.Error("previous haproxy survived SIGKILL", "old_master_pid", pid)
	}
}
