package api

import (
	"context"
	"errors"
	"syscall"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sys/unix"

	"github.com/fulcrumlb/fulcrum/api/snapshot"
	"github.com/fulcrumlb/fulcrum/dataplane/nodestream"
)

// One writer per group feed (issue 10): when a group's feed has read a
// newer view, its goroutine pushes the frame of every idle stream of the
// group itself, in one loop, instead of waking every stream's goroutine
// (1,000 wake-ups per write at 1,000 nodes, each a turn of its own). A
// stream is idle (parked) while its goroutine waits with nothing to send:
// it sent everything up to the feed's view. The feed's goroutine then owns
// it for as long as it holds the stream's lock, and writes its frame
// without ever blocking: one non-blocking writev of the frame to a raw
// stream's TCP connection. Anything else falls back to the stream's own
// goroutine, woken (nodeStream.wake) to take its turn as before: a stream
// that is busy (its goroutine holds the lock: a keep-alive, a resync), over
// HTTP/2 or TLS, whose node left the view or the caller's scope, whose
// group changed, an error, or a frame the socket took only part of (the
// stream's goroutine writes the rest first, blocking as any of its frames,
// bounded by streamWriteTimeout). So a slow reader never holds the others,
// and a stream's frames keep their order: only the holder of its lock
// writes to it, and a frame begun is finished before any other.

// fanout hands view v (nil: the feed's read failed) to the streams of
// group g: it writes the frame of each parked stream it can, and wakes the
// others.
func (g *groupFeed) fanout(ctx context.Context, v *snapshot.View) {
	// One clock reading for the whole walk (each is a few hundred
	// nanoseconds on a virtual machine): it moves the streams' write
	// deadlines and keep-alive clocks, both far coarser.
	now := time.Now()
	for _, r := range g.streamList() {
		if v == nil || !r.mu.TryLock() {
			trace.SpanFromContext(ctx).AddEvent("stream woken")
			r.signal()
			continue
		}
		if !r.parked || !r.push(ctx, v, now) {
			r.parked = false
			r.mu.Unlock()
			trace.SpanFromContext(ctx).AddEvent("stream woken")
			r.signal()
			continue
		}
		r.mu.Unlock()
	}
}

// keepalive sends the keep-alive frame of each parked raw stream of the
// group that sent nothing for StreamKeepalive/2, as fanout writes frames,
// and asks the other such streams' goroutines to send their own (r.keep,
// nodeStream.wait: no turn), or to finish one the socket took only part
// of; a busy one sends its own when it waits again. One walk per group every
// StreamKeepalive/2 instead of a ticker waking every stream's goroutine.
func (g *groupFeed) keepalive(now time.Time) {
	for _, r := range g.streamList() {
		if !r.mu.TryLock() {
			continue
		}
		if r.fw == nil || now.Sub(r.fw.last) < StreamKeepalive/2 {
			r.mu.Unlock()
			continue
		}
		if r.parked && r.fw.raw != nil && r.fw.pending == nil && r.fw.err == nil &&
			r.fw.tryFrame(now, frameKeepalive) && r.fw.pending == nil {
			r.mu.Unlock()
			continue
		}
		r.mu.Unlock()
		select {
		case r.keep <- struct{}{}:
		default:
		}
	}
}

// signal wakes the stream's goroutine (once: a wake-up pending is enough).
func (r *nodeStream) signal() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// push sends parked stream r what view v has newer than what r sent, under
// r.mu; false when its goroutine must take its turn instead (the frame
// may have been begun: its goroutine finishes it first).
func (r *nodeStream) push(ctx context.Context, v *snapshot.View, now time.Time) bool {
	n, ok := v.Node(r.name)
	if !ok || !viewNodeInScope(r.name, r.bound, n, r.scope) {
		return false
	}
	poll := v.Poll(n)
	if poll.GroupID() != r.group {
		return false
	}
	if poll.Revision() <= r.req.After {
		return true // nothing to send: stays parked
	}
	if r.fw.raw == nil || r.fw.pending != nil || r.fw.err != nil {
		return false
	}
	snap, head, body, err := r.nextFrame(ctx, poll)
	if err != nil || snap == nil {
		return false
	}
	if !r.fw.tryFrame(now, frameSnapshot, head, body) {
		return false
	}
	trace.SpanFromContext(ctx).AddEvent("frame written", trace.WithAttributes(
		attribute.Int64("fulcrum.revision", snap.Revision()), attribute.Int("fulcrum.bytes", len(head)+len(body))))
	r.sent(snap)
	return r.fw.pending == nil && snap.Revision() >= poll.Revision()
}

// rawConnOf is the connection's raw descriptor when frames can be written
// to it without blocking (a TCP connection, cleartext), else nil.
func rawConnOf(c any) syscall.RawConn {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return rc
}

// frameSmallWrite: frames up to this size are copied and written whole.
const frameSmallWrite = 16 << 10

// tryFrame writes a frame to the raw connection without blocking (now: the
// time it is written at, about): one
// writev of its header and parts. It reports whether the frame was begun;
// what the socket did not take is kept in f.pending, which the next frame
// (f.frame, by the stream's goroutine) writes first. A failed write is
// kept in f.err, returned by the next frame.
func (f *frameWriter) tryFrame(now time.Time, kind byte, parts ...[]byte) bool {
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	// The connection's write deadline stays ahead as for any frame: an
	// expired one fails every later write, these included.
	f.extendDeadlineAt(now)
	// A small frame (a delta, a keep-alive) is copied into f.buf and
	// written whole: one segment is cheaper to send than several; a large
	// one is written from its parts (writev).
	total := nodestream.HeaderSize + n
	f.buf = append(f.buf[:0], make([]byte, nodestream.HeaderSize)...)
	nodestream.PutHeader(f.buf, kind, n)
	iov := [][]byte{f.buf}
	if total <= frameSmallWrite {
		for _, p := range parts {
			f.buf = append(f.buf, p...)
		}
		iov[0] = f.buf
	} else {
		for _, p := range parts {
			if len(p) > 0 {
				iov = append(iov, p)
			}
		}
	}
	var wrote int
	var werr error
	err := f.raw.Write(func(fd uintptr) bool {
		for {
			if len(iov) == 1 {
				wrote, werr = unix.Write(int(fd), iov[0])
			} else {
				wrote, werr = unix.Writev(int(fd), iov)
			}
			if !errors.Is(werr, unix.EINTR) {
				return true // never wait for the socket: the stream's goroutine does
			}
		}
	})
	if err == nil && werr != nil && !errors.Is(werr, unix.EAGAIN) {
		err = werr
	}
	if err != nil {
		f.err = err
		return false
	}
	wrote = max(wrote, 0)
	if wrote == 0 {
		return false // nothing went out: the stream's goroutine sends it
	}
	f.last = now
	if wrote < total {
		rest := make([]byte, 0, total-wrote)
		for _, p := range iov {
			if wrote >= len(p) {
				wrote -= len(p)
				continue
			}
			rest = append(rest, p[wrote:]...)
			wrote = 0
		}
		f.pending = rest
	}
	return true
}
