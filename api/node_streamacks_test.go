package api_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/fulcrumlb/fulcrum/api"
)

// The raw stream on the API's own listener, its messages read by the
// replica's ack reader (node_streamacks.go): an acknowledgement cut across
// two writes is recorded; the agent closing its side within a line ends
// the stream with a 400 close frame, as the stream's own reader did.
func TestRawStreamAcksByTheReplicaReader(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.register("n1") // no load balancers: the second replica has another secret box
	addr := serveReplica(t, b)
	for round := range 2 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		conn := c.(*net.TCPConn)
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
		open := "GET /v1/nodes/n1/stream?after=0 HTTP/1.1\r\nHost: api\r\nConnection: Upgrade\r\nUpgrade: fulcrum-node-stream\r\n" +
			"Authorization: Bearer " + b.Node + "\r\nFulcrum-Agent-Protocol: 3\r\nFulcrum-Agent-Format: 2\r\n\r\n"
		if _, err := io.WriteString(conn, open); err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(conn)
		res, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		if res.StatusCode != http.StatusSwitchingProtocols {
			t.Fatalf("open: %d", res.StatusCode)
		}
		res.Body = io.NopCloser(br)
		s := readFrames(t, res, conn)
		rev := int64(s.snapshot("first frame")["revision"].(float64))
		if round == 0 {
			// The resync and the acknowledgement in one write, the
			// acknowledgement cut across two.
			line := fmt.Sprintf(`{"type":"ack","applied":%d}`+"\n", rev)
			if _, err := io.WriteString(conn, `{"type":"resync","after":0}`+"\n"+line[:10]); err != nil {
				t.Fatal(err)
			}
			s.snapshot("frame after the resync")
			time.Sleep(20 * time.Millisecond)
			if _, err := io.WriteString(conn, line[10:]); err != nil {
				t.Fatal(err)
			}
			b.waitFor("the acknowledgement cut across two writes", func() bool { return b.appliedRevision("n1") == rev })
			continue
		}
		if _, err := io.WriteString(conn, `{"type":"ping"}`+"\n"+`{"type":"ack","appl`); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
		_ = conn.CloseWrite()
		s.closed("after the agent closed its side within a line", http.StatusBadRequest)
	}
}

// Keep-alives, now sent by the group's feed (its goroutine writes a parked
// raw stream's, and wakes an HTTP/2 stream for its own), still reach an
// idle stream of either transport within StreamKeepalive.
func TestStreamKeepalives(t *testing.T) {
	t.Parallel()
	b := setup(t)
	url := h2cServer(t, b)
	var streams []*testStream
	for i, tp := range transports {
		name := fmt.Sprintf("k%d", i)
		b.register(name)
		s, res := tp.open(t, url, b.Node, name, "?after=0")
		if s == nil {
			t.Fatalf("%s: open: %d", tp.name, res.StatusCode)
		}
		s.snapshot("first frame")
		streams = append(streams, s)
	}
	start := time.Now()
	for i, s := range streams {
		timeout := time.After(api.StreamKeepalive + 10*time.Second - time.Since(start))
	frames:
		for {
			select {
			case f, ok := <-s.frames:
				if !ok {
					t.Fatalf("%s: the stream ended", transports[i].name)
				}
				if f.kind == 'K' {
					t.Logf("%s: keep-alive %s after the first frame", transports[i].name, time.Since(start).Round(time.Millisecond))
					break frames
				}
				t.Fatalf("%s: frame %q, want a keep-alive", transports[i].name, f.kind)
			case <-timeout:
				t.Fatalf("%s: no keep-alive within %s", transports[i].name, api.StreamKeepalive+10*time.Second)
			}
		}
	}
}
