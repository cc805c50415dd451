package api

import (
	"bytes"
	"io"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/fulcrumlb/fulcrum/dataplane/nodestream"
)

// A frame the feed's goroutine writes without blocking (tryFrame) to a
// socket that takes only part of it is finished by the stream's next frame
// before anything else: the peer reads whole frames, in order.
func TestTryFramePartialThenFinish(t *testing.T) {
	for _, size := range []int{64 << 10, 7001} { // written from its parts (writev), copied whole
		t.Run(strconv.Itoa(size), func(t *testing.T) { testTryFramePartial(t, size) })
	}
}

func testTryFramePartial(t *testing.T, size int) {
	client, server := tcpPair(t)
	_ = server.SetWriteBuffer(4096)
	_ = client.(*net.TCPConn).SetReadBuffer(4096)
	fw := &frameWriter{w: server, setDeadline: server.SetWriteDeadline, raw: rawConnOf(server)}
	if fw.raw == nil {
		t.Fatal("no raw connection of a TCP connection")
	}

	// Frames of size bytes, each of its own byte, until one is taken in part.
	var sent [][]byte
	for i := 0; fw.pending == nil; i++ {
		if i == 1000 {
			t.Fatalf("1000 frames of %d bytes written to a socket nobody reads", size)
		}
		head, body := []byte{byte('a' + i%26)}, bytes.Repeat([]byte{byte('a' + i%26)}, size)
		if !fw.tryFrame(time.Now(), nodestream.FrameSnapshot, head, body) {
			if fw.err != nil {
				t.Fatal(fw.err)
			}
			break // the socket took none of it: not sent
		}
		sent = append(sent, append(head, body...))
	}
	if fw.pending == nil {
		t.Log("the socket was full at a frame's boundary: no frame in part")
	}

	// The peer reads again; the stream's goroutine writes a keep-alive,
	// which finishes the frame first.
	got := make(chan error, 1)
	go func() {
		_ = client.SetReadDeadline(time.Now().Add(30 * time.Second))
		r := nodestream.NewReader(client, 1<<20)
		for i, want := range sent {
			kind, p, err := r.Next()
			if err != nil {
				got <- err
				return
			}
			if kind != nodestream.FrameSnapshot || !bytes.Equal(p, want) {
				got <- io.ErrUnexpectedEOF
				t.Errorf("frame %d: kind %q, %d bytes, not the frame sent", i, kind, len(p))
				return
			}
		}
		kind, p, err := r.Next()
		if err == nil && (kind != nodestream.FrameKeepalive || len(p) != 0) {
			t.Errorf("after the frames: kind %q, %d bytes, want a keep-alive", kind, len(p))
		}
		got <- err
	}()
	if err := fw.frame(nodestream.FrameKeepalive); err != nil {
		t.Fatal(err)
	}
	if fw.pending != nil {
		t.Fatal("the frame begun is still pending after the next frame")
	}
	if err := <-got; err != nil {
		t.Fatal(err)
	}
}

// Frames the feed writes keep the connection's write deadline ahead, as
// the stream's own frames do: a stream whose frames all go out through the
// feed (no keep-alive needed) is not cut when the deadline set at its
// first frame passes.
func TestTryFrameExtendsTheWriteDeadline(t *testing.T) {
	_, server := tcpPair(t)
	var set []time.Time
	fw := &frameWriter{w: server, raw: rawConnOf(server), setDeadline: func(at time.Time) error {
		set = append(set, at)
		return server.SetWriteDeadline(at)
	}}
	if err := fw.frame(nodestream.FrameKeepalive); err != nil {
		t.Fatal(err)
	}
	// As if streamWriteTimeout had passed since: the deadline is close.
	fw.dl.at = time.Now().Add(time.Millisecond)
	_ = server.SetWriteDeadline(fw.dl.at)
	time.Sleep(5 * time.Millisecond)
	if !fw.tryFrame(time.Now(), nodestream.FrameSnapshot, []byte("{}")) || fw.err != nil {
		t.Fatalf("frame by the feed after the first deadline: %v", fw.err)
	}
	if len(set) != 2 || time.Until(set[1]) < streamWriteTimeout {
		t.Fatalf("write deadlines set %v, want a second one at least %s ahead", set, streamWriteTimeout)
	}
}

// The group feed's keep-alive walk (keepalive): a parked raw stream that
// sent nothing for StreamKeepalive/2 gets its keep-alive frame from the
// feed's goroutine; a due stream it cannot write (not raw, not parked) is
// asked to send its own (keep, not a turn); one that sent a frame lately,
// or is busy, is left alone.
func TestFeedKeepalive(t *testing.T) {
	type peer struct {
		r      *nodeStream
		client net.Conn
	}
	now := time.Now()
	g := &groupFeed{members: map[*nodeStream]struct{}{}}
	open := func(raw, parked bool, last time.Time) peer {
		client, server := tcpPair(t)
		fw := &frameWriter{w: server, setDeadline: server.SetWriteDeadline, last: last}
		if raw {
			fw.raw = rawConnOf(server)
		}
		r := &nodeStream{fw: fw, parked: parked, wake: make(chan struct{}, 1), keep: make(chan struct{}, 1)}
		g.members[r] = struct{}{}
		g.changed = true
		return peer{r, client}
	}
	old := now.Add(-StreamKeepalive)
	due := open(true, true, old)
	fresh := open(true, true, now)
	h2 := open(false, true, old)
	busy := open(true, true, old)
	unparked := open(true, false, old)
	busy.r.mu.Lock()
	g.keepalive(now)
	busy.r.mu.Unlock()

	_ = due.client.SetReadDeadline(time.Now().Add(10 * time.Second))
	kind, n, err := nodestream.NewReader(due.client, 64).Header()
	if err != nil || kind != nodestream.FrameKeepalive || n != 0 {
		t.Fatalf("due raw stream: frame %q of %d bytes, %v; want a keep-alive", kind, n, err)
	}
	if !due.r.fw.last.Equal(now) || !due.r.parked {
		t.Fatalf("due raw stream: last frame at %v, parked %v", due.r.fw.last, due.r.parked)
	}
	woken := func(p peer) bool {
		select {
		case <-p.r.wake:
			t.Fatal("the keep-alive walk woke a stream for a turn")
		default:
		}
		select {
		case <-p.r.keep:
			return true
		default:
			return false
		}
	}
	if woken(due) || woken(fresh) || woken(busy) {
		t.Fatal("a stream the feed served, or did not need to, was woken")
	}
	if !woken(h2) || !woken(unparked) || !h2.r.parked {
		t.Fatal("a due stream the feed cannot write was not asked for its own keep-alive")
	}
	for _, p := range []peer{fresh, h2, busy, unparked} {
		_ = p.client.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		if _, _, err := nodestream.NewReader(p.client, 64).Header(); err == nil {
			t.Fatal("the feed wrote a keep-alive it should have left to the stream")
		}
	}
}

// tcpPair is a connected loopback TCP pair, closed when the test ends.
func tcpPair(t *testing.T) (client net.Conn, server *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	sc, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sc.Close() })
	return client, sc.(*net.TCPConn)
}
