package api_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

// One writer per group feed (node_streamfan.go): the feed's goroutine
// pushes the frames of the group's idle raw streams itself and wakes a
// stream's goroutine only when it must take its turn. Every stream still
// gets exactly one frame per write, each a delta from the frame before; a
// stream whose reader stalls holds none of the others and gets everything,
// in order, once it reads again; a resync during a write is honoured.

// chain follows one stream's snapshot frames: each delta must be from the
// revision of the frame before it.
type chain struct {
	name string
	s    *testStream
	rev  int64
}

// next reads the stream's next snapshot frame and checks it continues the
// chain; it returns the frame.
func (c *chain) next(t *testing.T, what string) map[string]any {
	t.Helper()
	f := c.s.snapshot(c.name + ": " + what)
	rev := int64(f["revision"].(float64))
	if f["delta"] == true {
		if base := int64(f["base_revision"].(float64)); base != c.rev {
			t.Fatalf("%s: %s: a delta from revision %d, the frame before was at %d", c.name, what, base, c.rev)
		}
	}
	if rev < c.rev || (rev == c.rev && f["delta"] == true) {
		t.Fatalf("%s: %s: revision %d after %d (delta %v)", c.name, what, rev, c.rev, f["delta"])
	}
	c.rev = rev
	return f
}

// quiet checks no snapshot frame comes for a while (keep-alives may).
func (c *chain) quiet(t *testing.T, what string) {
	t.Helper()
	timeout := time.After(300 * time.Millisecond)
	for {
		select {
		case f, ok := <-c.s.frames:
			if !ok {
				t.Fatalf("%s: %s: the stream ended", c.name, what)
			}
			if f.kind != 'K' {
				t.Fatalf("%s: %s: frame %q %.200s, want none", c.name, what, f.kind, f.payload)
			}
		case <-timeout:
			return
		}
	}
}

// openChains opens a stream for each of n nodes of the bundle's group, raw
// but for the last two (HTTP/2: woken by the feed, not written by it), and
// reads their first frames.
func openChains(t *testing.T, b *bundle, url string, n int) []*chain {
	t.Helper()
	var out []*chain
	for i := range n {
		name := fmt.Sprintf("fan%02d", i)
		b.register(name)
		open := transports[1].open // raw
		if i >= n-2 {
			open = transports[0].open // h2
		}
		s, res := open(t, url, b.Node, name, "?after=0")
		if s == nil {
			t.Fatalf("open %s: %d", name, res.StatusCode)
		}
		c := &chain{name: name, s: s}
		c.next(t, "first frame")
		out = append(out, c)
	}
	return out
}

// Every stream of a group gets exactly one frame per write, at the write's
// revision, a delta from the frame before.
func TestStreamFanoutOneFramePerWrite(t *testing.T) {
	t.Parallel()
	b := setup(t)
	url := h2cServer(t, b)
	b.buildTree(b.TokenA)
	chains := openChains(t, b, url, 12)
	for w := range 4 {
		b.create(b.TokenA, "/v1/load-balancers", map[string]any{"name": fmt.Sprintf("w%d", w), "node_group_id": b.GroupID})
		rev := b.revision()
		for _, c := range chains {
			f := c.next(t, fmt.Sprintf("write %d", w))
			if c.rev != rev || f["delta"] != true || len(f["load_balancers"].([]any)) != 1 {
				t.Fatalf("%s: write %d: revision %d (want %d), delta %v, %d load balancers", c.name, w, c.rev, rev, f["delta"], len(f["load_balancers"].([]any)))
			}
		}
	}
	for _, c := range chains {
		c.quiet(t, "after the writes")
	}
}

// A resync sent while a write fans out is honoured: the stream gets the
// complete snapshot again, and its frames stay a chain up to the write.
func TestStreamFanoutResyncDuringWrite(t *testing.T) {
	t.Parallel()
	b := setup(t)
	url := h2cServer(t, b)
	b.buildTree(b.TokenA)
	chains := openChains(t, b, url, 6)
	for w := range 3 {
		done := make(chan struct{})
		go func() {
			defer close(done)
			b.create(b.TokenA, "/v1/load-balancers", map[string]any{"name": fmt.Sprintf("r%d", w), "node_group_id": b.GroupID})
		}()
		c := chains[w]
		c.s.send(`{"type":"resync","after":0,"delta":true}`)
		<-done
		rev := b.revision()
		full := false
		for c.rev < rev || !full {
			f := c.next(t, fmt.Sprintf("after the resync of write %d", w))
			full = full || f["delta"] != true
		}
		for _, o := range chains {
			for o.rev < rev {
				o.next(t, fmt.Sprintf("write %d", w))
			}
			if o.rev != rev {
				t.Fatalf("%s: write %d: revision %d, want %d", o.name, w, o.rev, rev)
			}
		}
	}
	for _, c := range chains {
		c.quiet(t, "after the writes")
	}
}

// A stream whose agent stops reading (its socket full, its goroutine
// blocked in a write) holds none of the group's other streams; once it
// reads again it gets well-formed frames, in order, up to the last write.
func TestStreamFanoutStalledReader(t *testing.T) {
	t.Parallel()
	b := setup(t)
	url := h2cServer(t, b)
	b.buildTree(b.TokenA)
	chains := openChains(t, b, url, 6)
	b.register("stalled")
	conn, br := dialRaw(t, strings.TrimPrefix(url, "http://"), b.Node, "stalled")
	// Ask for the complete snapshot again and again without reading: the
	// stream's goroutine ends up blocked writing to a full socket, and it
	// stops reading messages, until the agent's own writes block.
	// (Each message padded to 4 KiB, the longest the API reads, so that
	// the buffers fill within a few thousand.)
	resync := `{"type":"resync","after":0}` + strings.Repeat(" ", 4000) + "\n"
	stalled := false
	for i := 0; i < 20000 && !stalled; i++ {
		_ = conn.SetWriteDeadline(time.Now().Add(time.Second))
		_, err := io.WriteString(conn, resync)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			stalled = true
		} else if err != nil {
			t.Fatal(err)
		}
	}
	if !stalled {
		t.Fatal("the stream never stalled")
	}
	for w := range 2 {
		b.create(b.TokenA, "/v1/load-balancers", map[string]any{"name": fmt.Sprintf("s%d", w), "node_group_id": b.GroupID})
		rev := b.revision()
		for _, c := range chains {
			c.next(t, fmt.Sprintf("write %d, a stream of the group stalled", w))
			if c.rev != rev {
				t.Fatalf("%s: write %d: revision %d, want %d", c.name, w, c.rev, rev)
			}
		}
	}
	// The stalled stream reads again: frames, whole and in order, up to the
	// last write (the resyncs answered with complete snapshots).
	rev := b.revision()
	res := &http.Response{Body: io.NopCloser(br), Header: http.Header{"Fulcrum-Stream-Encoding": {"identity"}}}
	s := readFrames(t, res, io.Discard)
	c := &chain{name: "stalled", s: s}
	for n := 0; c.rev < rev; n++ {
		f := s.snapshot(fmt.Sprintf("frame %d of the stalled stream", n))
		got := int64(f["revision"].(float64))
		if got < c.rev {
			t.Fatalf("stalled stream: frame %d at revision %d after %d", n, got, c.rev)
		}
		c.rev = got
	}
	if c.rev != rev {
		t.Fatalf("stalled stream: revision %d, want %d", c.rev, rev)
	}
}

// dialRaw opens node's raw stream on addr over a connection with a small
// receive buffer, without reading its frames: it returns the connection and
// a reader positioned after the 101.
func dialRaw(t *testing.T, addr, token, node string) (net.Conn, *bufio.Reader) {
	t.Helper()
	d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) {
			serr = errors.Join(syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096),
				syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_SNDBUF, 4096))
		}); err != nil {
			return err
		}
		return serr
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	open := "GET /v1/nodes/" + node + "/stream?after=0 HTTP/1.1\r\nHost: api\r\nConnection: Upgrade\r\nUpgrade: fulcrum-node-stream\r\n" +
		"Authorization: Bearer " + token + "\r\nFulcrum-Agent-Protocol: 3\r\nFulcrum-Agent-Format: 2\r\n\r\n"
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.WriteString(conn, open); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReaderSize(conn, 1024)
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("open %s: %d", node, res.StatusCode)
	}
	_ = conn.SetDeadline(time.Time{})
	return conn, br
}
