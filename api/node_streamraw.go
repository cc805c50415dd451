package api

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/fulcrumlb/fulcrum/api/problem"
	"github.com/fulcrumlb/fulcrum/dataplane/nodestream"
	"github.com/fulcrumlb/fulcrum/openapi"
)

// The raw node stream (issue 10): the stream of node_stream.go over an
// HTTP/1.1 connection upgraded as WebSocket does (GET
// /v1/nodes/{id}/stream with Connection: Upgrade and Upgrade:
// fulcrum-node-stream, answered 101 Switching Protocols), then the same
// frames written straight to the connection and the same message lines
// read straight from it. Everything but the byte pipe is the HTTP/2
// stream's (nodeStream.serve): the open's checks, the group feed, the ack
// batch, keep-alives, token re-checks, the replica's stop, deadlines.
// What it saves is Go's HTTP/2 server between the stream and the socket:
// each frame and each acknowledgement crossing the connection's serve
// loop, its reader and its flush goroutines, and flow control.

// streamUpgradeToken is the Upgrade token of the raw stream.
const streamUpgradeToken = nodestream.UpgradeToken

// upgradeRequested says whether an Upgrade header value names the raw
// stream's token (a comma-separated list of protocols, case-insensitive).
func upgradeRequested(v string) bool {
	for p := range strings.SplitSeq(v, ",") {
		if strings.EqualFold(strings.TrimSpace(p), streamUpgradeToken) {
			return true
		}
	}
	return false
}

// streamConnectionKey carries whether a stream's open listed Upgrade in its
// Connection header (connectionUpgrade), which the generated binding does
// not read.
type streamConnectionKey struct{}

// connectionUpgrade says whether the Connection header lists the Upgrade
// option (comma-separated, case-insensitive, possibly in several lines).
func connectionUpgrade(hd http.Header) bool {
	for _, v := range hd.Values("Connection") {
		for p := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(p), "upgrade") {
				return true
			}
		}
	}
	return false
}

// errUpgradeRequired answers a GET of the stream that did not ask for the
// upgrade (a proxy that strips it, a client that did not know): the agent
// falls back to the HTTP/2 stream.
func errUpgradeRequired(detail string) *problem.Problem {
	return problem.New(http.StatusUpgradeRequired, "upgrade-required", "Upgrade required", detail)
}

func (h *handlers) StreamNodeUpgrade(ctx context.Context, r openapi.StreamNodeUpgradeRequestObject) (openapi.StreamNodeUpgradeResponseObject, error) {
	s, err := h.openStream(ctx, r.Id, streamParams{After: r.Params.After, Delta: r.Params.Delta, Format: r.Params.FulcrumAgentFormat,
		Protocol: r.Params.FulcrumAgentProtocol, AcceptEncoding: r.Params.AcceptEncoding})
	if err != nil {
		return nil, err
	}
	if !upgradeRequested(deref(r.Params.Upgrade)) {
		return upgradeRequired{errUpgradeRequired("GET /v1/nodes/{id}/stream opens the raw stream: send Connection: Upgrade and Upgrade: " +
			streamUpgradeToken + " over HTTP/1.1, or POST for the HTTP/2 stream.")}, nil
	}
	if up, _ := ctx.Value(streamConnectionKey{}).(bool); !up {
		return upgradeRequired{errUpgradeRequired("The Connection header must list Upgrade (Connection: Upgrade) with Upgrade: " +
			streamUpgradeToken + ": a proxy that drops it cannot carry the raw stream; POST for the HTTP/2 stream.")}, nil
	}
	return rawStream{s}, nil
}

// upgradeRequired answers 426 with the problem, naming the upgrade the
// request should have asked for (RFC 9110: a 426 sends Upgrade).
type upgradeRequired struct{ p *problem.Problem }

func (u upgradeRequired) VisitStreamNodeUpgradeResponse(w http.ResponseWriter) error {
	w.Header().Set("Upgrade", streamUpgradeToken)
	return u.p
}

// rawStream is a node's stream to be opened on an upgraded connection.
type rawStream struct{ *nodeStream }

func (r rawStream) VisitStreamNodeUpgradeResponse(w http.ResponseWriter) error {
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		// HTTP/2 cannot be upgraded (the agent asks ALPN http/1.1 for it).
		return upgradeRequired{errUpgradeRequired("The raw stream needs an HTTP/1.1 connection (over TLS, ALPN http/1.1).")}.VisitStreamNodeUpgradeResponse(w)
	}
	defer conn.Close()
	// The 101 carries the headers set so far (X-Request-Id, Traceparent)
	// and those of a stream's open.
	hd := w.Header()
	r.streamHeaders(hd)
	// The server's own deadlines (ReadTimeout, WriteTimeout) are the
	// request's; the stream sets its own, frame by frame.
	_ = conn.SetDeadline(time.Time{})
	r.body = rawBody(conn, brw.Reader)
	if tc := rawTCP(conn, brw.Reader); tc != nil {
		// Nothing buffered: the replica's ack reader may read the
		// connection itself (node_streamacks.go).
		r.rawRead, r.rawConn = rawConnOf(tc), tc
	}
	var b bytes.Buffer
	b.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: " + streamUpgradeToken + "\r\n")
	hd.Del("Content-Length")
	_ = hd.Write(&b)
	b.WriteString("\r\n")
	// Over a cleartext TCP connection, the group feed's goroutine may write
	// frames itself, without blocking (node_streamfan.go).
	fw := &frameWriter{w: conn, setDeadline: conn.SetWriteDeadline, raw: rawConnOf(conn)}
	// An open stream is an agent waiting for changes, as a long-poll
	// (fulcrum_api_snapshot_waiters).
	defer waitSnapshot(r.ctx)()
	_ = conn.SetWriteDeadline(time.Now().Add(streamWriteTimeout))
	if _, err := conn.Write(b.Bytes()); err != nil {
		return nil // the agent went away
	}
	r.serve(fw, conn.SetReadDeadline)
	return nil
}

// rawBody reads the agent's messages from a hijacked connection: first
// what the server's reader buffered already (no byte is lost), then the
// connection itself — a cleartext one's TCP connection directly once the
// buffer bufconn.go reads it through is drained (readMessages buffers its
// reads itself).
func rawBody(conn net.Conn, br *bufio.Reader) io.Reader {
	var rs []io.Reader
	if n := br.Buffered(); n > 0 {
		head, _ := br.Peek(n)
		rs = append(rs, bytes.NewReader(bytes.Clone(head)))
	}
	if bc, ok := conn.(*bufferedConn); ok {
		if n := bc.r.Buffered(); n > 0 {
			rs = append(rs, io.LimitReader(bc.r, int64(n)))
		}
		rs = append(rs, bc.TCPConn)
	} else {
		rs = append(rs, conn)
	}
	if len(rs) == 1 {
		return rs[0]
	}
	return io.MultiReader(rs...)
}

// rawTCP is a hijacked cleartext connection's TCP connection when nothing
// was buffered past the upgrade request (every message is still to be read
// from it), else nil.
func rawTCP(conn net.Conn, br *bufio.Reader) *net.TCPConn {
	if br.Buffered() > 0 {
		return nil
	}
	switch c := conn.(type) {
	case *bufferedConn:
		if c.r.Buffered() > 0 {
			return nil
		}
		return c.TCPConn
	case *net.TCPConn:
		return c
	}
	return nil
}
