package api

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fulcrumlb/fulcrum/api/problem"
	"github.com/fulcrumlb/fulcrum/dataplane/nodestream"
)

// One reader for the acknowledgements of every raw stream (issue 10). At
// 1,000 nodes a write brings 1,000 acknowledgements, one small line per
// node; read by a goroutine per stream (readMessages) each costs a wake-up
// through Go's netpoller, a turn of the scheduler, a read and a second read
// that finds nothing and parks the goroutine again. Instead, the replica's
// raw cleartext streams are read by one goroutine (ackReader): their TCP
// descriptors sit in an epoll set of its own (level-triggered), which Go's
// poller waits on as one descriptor; when any is readable the goroutine
// takes every ready one from the set, reads each once without blocking,
// parses its lines (an incomplete line is kept for the next read) and hands
// all the acknowledgements it read to the ack batch under one lock
// (reportWriter.addAcks). The stream's own goroutine never wakes for them.
//
// Everything else stays as readMessages does it: a ping or an empty line is
// nothing, a resync goes to the stream's goroutine (msgs), a malformed or
// too long message ends the stream with a 400 close frame, the agent's end
// of the connection (EOF, a line cut by it: 400) or a read error ends the
// stream, and a stream the agent sent nothing on for streamReadIdle ends
// (checked every ackSweepEvery, where readMessages used a read deadline). A
// stream whose resync cannot be handed over at once (its goroutine has 16
// not taken yet) leaves the set: a goroutine of its own reads it from
// there on (readMessages), from that message on. HTTP/2 and TLS streams,
// and a raw stream that sent messages with its upgrade request (bytes the
// server's reader buffered), keep the goroutine per stream.

// ackSweepEvery is how often the reader looks for streams idle past
// streamReadIdle.
const ackSweepEvery = streamReadIdle / 4

// ackReadEvents bounds the descriptors taken from the set at once.
const ackReadEvents = 256

// ackReader reads the messages of the replica's raw cleartext streams.
type ackReader struct {
	h    *handlers
	epfd int
	file *os.File // the epoll set, as Go's poller waits on it
	rc   syscall.RawConn

	mu      sync.Mutex
	streams map[int32]*ackStream // by id (the set's event data)
	next    int32
	// users counts the streams that asked for the reader (streamFeeds).
	users int

	// The reader's goroutine's own.
	events []unix.EpollEvent
	ready  []*ackStream
	buf    []byte
	acks   []ackItem
}

// ackStream is one stream in the reader's set.
type ackStream struct {
	r    *nodeStream
	key  ackKey
	rc   syscall.RawConn
	ctx  context.Context
	end  context.CancelCauseFunc
	msgs chan<- streamMessage
	// demote reads the stream by a goroutine of its own from rest on
	// (readMessages).
	demote func(rest []byte)
	id     int32

	// line is an incomplete line (the reader's goroutine's), last when
	// the stream's last message was read.
	line []byte
	last time.Time
	// gone says the stream left the set (under the reader's mu).
	gone bool
}

// ackItem is one acknowledgement read: key acknowledged revision applied.
type ackItem struct {
	key     ackKey
	applied int64
}

func newAckReader(h *handlers) (*ackReader, error) {
	fd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("epoll set non-blocking: %w", err)
	}
	file := os.NewFile(uintptr(fd), "stream-acks")
	// Go's poller waits on the set (a non-blocking descriptor): its read
	// deadline works only then.
	if err := file.SetReadDeadline(time.Now().Add(ackSweepEvery)); err != nil {
		file.Close()
		return nil, fmt.Errorf("epoll set not pollable: %w", err)
	}
	rc, err := file.SyscallConn()
	if err != nil {
		file.Close()
		return nil, err
	}
	a := &ackReader{h: h, epfd: fd, file: file, rc: rc, streams: map[int32]*ackStream{},
		events: make([]unix.EpollEvent, ackReadEvents), buf: make([]byte, 64<<10)}
	go a.run()
	return a, nil
}

// ackCoalesce is how long the reader lets acknowledgements gather after it
// took some: a write's 1,000 arrive over tens of milliseconds, and taking
// them a few hundred at a time instead of one or two costs one wake-up of
// the reader for each batch, not for each.
var ackCoalesce = 2 * time.Millisecond

// run reads the set until it is closed.
func (a *ackReader) run() {
	for {
		err := a.rc.Read(a.poll)
		if err == nil {
			if ackCoalesce > 0 {
				time.Sleep(ackCoalesce)
			}
			continue
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			a.sweep(time.Now())
			_ = a.file.SetReadDeadline(time.Now().Add(ackSweepEvery))
			continue
		}
		if err != nil {
			return // closed
		}
	}
}

// poll takes the ready streams from the set until none is, reading each;
// it returns whether it took any (false: Go's poller wakes the goroutine
// when one is ready).
func (a *ackReader) poll(fd uintptr) bool {
	took := false
	for {
		n, err := unix.EpollWait(int(fd), a.events, 0)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil || n <= 0 {
			// The set is empty (level-triggered: a stream read to its
			// end is not in it any more); one that becomes readable
			// from now on makes the set readable for Go's poller.
			return took
		}
		took = true
		now := time.Now()
		a.mu.Lock()
		for _, ev := range a.events[:n] {
			if s := a.streams[ev.Fd]; s != nil {
				a.ready = append(a.ready, s)
			}
		}
		a.mu.Unlock()
		for _, s := range a.ready {
			a.read(s, now)
		}
		clear(a.ready)
		a.ready = a.ready[:0]
		a.flush(now)
	}
}

// flush hands the acknowledgements read to the ack batch.
func (a *ackReader) flush(now time.Time) {
	if len(a.acks) == 0 {
		return
	}
	a.h.reportw.streamAcks.Add(int64(len(a.acks))) // counted with the next batch (ackbatch.go)
	a.h.reportw.addAcks(a.acks, now)
	clear(a.acks)
	a.acks = a.acks[:0]
}

// read reads stream s once, without blocking, and takes its lines.
func (a *ackReader) read(s *ackStream, now time.Time) {
	var n int
	var rerr error
	err := s.rc.Read(func(fd uintptr) bool {
		for {
			n, rerr = unix.Read(int(fd), a.buf)
			if !errors.Is(rerr, unix.EINTR) {
				return true // never wait: the set says when it is readable
			}
		}
	})
	if err == nil && rerr != nil {
		if errors.Is(rerr, unix.EAGAIN) {
			return
		}
		err = os.NewSyscallError("read", rerr)
	}
	if err != nil {
		a.finish(s, err)
		return
	}
	if n <= 0 {
		// The agent closed its side (as the body's io.EOF).
		if len(bytes.TrimSpace(s.line)) > 0 {
			a.finish(s, streamEnd{p: problem.BadRequest("message", "must end with a newline")})
			return
		}
		a.finish(s, io.EOF)
		return
	}
	data := a.buf[:n]
	if len(s.line) > 0 {
		// The rest of a line an earlier read began.
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			s.line = append(s.line, data...)
			if len(s.line) >= streamMessageMax {
				a.finish(s, errMessageTooLong())
			}
			return
		}
		s.line = append(s.line, data[:i+1]...)
		data = data[i+1:]
		line := s.line
		s.line = s.line[:0]
		if !a.take(s, line, data, now) {
			return
		}
	}
	for len(data) > 0 {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			if len(data) >= streamMessageMax {
				a.finish(s, errMessageTooLong())
				return
			}
			s.line = append(s.line[:0], data...)
			return
		}
		line := data[:i+1]
		data = data[i+1:]
		if !a.take(s, line, data, now) {
			return
		}
	}
}

// errMessageTooLong is the end of a stream whose message is longer than
// streamMessageMax (bufio.ErrBufferFull in readMessages).
func errMessageTooLong() error {
	return streamEnd{p: problem.BadRequest("message", "is longer than %d bytes", streamMessageMax)}
}

// take takes one message line of s (rest: what was read after it), as
// readMessages does; false when the reader is done with s.
func (a *ackReader) take(s *ackStream, line, rest []byte, now time.Time) bool {
	if len(line) > streamMessageMax {
		a.finish(s, errMessageTooLong())
		return false
	}
	s.last = now
	if n, ok := nodestream.ParseAck(line); ok {
		a.acks = append(a.acks, ackItem{key: s.key, applied: n})
		return true
	}
	if nodestream.IsPing(line) || len(bytes.TrimSpace(line)) == 0 {
		return true
	}
	m, err := parseStreamMessage(line)
	if err != nil {
		a.finish(s, streamEnd{p: s.r.h.streamProblem(s.ctx, err)})
		return false
	}
	switch m.Type {
	case "ack":
		a.acks = append(a.acks, ackItem{key: s.key, applied: *m.Applied})
	case "resync":
		select {
		case s.msgs <- m:
		default:
			// Its goroutine has not taken the last ones: a goroutine of
			// its own hands this one over and reads on.
			if a.leave(s) {
				s.demote(append(bytes.Clone(line), rest...))
			}
			return false
		}
	}
	return true
}

// finish ends stream s with cause, after it left the set.
func (a *ackReader) finish(s *ackStream, cause error) {
	if a.leave(s) {
		s.end(cause)
	}
}

// add puts stream s in the set; false when it could not.
func (a *ackReader) add(s *ackStream) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	for a.streams[a.next] != nil {
		a.next++
	}
	s.id = a.next
	a.next++
	s.last = time.Now()
	var err error
	if cerr := s.rc.Control(func(fd uintptr) {
		err = unix.EpollCtl(a.epfd, unix.EPOLL_CTL_ADD, int(fd), &unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP, Fd: s.id})
	}); cerr != nil {
		err = cerr
	}
	if err != nil {
		a.h.log.Debug("stream acknowledgements read by the stream's goroutine", "node", s.r.name, "err", err)
		return false
	}
	a.streams[s.id] = s
	return true
}

// leave takes stream s out of the set (before its connection is closed);
// false when it had left already.
func (a *ackReader) leave(s *ackStream) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if s.gone {
		return false
	}
	s.gone = true
	delete(a.streams, s.id)
	_ = s.rc.Control(func(fd uintptr) {
		_ = unix.EpollCtl(a.epfd, unix.EPOLL_CTL_DEL, int(fd), nil)
	})
	return true
}

// sweep ends the streams the agent sent nothing on for streamReadIdle.
func (a *ackReader) sweep(now time.Time) {
	a.mu.Lock()
	var idle []*ackStream
	for _, s := range a.streams {
		if now.Sub(s.last) > streamReadIdle {
			idle = append(idle, s)
		}
	}
	a.mu.Unlock()
	for _, s := range idle {
		a.finish(s, fmt.Errorf("read stream: nothing for %s: %w", streamReadIdle, os.ErrDeadlineExceeded))
	}
}

// readAcks has the replica's ack reader read raw stream r's messages (its
// ctx, end and msgs as readMessages's); stop takes it out when the stream
// ends, before its connection is closed. ok is false when the stream's
// goroutine must read them (not a raw cleartext stream, bytes buffered
// with the upgrade, no epoll).
func (f *streamFeeds) readAcks(ctx context.Context, r *nodeStream, end context.CancelCauseFunc, msgs chan<- streamMessage,
	demote func(rest []byte)) (stop func(), ok bool) {
	if r.rawRead == nil {
		return nil, false
	}
	f.mu.Lock()
	a := f.acks
	if a == nil {
		var err error
		if a, err = newAckReader(f.h); err != nil {
			f.mu.Unlock()
			f.h.log.Debug("stream acknowledgements read by each stream's goroutine", "err", err)
			return nil, false
		}
		f.acks = a
	}
	a.users++
	f.mu.Unlock()
	s := &ackStream{r: r, key: ackKey{name: r.name, scope: r.scope, bound: r.bound}, rc: r.rawRead, ctx: ctx, end: end, msgs: msgs, demote: demote}
	if !a.add(s) {
		f.releaseAcks(a)
		return nil, false
	}
	return sync.OnceFunc(func() {
		a.leave(s)
		f.releaseAcks(a)
	}), true
}

// releaseAcks drops a stream's use of reader a, closing it after the last.
func (f *streamFeeds) releaseAcks(a *ackReader) {
	f.mu.Lock()
	a.users--
	last := a.users == 0
	if last && f.acks == a {
		f.acks = nil
	}
	f.mu.Unlock()
	if last {
		a.file.Close() // its goroutine returns
	}
}
