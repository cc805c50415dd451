package agent

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/fulcrumlb/fulcrum/dataplane/nodestream"
	"github.com/fulcrumlb/fulcrum/openapi"
)

// A stream feeds its frames to the apply path as polls do: a clean apply is
// acknowledged on the stream, a delta that does not merge asks for a
// complete snapshot (resync after 0), and a close frame says what next; the
// same over the raw stream (an HTTP/1.1 upgrade) and over HTTP/2 (a server
// that speaks HTTP/2 only: the raw stream cannot be opened, the agent falls
// back to the HTTP/2 stream); over TLS the raw stream asks ALPN http/1.1
// of a server that speaks both.
func TestStreamFramesAndMessages(t *testing.T) {
	for _, transport := range []string{"raw", "h2", "raw-tls"} {
		t.Run(transport, func(t *testing.T) { testStreamFramesAndMessages(t, transport) })
	}
}

func testStreamFramesAndMessages(t *testing.T, transport string) {
	type step struct {
		frame func(w io.Writer)
		want  string // the agent's next message after the frame ("" for none awaited)
	}
	snapFrame := func(s *openapi.Snapshot) func(w io.Writer) {
		return func(w io.Writer) {
			b, _ := json.Marshal(s)
			writeFrame(w, 'S', b)
		}
	}
	full := func(rev int64, lbs ...openapi.SnapshotLoadBalancer) *openapi.Snapshot {
		return &openapi.Snapshot{FormatVersion: 2, Revision: rev, LoadBalancers: lbs}
	}
	steps := []step{
		{snapFrame(full(5, lbWith("lb_a", "127.0.0.2", 80))), `{"type":"ack","applied":5}`},
		{func(w io.Writer) { writeFrame(w, 'K', nil) }, ""},
		{snapFrame(deltaSnap(5, 7, nil, lbWith("lb_a", "127.0.0.2", 80, 81))), `{"type":"ack","applied":7}`},
		// A delta after a revision the agent does not hold.
		{snapFrame(deltaSnap(6, 8, nil, lbWith("lb_b", "127.0.0.3", 80))), `{"type":"resync","after":0,"delta":false}`},
		{snapFrame(full(9, lbWith("lb_a", "127.0.0.2", 80), lbWith("lb_b", "127.0.0.3", 80))), `{"type":"ack","applied":9}`},
	}
	got := make(chan string, 16)
	serve := func(w io.Writer, body io.Reader) {
		sc := bufio.NewScanner(body)
		for _, s := range steps {
			s.frame(w)
			if s.want == "" {
				continue
			}
			for sc.Scan() {
				if sc.Text() != `{"type":"ping"}` {
					got <- sc.Text()
					break
				}
			}
		}
		writeFrame(w, 'C', []byte(`{"status":503,"detail":"stopping"}`))
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get(agentProtocolHeader) != "3" || r.URL.Query().Get("after") != "0" {
			http.Error(w, "bad open", http.StatusBadRequest)
			return
		}
		if r.Method == http.MethodGet {
			if r.Header.Get("Upgrade") != nodestream.UpgradeToken || r.ProtoMajor != 1 || (transport == "raw-tls") != (r.TLS != nil) {
				http.Error(w, "not an upgrade", http.StatusUpgradeRequired)
				return
			}
			conn, brw, err := http.NewResponseController(w).Hijack()
			if err != nil {
				t.Error(err)
				return
			}
			defer conn.Close()
			_, _ = io.WriteString(conn, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: "+nodestream.UpgradeToken+
				"\r\nContent-Type: "+nodestream.ContentType+"\r\nFulcrum-Stream-Encoding: identity\r\n\r\n")
			serve(conn, brw.Reader)
			return
		}
		w.Header().Set("Content-Type", nodestream.ContentType)
		w.Header().Set("Fulcrum-Stream-Encoding", "identity")
		w.WriteHeader(http.StatusOK)
		http.NewResponseController(w).Flush()
		serve(w, r.Body)
	}))
	var p http.Protocols
	if transport != "h2" {
		p.SetHTTP1(true)
	}
	p.SetUnencryptedHTTP2(true)
	if transport == "raw-tls" {
		p.SetHTTP2(true)
		srv.EnableHTTP2 = true
		srv.StartTLS()
	} else {
		srv.Config.Protocols = &p
		srv.Start()
	}
	t.Cleanup(srv.Close)
	a, _ := testAgent(t, srv.URL)
	spans := tracetest.NewSpanRecorder()
	a.tracer = sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans)).Tracer("test")
	if transport == "raw-tls" {
		cfg := Config{Endpoint: srv.URL, HTTPClient: srv.Client()}
		a.rawClient, a.streamClient = newRawStreamClient(cfg), newStreamClient(cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	end := make(chan streamEnd, 1)
	go func() { end <- a.runStream(ctx) }()
	for _, s := range steps {
		if s.want == "" {
			continue
		}
		select {
		case m := <-got:
			if m != s.want {
				t.Fatalf("message %s, want %s", m, s.want)
			}
		case e := <-end:
			t.Fatalf("the stream ended (%d) before the message %s", e, s.want)
		case <-ctx.Done():
			t.Fatalf("no message %s", s.want)
		}
	}
	if e := <-end; e != streamBroken {
		t.Fatalf("after a 503 close frame: %d, want streamBroken (open again)", e)
	}
	if a.AppliedRevision() != 9 || len(served(a)) != 2 {
		t.Fatalf("serving %v at %d, want lb_a and lb_b at 9", served(a), a.AppliedRevision())
	}
	if opened, frames := a.Streams(); opened != 1 || frames != 4 {
		t.Fatalf("%d streams, %d snapshots on them; want 1, 4", opened, frames)
	}
	if raw, want := a.RawStreams(), map[string]int64{"raw": 1, "h2": 0, "raw-tls": 1}[transport]; raw != want {
		t.Fatalf("%d streams opened raw, want %d", raw, want)
	}
	checkFrameSpans(t, spans.Ended(), []int64{5, 7, 8, 9})
	if transport == "h2" && a.rawNow() {
		t.Fatal("the raw stream could not be opened, yet it is to be tried again at once")
	}
	// A 404 close frame: register again; another close: long-poll.
	if e := a.streamClosed([]byte(`{"status":404,"detail":"node n1 not found"}`)); e != streamReregister {
		t.Errorf("404 close: %d", e)
	}
	if e := a.streamClosed([]byte(`{"status":401}`)); e != streamNotOpened {
		t.Errorf("401 close: %d", e)
	}
	if isNodeNotFound([]byte(`{"status":404,"detail":"No such route."}`)) || !isNodeNotFound([]byte(`{"status":404,"detail":"Node n1 not found."}`)) {
		t.Error("isNodeNotFound")
	}
}

// checkFrameSpans checks each snapshot frame (of the revisions revs, in
// order) has its "agent.stream.frame" span, a root of its own, from the
// frame's read through its decoding, ended before the apply of a frame
// that merged begins: a trace places the frame's read and decoding apart
// from its apply.
func checkFrameSpans(t *testing.T, ended []sdktrace.ReadOnlySpan, revs []int64) {
	t.Helper()
	var frames []sdktrace.ReadOnlySpan
	applies := map[int64]sdktrace.ReadOnlySpan{}
	for _, s := range ended {
		switch s.Name() {
		case "agent.stream.frame":
			frames = append(frames, s)
		case "agent.apply":
			for _, kv := range s.Attributes() {
				if kv.Key == attrRevision {
					applies[kv.Value.AsInt64()] = s
				}
			}
		}
	}
	if len(frames) != len(revs) {
		t.Fatalf("%d agent.stream.frame spans, want %d (one per snapshot frame)", len(frames), len(revs))
	}
	for i, s := range frames {
		var names []string
		var rev int64
		for _, e := range s.Events() {
			names = append(names, e.Name)
			for _, kv := range e.Attributes {
				if kv.Key == attrRevision {
					rev = kv.Value.AsInt64()
				}
			}
		}
		if strings.Join(names, ",") != "payload read,decoded" || rev != revs[i] || s.Parent().IsValid() {
			t.Errorf("frame %d: events %v, revision %d (want %d), parent %v; want a root with payload read, decoded", i, names, rev, revs[i], s.Parent().IsValid())
		}
		if ap, ok := applies[rev]; ok && ap.StartTime().Before(s.EndTime()) {
			t.Errorf("frame %d: the apply of revision %d began before the frame's span ended", i, rev)
		}
	}
}

func writeFrame(w io.Writer, kind byte, payload []byte) {
	var hdr [5]byte
	hdr[0] = kind
	binary.BigEndian.PutUint32(hdr[1:], uint32(len(payload)))
	_, _ = w.Write(hdr[:])
	_, _ = w.Write(payload)
	if rw, ok := w.(http.ResponseWriter); ok {
		_ = http.NewResponseController(rw).Flush()
	}
}

// An agent on the HTTP/2 stream because the raw one was refused tries the
// raw one again when it is due: the HTTP/2 stream ends (between applies,
// its acknowledgements sent) and the next stream is raw.
func TestStreamRetriesRaw(t *testing.T) {
	snap := func(rev int64) []byte {
		b, _ := json.Marshal(&openapi.Snapshot{FormatVersion: 2, Revision: rev, LoadBalancers: []openapi.SnapshotLoadBalancer{lbWith("lb_a", "127.0.0.2", 80)}})
		return b
	}
	var upgrades atomic.Int32
	acks := make(chan string, 16)
	readAck := func(sc *bufio.Scanner) {
		for sc.Scan() {
			if sc.Text() != `{"type":"ping"}` {
				acks <- sc.Text()
				return
			}
		}
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet {
			if upgrades.Add(1) == 1 {
				http.Error(w, "no upgrade here", http.StatusUpgradeRequired)
				return
			}
			conn, brw, err := http.NewResponseController(w).Hijack()
			if err != nil {
				t.Error(err)
				return
			}
			defer conn.Close()
			_, _ = io.WriteString(conn, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: "+nodestream.UpgradeToken+
				"\r\nContent-Type: "+nodestream.ContentType+"\r\n\r\n")
			writeFrame(conn, 'S', snap(6))
			readAck(bufio.NewScanner(brw.Reader))
			writeFrame(conn, 'C', []byte(`{"status":503}`))
			return
		}
		w.Header().Set("Content-Type", nodestream.ContentType)
		w.WriteHeader(http.StatusOK)
		writeFrame(w, 'S', snap(5))
		readAck(bufio.NewScanner(r.Body))
		for { // keep-alives until the agent ends the stream
			select {
			case <-r.Context().Done():
				return
			case <-time.After(50 * time.Millisecond):
				writeFrame(w, 'K', nil)
			}
		}
	}))
	var p http.Protocols
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	srv.Config.Protocols = &p
	srv.Start()
	t.Cleanup(srv.Close)
	a, _ := testAgent(t, srv.URL)
	a.stream.rawRetryMin = 500 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i, want := range []string{`{"type":"ack","applied":5}`, `{"type":"ack","applied":6}`} {
		end := make(chan streamEnd, 1)
		go func() { end <- a.runStream(ctx) }()
		select {
		case m := <-acks:
			if m != want {
				t.Fatalf("stream %d: message %s, want %s", i+1, m, want)
			}
		case <-ctx.Done():
			t.Fatalf("stream %d: no message %s", i+1, want)
		}
		if e := <-end; e != streamBroken {
			t.Fatalf("stream %d ended %d, want streamBroken (open again)", i+1, e)
		}
	}
	if opened, _ := a.Streams(); opened != 2 || a.RawStreams() != 1 || upgrades.Load() != 2 {
		t.Fatalf("%d streams opened, %d raw, %d upgrades asked; want 2, 1 (the second), 2", opened, a.RawStreams(), upgrades.Load())
	}
}
