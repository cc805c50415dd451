package api

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fulcrumlb/fulcrum/dataplane/nodestream"
)

// ackPair is one raw stream read by the replica's ack reader: client is the
// agent's end of its connection.
type ackPair struct {
	r      *nodeStream
	client *net.TCPConn
	ctx    context.Context
	msgs   chan streamMessage
	demote chan []byte
	stop   func()
}

func newAckHandlers() *handlers {
	h := &handlers{log: slog.New(slog.NewTextHandler(io.Discard, nil)), reportw: newReportWriter(nil, nil)}
	h.feeds.h = h
	return h
}

func openAckPair(t *testing.T, h *handlers, ln net.Listener, name string, msgsRoom int) *ackPair {
	t.Helper()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	sc, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	server := sc.(*net.TCPConn)
	ctx, cancel := context.WithCancelCause(context.Background())
	t.Cleanup(func() { cancel(nil) })
	p := &ackPair{client: client.(*net.TCPConn), ctx: ctx, msgs: make(chan streamMessage, msgsRoom), demote: make(chan []byte, 1)}
	p.r = &nodeStream{h: h, name: name, rawRead: rawConnOf(server), rawConn: server}
	stop, ok := h.feeds.readAcks(ctx, p.r, cancel, p.msgs, func(rest []byte) { p.demote <- rest })
	if !ok {
		t.Fatal("a raw TCP stream was not taken by the ack reader")
	}
	p.stop = func() { stop(); server.Close() }
	t.Cleanup(p.stop)
	return p
}

func (p *ackPair) write(t *testing.T, s string) {
	t.Helper()
	if _, err := io.WriteString(p.client, s); err != nil {
		t.Fatal(err)
	}
}

// ended waits for the stream's end and returns its cause.
func (p *ackPair) ended(t *testing.T, what string) error {
	t.Helper()
	select {
	case <-p.ctx.Done():
		return context.Cause(p.ctx)
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: the stream did not end", what)
		return nil
	}
}

// pendingAck is the revision the ack batch holds for node name (-1: none).
func pendingAck(w *reportWriter, name string) int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	for k, p := range w.acks {
		if k.name == name {
			return p.applied
		}
	}
	return -1
}

func waitAcks(t *testing.T, w *reportWriter, want map[string]int64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		missing := 0
		for name, rev := range want {
			if pendingAck(w, name) != rev {
				missing++
			}
		}
		if missing == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d streams' acknowledgements did not reach the ack batch", missing, len(want))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Acknowledgements of many raw streams, some written a byte at a time or
// cut across writes, all reach the ack batch (the highest per node), and
// the reader stops after the last stream left.
func TestAckReaderManyStreams(t *testing.T) {
	h := newAckHandlers()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	const n = 200
	pairs := make([]*ackPair, n)
	want := map[string]int64{}
	for i := range pairs {
		pairs[i] = openAckPair(t, h, ln, fmt.Sprintf("n%d", i), 16)
	}
	for round := int64(1); round <= 3; round++ {
		for i, p := range pairs {
			line := string(nodestream.Ack(round*100 + int64(i)))
			switch i % 4 {
			case 0: // whole
				p.write(t, line)
			case 1: // cut in two writes
				p.write(t, line[:7])
			case 2: // with a ping and an empty line
				p.write(t, string(nodestream.Ping)+"\n"+line)
			case 3: // as the JSON decoder reads it
				p.write(t, fmt.Sprintf(`{"applied":%d, "type":"ack"}`+"\n", round*100+int64(i)))
			}
			want[p.r.name] = round*100 + int64(i)
		}
		for i, p := range pairs {
			if i%4 == 1 {
				time.Sleep(time.Millisecond)
				p.write(t, string(nodestream.Ack(round*100 + int64(i)))[7:])
			}
		}
		waitAcks(t, h.reportw, want)
	}
	// One byte a write.
	line := string(nodestream.Ack(12345))
	for i := range len(line) {
		pairs[0].write(t, line[i:i+1])
		time.Sleep(time.Millisecond)
	}
	want[pairs[0].r.name] = 12345
	waitAcks(t, h.reportw, want)
	select {
	case <-h.reportw.ackReady:
	default:
		t.Fatal("the acknowledgements did not wake the ack batch")
	}
	for _, p := range pairs {
		if p.ctx.Err() != nil {
			t.Fatalf("%s ended: %v", p.r.name, context.Cause(p.ctx))
		}
	}
	h.feeds.mu.Lock()
	a := h.feeds.acks
	h.feeds.mu.Unlock()
	if a == nil || a.users != n {
		t.Fatalf("one reader with %d streams expected, got %+v", n, a)
	}
	for _, p := range pairs {
		p.stop()
	}
	h.feeds.mu.Lock()
	left := h.feeds.acks
	h.feeds.mu.Unlock()
	if left != nil {
		t.Fatal("the reader stayed after the last stream left")
	}
	if err := a.file.SetReadDeadline(time.Time{}); err == nil {
		t.Fatalf("the reader's epoll set is still open: %v", err)
	}
}

// A stream's end, as readMessages ends it: the agent's EOF (io.EOF), EOF
// after part of a line, a malformed message, a message too long (cut
// across reads), a stream idle past streamReadIdle. Each leaves the set.
func TestAckReaderEnds(t *testing.T) {
	h := newAckHandlers()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	is400 := func(err error, detail string) bool {
		var end streamEnd
		return errors.As(err, &end) && end.p.Status == 400 && strings.Contains(end.p.Error()+fmt.Sprint(end.p.Errors), detail)
	}

	p := openAckPair(t, h, ln, "eof", 16)
	p.write(t, string(nodestream.Ack(3)))
	_ = p.client.CloseWrite()
	if err := p.ended(t, "EOF"); !errors.Is(err, io.EOF) {
		t.Fatalf("EOF: ended with %v", err)
	}
	if got := pendingAck(h.reportw, "eof"); got != 3 {
		t.Fatalf("the acknowledgement before EOF: %d", got)
	}

	p = openAckPair(t, h, ln, "half", 16)
	p.write(t, `{"type":"ack","appl`)
	time.Sleep(20 * time.Millisecond)
	_ = p.client.CloseWrite()
	if err := p.ended(t, "EOF within a line"); !is400(err, "newline") {
		t.Fatalf("EOF within a line: ended with %v", err)
	}

	p = openAckPair(t, h, ln, "garbage", 16)
	p.write(t, "garbage\n")
	if err := p.ended(t, "garbage"); !is400(err, "message") {
		t.Fatalf("garbage: ended with %v", err)
	}

	p = openAckPair(t, h, ln, "long", 16)
	p.write(t, strings.Repeat("x", 3000))
	time.Sleep(20 * time.Millisecond)
	p.write(t, strings.Repeat("x", 2000))
	if err := p.ended(t, "too long"); !is400(err, "longer") {
		t.Fatalf("too long: ended with %v", err)
	}

	p = openAckPair(t, h, ln, "longline", 16)
	p.write(t, strings.Repeat("x", 5000)+"\n")
	if err := p.ended(t, "too long, whole"); !is400(err, "longer") {
		t.Fatalf("too long, whole: ended with %v", err)
	}

	p = openAckPair(t, h, ln, "reset", 16)
	_ = p.client.SetLinger(0)
	p.client.Close()
	if err := p.ended(t, "reset"); err == nil {
		t.Fatal("reset: no cause")
	}

	p = openAckPair(t, h, ln, "idle", 16)
	q := openAckPair(t, h, ln, "busy", 16)
	h.feeds.mu.Lock()
	a := h.feeds.acks
	h.feeds.mu.Unlock()
	a.mu.Lock()
	for _, s := range a.streams {
		if s.r == q.r {
			s.last = time.Now().Add(streamReadIdle)
		}
	}
	a.mu.Unlock()
	a.sweep(time.Now().Add(streamReadIdle + time.Second))
	if err := p.ended(t, "idle"); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("idle: ended with %v", err)
	}
	if q.ctx.Err() != nil {
		t.Fatal("a stream with a recent message ended with the idle one")
	}
	a.mu.Lock()
	left := len(a.streams)
	a.mu.Unlock()
	if left != 1 {
		t.Fatalf("%d streams left in the set, want the busy one", left)
	}
}

// Resyncs go to the stream's goroutine; one it has no room for yet hands
// the stream to a goroutine of its own, with everything from that message
// on (nothing read is lost).
func TestAckReaderResync(t *testing.T) {
	h := newAckHandlers()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	p := openAckPair(t, h, ln, "n1", 1)
	p.write(t, string(nodestream.Resync(4, true)))
	select {
	case m := <-p.msgs:
		if m.Type != "resync" || *m.After != 4 || !*m.Delta {
			t.Fatalf("resync: %+v", m)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the resync did not reach the stream")
	}
	p.write(t, string(nodestream.Resync(5, false))+string(nodestream.Resync(6, false))+string(nodestream.Ack(7))+`{"type":"pi`)
	select {
	case rest := <-p.demote:
		want := string(nodestream.Resync(6, false)) + string(nodestream.Ack(7)) + `{"type":"pi`
		if string(rest) != want {
			t.Fatalf("handed over %q, want %q", rest, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the stream was not handed over")
	}
	if m := <-p.msgs; *m.After != 5 {
		t.Fatalf("first resync: %+v", m)
	}
	if p.ctx.Err() != nil {
		t.Fatalf("the stream ended: %v", context.Cause(p.ctx))
	}
	h.feeds.mu.Lock()
	a := h.feeds.acks
	h.feeds.mu.Unlock()
	a.mu.Lock()
	left := len(a.streams)
	a.mu.Unlock()
	if left != 0 {
		t.Fatal("a stream handed over stayed in the set")
	}
}

// BenchmarkStreamAckReads compares the API's CPU for reading one
// acknowledgement from each of 1,000 raw streams, as a write brings them
// (in chunks of 25 with a millisecond between: spread over ~40 ms), by a
// goroutine per stream (readMessages) and by the replica's ack reader
// (with its coalescing pause, ackCoalesce, and with 0 and 5 ms). The agents are another process
// (this test binary, TestAckClientProcess), as in the fleet: cpu-ms/round
// is this process's CPU (user + system) per round of 1,000
// acknowledgements; "none" reads nothing (the cost of waiting alone).
//
//	go test -run '^$' -bench StreamAckReads -benchtime 40x ./api/
func BenchmarkStreamAckReads(b *testing.B) {
	for _, mode := range []string{"none", "goroutine", "reader", "reader-0ms", "reader-5ms"} {
		b.Run(mode, func(b *testing.B) {
			if d, ok := strings.CutPrefix(mode, "reader-"); ok {
				defer func(d time.Duration) { ackCoalesce = d }(ackCoalesce)
				ackCoalesce, _ = time.ParseDuration(d)
				mode = "reader"
			}
			benchAckReads(b, mode, 1000)
		})
	}
}

// TestAckClientProcess is BenchmarkStreamAckReads's agents: with
// FULCRUM_ACK_CLIENT=addr,n it opens n connections to addr, then for each
// line on stdin writes one acknowledgement on each (in chunks of 25, a
// millisecond apart) and answers a line.
func TestAckClientProcess(t *testing.T) {
	addr, count, ok := strings.Cut(os.Getenv("FULCRUM_ACK_CLIENT"), ",")
	if !ok {
		t.Skip("BenchmarkStreamAckReads's agents")
	}
	var n int
	fmt.Sscan(count, &n)
	conns := make([]net.Conn, n)
	for i := range conns {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		conns[i] = c
	}
	in := bufio.NewScanner(os.Stdin)
	for round := int64(1); in.Scan(); round++ {
		line := nodestream.Ack(round)
		for i, c := range conns {
			if _, err := c.Write(line); err != nil {
				t.Fatal(err)
			}
			if i%25 == 24 {
				time.Sleep(time.Millisecond)
			}
		}
		fmt.Println("done")
	}
}

func benchAckReads(b *testing.B, mode string, n int) {
	h := newAckHandlers()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	cmd := exec.Command(os.Args[0], "-test.run", "^TestAckClientProcess$")
	cmd.Env = append(os.Environ(), fmt.Sprintf("FULCRUM_ACK_CLIENT=%s,%d", ln.Addr(), n))
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { stdin.Close(); _ = cmd.Wait() }()
	out := bufio.NewScanner(stdout)
	for i := range n {
		sc, err := ln.Accept()
		if err != nil {
			b.Fatal(err)
		}
		server := sc.(*net.TCPConn)
		defer server.Close()
		r := &nodeStream{h: h, name: fmt.Sprintf("n%d", i), rawRead: rawConnOf(server), rawConn: server}
		msgs := make(chan streamMessage, 16)
		if mode == "reader" {
			stop, ok := h.feeds.readAcks(ctx, r, cancel, msgs, func([]byte) {})
			if !ok {
				b.Fatal("not read by the ack reader")
			}
			defer stop()
		} else if mode == "goroutine" {
			go r.readMessages(ctx, cancel, server, &deadline{set: server.SetReadDeadline, span: streamReadIdle}, msgs)
		}
	}
	cpu := func() time.Duration {
		var ru syscall.Rusage
		_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	b.ResetTimer()
	c0 := cpu()
	for round := range b.N {
		fmt.Fprintln(stdin, "round")
		if !out.Scan() {
			b.Fatal("the agents' process ended")
		}
		want := int64(round+1) * int64(n)
		for mode != "none" && h.reportw.streamAcks.Load() < want {
			time.Sleep(100 * time.Microsecond)
		}
		if ctx.Err() != nil {
			b.Fatal(context.Cause(ctx))
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(cpu()-c0)/1e6/float64(b.N), "cpu-ms/round")
}
