package api_test

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/fulcrumlb/fulcrum/api"
	"github.com/fulcrumlb/fulcrum/internal/secretbox"
)

// Node protocol 3 (node_stream.go): one long-lived request per node, over
// HTTP/2 cleartext (or HTTP/1.1), snapshots pushed as frames, acks sent back.

// h2cServer serves b's API as api.Server.Serve does: HTTP/1.1 and HTTP/2
// cleartext on the same port.
func h2cServer(t *testing.T, b *bundle) string {
	t.Helper()
	hs := httptest.NewUnstartedServer(b.srv.Handler())
	var p http.Protocols
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	hs.Config.Protocols = &p
	hs.Start()
	t.Cleanup(hs.Close)
	return hs.URL
}

// h2cClient speaks HTTP/2 cleartext with prior knowledge only.
func h2cClient() *http.Client {
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	return &http.Client{Transport: &http.Transport{Protocols: &p}}
}

type frame struct {
	kind    byte
	payload []byte
}

// testStream is an open stream: frames come on frames, messages go to send.
type testStream struct {
	t      *testing.T
	res    *http.Response
	w      io.Writer
	frames chan frame
	gz     bool
}

func openStream(t *testing.T, client *http.Client, url, token, node, query string, headers ...string) (*testStream, *http.Response) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	pr, pw := io.Pipe()
	t.Cleanup(func() { pw.Close() })
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url+"/v1/nodes/"+node+"/stream"+query, pr)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/x-ndjson")
	req.Header.Set("Accept-Encoding", "gzip")
	req.Header.Set("Fulcrum-Agent-Format", "2")
	req.Header.Set(protocolHeader, "3")
	for i := 0; i+1 < len(headers); i += 2 {
		if headers[i+1] == "" {
			req.Header.Del(headers[i])
		} else {
			req.Header.Set(headers[i], headers[i+1])
		}
	}
	res, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { res.Body.Close() })
	if res.StatusCode != http.StatusOK {
		return nil, res
	}
	return readFrames(t, res, pw), res
}

// readFrames reads the frames of an open stream whose messages go to w.
func readFrames(t *testing.T, res *http.Response, w io.Writer) *testStream {
	s := &testStream{t: t, res: res, w: w, frames: make(chan frame, 64), gz: res.Header.Get("Fulcrum-Stream-Encoding") == "gzip"}
	go func() {
		defer close(s.frames)
		var hdr [5]byte
		for {
			if _, err := io.ReadFull(res.Body, hdr[:]); err != nil {
				return
			}
			p := make([]byte, binary.BigEndian.Uint32(hdr[1:]))
			if _, err := io.ReadFull(res.Body, p); err != nil {
				return
			}
			s.frames <- frame{hdr[0], p}
		}
	}()
	return s
}

// openRaw opens the raw stream (node_streamraw.go): GET with
// Connection: Upgrade over HTTP/1.1, answered 101; frames and messages then
// go straight over the connection.
func openRaw(t *testing.T, url, token, node, query string, headers ...string) (*testStream, *http.Response) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/v1/nodes/"+node+"/stream"+query, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "fulcrum-node-stream")
	req.Header.Set("Accept-Encoding", "gzip")
	req.Header.Set("Fulcrum-Agent-Format", "2")
	req.Header.Set(protocolHeader, "3")
	for i := 0; i+1 < len(headers); i += 2 {
		if headers[i+1] == "" {
			req.Header.Del(headers[i])
		} else {
			req.Header.Set(headers[i], headers[i+1])
		}
	}
	var p http.Protocols
	p.SetHTTP1(true)
	tr := &http.Transport{Protocols: &p, DisableCompression: true}
	t.Cleanup(tr.CloseIdleConnections)
	res, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { res.Body.Close() })
	if res.StatusCode != http.StatusSwitchingProtocols {
		return nil, res
	}
	rw, ok := res.Body.(io.ReadWriteCloser)
	if !ok {
		t.Fatalf("101's body is a %T, not an io.ReadWriteCloser", res.Body)
	}
	return readFrames(t, res, rw), res
}

// opener opens a stream over one transport.
type opener func(t *testing.T, url, token, node, query string, headers ...string) (*testStream, *http.Response)

// transports are the stream's two transports: HTTP/2 (POST) and the raw
// upgraded connection (GET, 101).
var transports = []struct {
	name string
	open opener
}{
	{"h2", func(t *testing.T, url, token, node, query string, headers ...string) (*testStream, *http.Response) {
		t.Helper()
		return openStream(t, h2cClient(), url, token, node, query, headers...)
	}},
	{"raw", openRaw},
}

func (s *testStream) send(msg string) {
	s.t.Helper()
	if _, err := io.WriteString(s.w, msg+"\n"); err != nil {
		s.t.Fatal(err)
	}
}

// next is the next frame other than a keep-alive, within 20 s.
func (s *testStream) next(what string) frame {
	s.t.Helper()
	timeout := time.After(20 * time.Second)
	for {
		select {
		case f, ok := <-s.frames:
			if !ok {
				s.t.Fatalf("%s: the stream ended", what)
			}
			if f.kind == 'K' {
				continue
			}
			return f
		case <-timeout:
			s.t.Fatalf("%s: no frame within 20 s", what)
		}
	}
}

// snapshot is the next frame, which must be a snapshot, decoded.
func (s *testStream) snapshot(what string) map[string]any {
	s.t.Helper()
	f := s.next(what)
	if f.kind != 'S' {
		s.t.Fatalf("%s: frame %q %s, want a snapshot", what, f.kind, f.payload)
	}
	raw := f.payload
	if s.gz {
		zr, err := gzip.NewReader(bytes.NewReader(raw))
		if err != nil {
			s.t.Fatal(err)
		}
		if raw, err = io.ReadAll(zr); err != nil {
			s.t.Fatal(err)
		}
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		s.t.Fatalf("%s: %v: %s", what, err, raw)
	}
	return m
}

// closed is the next frame, which must be a close frame with status want.
func (s *testStream) closed(what string, want int) map[string]any {
	s.t.Helper()
	f := s.next(what)
	var p map[string]any
	if f.kind != 'C' || json.Unmarshal(f.payload, &p) != nil || int(p["status"].(float64)) != want {
		s.t.Fatalf("%s: frame %q %s, want a close frame with status %d", what, f.kind, f.payload, want)
	}
	return p
}

// A stream over HTTP/2 pushes the snapshot, then each change as a delta from
// the revision sent; acknowledgements on it are recorded as a poll's.
func TestStreamDeliversAndRecordsAcks(t *testing.T) {
	t.Parallel()
	for _, tp := range transports {
		t.Run(tp.name, func(t *testing.T) {
			t.Parallel()
			testStreamDelivers(t, tp.name, tp.open)
		})
	}
}

func testStreamDelivers(t *testing.T, transport string, open opener) {
	b := setup(t)
	url := h2cServer(t, b)
	b.register("n1")
	tr := b.buildTree(b.TokenA)
	s, res := open(t, url, b.Node, "n1", "?after=0")
	if s == nil {
		t.Fatalf("open: %d", res.StatusCode)
	}
	wantProto := 2
	if transport == "raw" {
		wantProto = 1
		if res.Header.Get("Upgrade") != "fulcrum-node-stream" {
			t.Fatalf("open: Upgrade %q", res.Header.Get("Upgrade"))
		}
	}
	if res.ProtoMajor != wantProto || res.Header.Get(protocolHeader) != "3" || !s.gz {
		t.Fatalf("open: %s, %s %q, encoding %q", res.Proto, protocolHeader, res.Header.Get(protocolHeader), res.Header.Get("Fulcrum-Stream-Encoding"))
	}
	full := s.snapshot("first frame")
	rev := int64(full["revision"].(float64))
	if d, _ := full["delta"].(bool); d || len(full["load_balancers"].([]any)) != 1 {
		t.Fatalf("first frame: delta %v, %d load balancers", full["delta"], len(full["load_balancers"].([]any)))
	}
	s.send(fmt.Sprintf(`{"type":"ack","applied":%d}`, rev))
	b.waitFor("the member active after the stream's acknowledgement", func() bool {
		return b.field(b.TokenA, "/v1/members/"+tr.Member, "provisioning_status") == "active"
	})
	if got := b.appliedRevision("n1"); got != rev {
		t.Fatalf("applied_revision %d, want %d", got, rev)
	}

	// A change: pushed as a delta from the revision sent.
	lb2 := b.create(b.TokenA, "/v1/load-balancers", map[string]any{"name": "second", "node_group_id": b.GroupID})
	d := s.snapshot("frame after a create")
	rev2 := int64(d["revision"].(float64))
	if rev2 <= rev || d["delta"] != true || len(d["load_balancers"].([]any)) != 1 {
		t.Fatalf("frame after a create: revision %d (was %d), delta %v, %d load balancers", rev2, rev, d["delta"], len(d["load_balancers"].([]any)))
	}
	s.send(`{"type":"ping"}`)
	b.must(http.StatusAccepted, b.TokenA, http.MethodDelete, "/v1/load-balancers/"+lb2, nil)
	d = s.snapshot("frame after a delete")
	if d["delta"] != true || !strings.Contains(fmt.Sprint(d["deleted_load_balancers"]), lb2) {
		t.Fatalf("frame after a delete: %v", d)
	}
	s.send(fmt.Sprintf(`{"type":"ack","applied":%d}`, int64(d["revision"].(float64))))
	b.waitFor("the acknowledgement of the delete", func() bool { return b.appliedRevision("n1") == int64(d["revision"].(float64)) })

	// A resync asks for the complete snapshot again.
	s.send(`{"type":"resync","after":0}`)
	again := s.snapshot("frame after a resync")
	if again["delta"] == true || len(again["load_balancers"].([]any)) != 1 {
		t.Fatalf("frame after a resync: delta %v, %d load balancers", again["delta"], len(again["load_balancers"].([]any)))
	}
}

// HTTP/1.1 clients keep working on the same port, and may stream too.
func TestStreamHTTP1(t *testing.T) {
	t.Parallel()
	b := setup(t)
	url := h2cServer(t, b)
	b.register("n1")
	b.buildTree(b.TokenA)
	h1 := &http.Client{Transport: &http.Transport{}}
	req, _ := http.NewRequest(http.MethodGet, url+"/v1/nodes/n1/snapshot?wait=0s", nil)
	req.Header.Set("Authorization", "Bearer "+b.Node)
	res, err := h1.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK || res.ProtoMajor != 1 || res.Header.Get(protocolHeader) != "3" {
		t.Fatalf("poll over HTTP/1.1: %d %s %s %q", res.StatusCode, res.Proto, protocolHeader, res.Header.Get(protocolHeader))
	}
	s, res := openStream(t, h1, url, b.Node, "n1", "?after=0")
	if s == nil || res.ProtoMajor != 1 {
		t.Fatalf("stream over HTTP/1.1: %d %s", res.StatusCode, res.Proto)
	}
	rev := int64(s.snapshot("first frame")["revision"].(float64))
	s.send(fmt.Sprintf(`{"type":"ack","applied":%d}`, rev))
	b.waitFor("the acknowledgement over HTTP/1.1", func() bool { return b.appliedRevision("n1") == rev })
}

// Refusals at the open are problems naming the field; a malformed message
// ends the stream with a 400 close frame, never a 500.
func TestStreamRefusals(t *testing.T) {
	t.Parallel()
	for _, tp := range transports {
		t.Run(tp.name, func(t *testing.T) {
			t.Parallel()
			testStreamRefusals(t, tp.name, tp.open)
		})
	}
}

func testStreamRefusals(t *testing.T, transport string, open opener) {
	b := setup(t)
	url := h2cServer(t, b)
	b.register("n1")
	type refusal struct {
		what, token, node, query string
		headers                  []string
		want                     int
		field                    string
	}
	var extra []refusal
	if transport == "raw" {
		extra = []refusal{
			{"no upgrade", b.Node, "n1", "", []string{"Upgrade", "", "Connection", ""}, http.StatusUpgradeRequired, "Upgrade"},
			{"another upgrade", b.Node, "n1", "", []string{"Upgrade", "websocket"}, http.StatusUpgradeRequired, "Upgrade"},
			{"no Connection: Upgrade", b.Node, "n1", "", []string{"Connection", ""}, http.StatusUpgradeRequired, "Connection"},
			{"Connection: keep-alive", b.Node, "n1", "", []string{"Connection", "keep-alive"}, http.StatusUpgradeRequired, "Connection"},
			{"wrong token", "not-a-token", "n1", "", nil, http.StatusUnauthorized, ""},
		}
	}
	for _, tc := range append([]refusal{
		{"protocol 2", b.Node, "n1", "", []string{protocolHeader, "2"}, http.StatusBadRequest, protocolHeader},
		{"no protocol", b.Node, "n1", "", []string{protocolHeader, ""}, http.StatusBadRequest, protocolHeader},
		{"format 9", b.Node, "n1", "", []string{"Fulcrum-Agent-Format", "9"}, http.StatusBadRequest, "Fulcrum-Agent-Format"},
		{"after not a number", b.Node, "n1", "?after=x", nil, http.StatusBadRequest, "after"},
		{"unknown node", b.Node, "nope", "", nil, http.StatusNotFound, ""},
		{"no token", "", "n1", "", nil, http.StatusUnauthorized, ""},
		{"tenant token", b.TokenA, "n1", "", nil, http.StatusForbidden, ""},
	}, extra...) {
		s, res := open(t, url, tc.token, tc.node, tc.query, tc.headers...)
		if s != nil {
			t.Fatalf("%s: opened", tc.what)
		}
		raw, _ := io.ReadAll(res.Body)
		if res.StatusCode != tc.want || !strings.Contains(string(raw), tc.field) || !strings.HasPrefix(res.Header.Get("Content-Type"), "application/problem+json") {
			t.Errorf("%s: %d %s %s, want %d naming %q", tc.what, res.StatusCode, res.Header.Get("Content-Type"), raw, tc.want, tc.field)
		}
		if res.StatusCode == http.StatusUpgradeRequired && res.Header.Get("Upgrade") != "fulcrum-node-stream" {
			t.Errorf("%s: 426 with Upgrade %q, want the stream's token", tc.what, res.Header.Get("Upgrade"))
		}
	}
	for _, msg := range []string{`garbage`, `{"type":"ack"}`, `{"type":"ack","applied":-1}`, `{"type":"nope"}`, `{"type":"ping","extra":1}`, strings.Repeat("x", 5000)} {
		s, _ := open(t, url, b.Node, "n1", "?after=0")
		s.snapshot("first frame")
		s.send(msg)
		p := s.closed("after "+msg[:min(len(msg), 20)], http.StatusBadRequest)
		t.Logf("%.20s: %v", msg, p["errors"])
	}
}

// A revoked token (deleted in the database, as by another replica) ends the
// stream within the token cache's TTL; a deleted node ends it with 404; a
// stopping replica with 503.
func TestStreamEndsOnRevocation(t *testing.T) {
	t.Parallel()
	for _, tp := range transports {
		t.Run(tp.name, func(t *testing.T) {
			t.Parallel()
			testStreamEndsOnRevocation(t, tp.open)
		})
	}
}

func testStreamEndsOnRevocation(t *testing.T, open opener) {
	const ttl = 2 * time.Second
	b := setup(t, withConfig(func(c *api.Config) { c.RateLimits = noRateLimits; c.NodeTokenTTL = ttl }))
	url := h2cServer(t, b)
	id, token := b.groupNodeToken()
	b.must(http.StatusOK, token, http.MethodPut, "/v1/nodes/n1", map[string]any{"node_group_id": b.GroupID})
	s, _ := open(t, url, token, "n1", "?after=0")
	s.snapshot("first frame")
	if _, err := b.Store.PoolForTests().Exec(context.Background(), "DELETE FROM tokens WHERE id = $1", id); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	s.closed("after the token was deleted", http.StatusUnauthorized)
	t.Logf("stream ended %s after the token was deleted (TTL %s)", time.Since(start).Round(time.Millisecond), ttl)

	s, _ = open(t, url, b.Node, "n1", "?after=0")
	s.snapshot("first frame")
	b.must(http.StatusNoContent, b.Admin, http.MethodDelete, "/v1/nodes/n1", nil)
	s.closed("after the node was deleted", http.StatusNotFound)
}

// A stopping replica closes its streams with a 503 close frame (the agent
// opens the stream again, on another replica), over either transport.
func TestStreamClosesWhenReplicaStops(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.register("n1") // no load balancers: the second replica has another secret box
	for _, tp := range transports {
		t.Run(tp.name, func(t *testing.T) {
			// A second replica on the same database, stopped below.
			srv := newReplica(t, b)
			ctx, stop := context.WithCancel(context.Background())
			defer stop()
			srv.Start(ctx)
			url := h2cServer(t, &bundle{t: t, srv: srv})
			s, res := tp.open(t, url, b.Node, "n1", "?after=0")
			if s == nil {
				t.Fatalf("open: %d", res.StatusCode)
			}
			s.snapshot("first frame")
			stop()
			s.closed("after the replica stopped", http.StatusServiceUnavailable)
		})
	}
}

// The raw stream on the API's own listener (Serve: cleartext connections
// read through a buffer, bufconn.go): a message the agent sends together
// with the upgrade request, before the 101, is not lost — here a resync,
// answered by a second complete snapshot; an acknowledgement sent on the
// connection is recorded.
func TestRawStreamMessageWithTheUpgrade(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.register("n1") // no load balancers: the second replica has another secret box
	addr := serveReplica(t, b)
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	open := "GET /v1/nodes/n1/stream?after=0 HTTP/1.1\r\nHost: api\r\nConnection: Upgrade\r\nUpgrade: fulcrum-node-stream\r\n" +
		"Authorization: Bearer " + b.Node + "\r\nFulcrum-Agent-Protocol: 3\r\nFulcrum-Agent-Format: 2\r\n\r\n"
	if _, err := io.WriteString(conn, open+`{"type":"resync","after":0}`+"\n"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != http.StatusSwitchingProtocols || res.Header.Get("Upgrade") != "fulcrum-node-stream" || res.Header.Get("Fulcrum-Stream-Encoding") != "identity" {
		t.Fatalf("open: %d, Upgrade %q, encoding %q", res.StatusCode, res.Header.Get("Upgrade"), res.Header.Get("Fulcrum-Stream-Encoding"))
	}
	res.Body = io.NopCloser(br) // the connection after the 101, as readFrames reads it
	s := readFrames(t, res, conn)
	first := s.snapshot("first frame")
	second := s.snapshot("frame after the resync sent with the upgrade")
	if first["revision"] != second["revision"] || second["delta"] == true {
		t.Fatalf("after the resync: %v then %v", first, second)
	}
	rev := int64(second["revision"].(float64))
	s.send(fmt.Sprintf(`{"type":"ack","applied":%d}`, rev))
	b.waitFor("the acknowledgement on the raw stream", func() bool { return b.appliedRevision("n1") == rev })
}

// serveReplica serves a second API replica on b's store, with a secret box
// of its own, on a loopback listener of its own (Serve: the raw streams'
// path), until the test ends; it returns the listener's address.
func serveReplica(t *testing.T, b *bundle) string {
	t.Helper()
	srv := newReplica(t, b)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() { stop(); <-done })
	return ln.Addr().String()
}

// newReplica is a second API replica on b's store, with a secret box of
// its own (so it cannot open what the first one sealed).
func newReplica(t *testing.T, b *bundle) *api.Server {
	t.Helper()
	key, _ := secretbox.GenerateKey()
	raw, _ := secretbox.LoadKey(key)
	box, err := secretbox.New(raw)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := api.New(api.Config{RateLimits: noRateLimits}, b.Store, box, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	if err != nil {
		t.Fatal(err)
	}
	return srv
}
