package haproxy

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

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
