package agent

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// ErrStateDirLocked is returned by Run when another agent holds the state
// directory.
var ErrStateDirLocked = errors.New("agent: the state directory is in use by another agent")

// lockStateDir takes an exclusive, non-blocking flock on <dir>/agent.lock
// and writes our pid into it. The lock goes with the process (the file is
// close-on-exec, so HAProxy does not inherit it): a killed agent never leaves
// it held. Close the file to release it.
func lockStateDir(dir string) (*os.File, error) {
	path := filepath.Join(dir, "agent.lock")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("agent: lock file: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		holder := "unknown"
		if b, rerr := os.ReadFile(path); rerr == nil {
			if pid, perr := strconv.Atoi(strings.TrimSpace(string(b))); perr == nil {
				holder = strconv.Itoa(pid)
			}
		}
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s is locked by pid %s", ErrStateDirLocked, path, holder)
		}
		return nil, fmt.Errorf("agent: lock %s: %w", path, err)
	}
	_ = f.Truncate(0)
	_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	return f, nil
}
