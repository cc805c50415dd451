package haproxy

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"
)

// HAProxy's stdout and stderr go to a file in the runtime directory, not to a
// pipe: the master outlives the agent that started it (a restart or upgrade
// of the agent leaves HAProxy serving), and the next agent reads what the
// master it takes over prints, its reload alerts included. The file is
// opened O_APPEND by the master and its workers, so the tail can truncate it
// when it grows past maxOutputLog.

// maxOutputLog is the size past which the output file is truncated (once
// read up to its end).
const maxOutputLog = 8 << 20

// outputTail follows the output file, logs each line and keeps the recent
// ones in a ring.
type outputTail struct {
	path string
	log  *slog.Logger
	ring *outputRing

	mu      sync.Mutex // serializes pumps
	f       *os.File
	off     int64
	partial []byte

	runMu sync.Mutex
	stop  chan struct{} // non-nil while the follow goroutine runs
	done  chan struct{}
}

func newOutputTail(path string, log *slog.Logger, ring *outputRing) *outputTail {
	return &outputTail{path: path, log: log, ring: ring}
}

// openForWrite opens (creates) the output file for a master to inherit.
func (t *outputTail) openForWrite() (*os.File, error) {
	return os.OpenFile(t.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
}

// skipToEnd makes the tail ignore what the file holds now (output of
// earlier runs); called before the first master of this Process starts or is
// taken over.
func (t *outputTail) skipToEnd() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.f == nil {
		f, err := os.Open(t.path)
		if err != nil {
			return
		}
		t.f = f
	}
	if st, err := t.f.Stat(); err == nil {
		t.off = st.Size()
	}
	t.partial = nil
}

// pump reads every complete line written since the last pump.
func (t *outputTail) pump() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.f == nil {
		f, err := os.Open(t.path)
		if err != nil {
			return
		}
		t.f, t.off = f, 0
	}
	st, err := t.f.Stat()
	if err != nil {
		return
	}
	if st.Size() < t.off { // truncated
		t.off, t.partial = 0, nil
	}
	if st.Size() == t.off {
		return
	}
	buf := make([]byte, min(st.Size()-t.off, 1<<20))
	for t.off < st.Size() {
		n, err := t.f.ReadAt(buf, t.off)
		t.off += int64(n)
		t.consume(buf[:n])
		if err != nil && err != io.EOF || n == 0 {
			break
		}
	}
	if t.off >= maxOutputLog {
		if os.Truncate(t.path, 0) == nil {
			t.off, t.partial = 0, nil
		}
	}
}

func (t *outputTail) consume(b []byte) {
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			t.partial = append(t.partial, b...)
			if len(t.partial) > 64*1024 {
				t.emit(string(t.partial))
				t.partial = nil
			}
			return
		}
		line := string(append(t.partial, b[:i]...))
		t.partial = nil
		b = b[i+1:]
		t.emit(line)
	}
}

func (t *outputTail) emit(line string) {
	line = strings.TrimRight(line, "\r")
	if len(line) > 16*1024 {
		line = line[:16*1024] + "…"
	}
	t.ring.add(line)
	level := slog.LevelInfo
	switch {
	case strings.HasPrefix(line, "[ALERT]"):
		level = slog.LevelError
	case strings.HasPrefix(line, "[WARNING]"):
		level = slog.LevelWarn
	case strings.HasPrefix(line, "[DEBUG]"):
		level = slog.LevelDebug
	}
	t.log.Log(context.Background(), level, line)
}

// follow pumps every interval until stopFollowing.
func (t *outputTail) follow() {
	t.runMu.Lock()
	defer t.runMu.Unlock()
	if t.stop != nil {
		return
	}
	stop, done := make(chan struct{}), make(chan struct{})
	t.stop, t.done = stop, done
	go func() {
		defer close(done)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				t.pump()
				return
			case <-tick.C:
				t.pump()
			}
		}
	}()
}

func (t *outputTail) stopFollowing() {
	t.runMu.Lock()
	defer t.runMu.Unlock()
	if t.stop == nil {
		return
	}
	close(t.stop)
	<-t.done
	t.stop, t.done = nil, nil
	t.mu.Lock()
	if t.f != nil {
		t.f.Close()
		t.f = nil
	}
	t.mu.Unlock()
}

// outputSince parses the alerts printed since seq. If marker is set it waits
// (briefly) for a line containing it, as HAProxy's alerts may not be written
// yet when the master CLI already tells the outcome.
func (p *Process) outputSince(seq uint64, marker string) ([]Alert, string) {
	deadline := time.Now().Add(time.Second)
	for {
		p.tail.pump()
		lines := p.out.since(seq)
		if marker == "" || time.Now().After(deadline) || containsLine(lines, marker) {
			out := strings.Join(lines, "\n")
			return parseAlerts(out, p.configPath), out
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// outputSeq is the sequence number of the next line HAProxy prints.
func (p *Process) outputSeq() uint64 {
	p.tail.pump()
	return p.out.seq()
}

func containsLine(lines []string, s string) bool {
	for _, l := range lines {
		if strings.Contains(l, s) {
			return true
		}
	}
	return false
}

// outputRing keeps the last lines HAProxy printed, numbered: line number
// n is at lines[n % size] while kept. (A worker that stops prints a line
// per proxy — 2,000 at 1,000 load balancers, on every reload — and a
// slice copied whenever it was full allocated 6 KB per line, 13 MB per
// reload, in the agent's process right as the new worker takes over.)
type outputRing struct {
	mu    sync.Mutex
	lines []string
	next  uint64 // sequence number of the next line
	size  int
}

func newOutputRing(size int) *outputRing { return &outputRing{size: max(size, 1)} }

func (o *outputRing) add(line string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.lines) < o.size {
		o.lines = append(o.lines, line)
	} else {
		o.lines[o.next%uint64(o.size)] = line
	}
	o.next++
}

func (o *outputRing) seq() uint64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.next
}

// since returns the kept lines numbered seq and later.
func (o *outputRing) since(seq uint64) []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	first := o.next - uint64(len(o.lines))
	if seq < first {
		seq = first
	}
	if seq >= o.next {
		return nil
	}
	out := make([]string, 0, o.next-seq)
	for n := seq; n < o.next; n++ {
		out = append(out, o.lines[n%uint64(o.size)])
	}
	return out
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}
