package agent

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/fulcrumlb/fulcrum/dataplane/nodestream"
	snapconv "github.com/fulcrumlb/fulcrum/dataplane/snapshot"
	"github.com/fulcrumlb/fulcrum/openapi"
)

// The streamed node protocol (node protocol 3, issue 10), as xDS streams:
// once an answer of the API says it serves protocol 3, the poll loop opens
// one long-lived stream instead of a long-poll per change: an HTTP/1.1
// connection upgraded to a raw stream (streamraw.go), or, when that cannot
// be opened, an HTTP/2 request (POST /v1/nodes/{id}/stream). The API pushes frames, each the body a poll would
// answer; each feeds the same path as a poll's 200 (receive, Apply, a nack
// report on failure), and a clean apply's acknowledgement goes back on the
// same request as a message, recorded as a poll's applied=. A delta that
// does not merge asks for a complete snapshot (resync after 0), as the next
// poll would. A stream that cannot be opened (an API from before, a proxy
// that speaks HTTP/1 only, a refusal) makes the agent long-poll as before
// for a while (streamRetryMin, doubling up to streamRetryMax) before it
// tries again; a stream that breaks once open is opened again at once.

// streamProtocol is the node protocol a stream speaks; polls announce
// agentProtocol (pollack.go).
const streamProtocol = 3

// Stream bounds.
const (
	streamRetryMin = time.Minute
	streamRetryMax = 10 * time.Minute
	// streamKeepaliveDefault is the interval of the agent's pings when the
	// API names none; the API's own keep-alives are expected as often (a
	// stream silent for three intervals is dead).
	streamKeepaliveDefault = 15 * time.Second
	// streamFrameMax bounds a frame's payload.
	streamFrameMax = 1 << 30
)

// streams is the poll loop's view of the stream; a.mu guards it.
type streams struct {
	// api: an answer of the API said it serves protocol 3.
	api bool
	// notBefore: a stream could not be opened; long-poll until then.
	notBefore time.Time
	retry     time.Duration
	// opened counts the streams opened, frames the snapshots they carried,
	// raw the streams opened raw (streamraw.go).
	opened, frames, raw int64
	// rawNotBefore: the raw stream could not be opened; open the HTTP/2
	// stream until then (streamraw.go).
	rawNotBefore time.Time
	rawRetry     time.Duration
	// rawRetryMin is the first wait after a refusal (0: streamRetryMin;
	// tests shorten it).
	rawRetryMin time.Duration
}

// Streams counts the streams opened and the snapshots they carried.
func (a *Agent) Streams() (opened, frames int64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.stream.opened, a.stream.frames
}

// RawStreams counts the streams opened raw (streamraw.go).
func (a *Agent) RawStreams() int64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.stream.raw
}

// noteProtocol notes the protocol an answer of the API named.
func (a *Agent) noteProtocol(res *http.Response) {
	if res == nil {
		return
	}
	v, err := strconv.Atoi(strings.TrimSpace(res.Header.Get(agentProtocolHeader)))
	a.mu.Lock()
	a.stream.api = err == nil && v >= streamProtocol
	a.mu.Unlock()
}

// streamNow says whether the poll loop should open a stream now.
func (a *Agent) streamNow() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.stream.api && !time.Now().Before(a.stream.notBefore)
}

// streamRefused notes a stream that could not be opened: long-poll for a while.
func (a *Agent) streamRefused() time.Duration {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.stream.retry = min(max(2*a.stream.retry, streamRetryMin), streamRetryMax)
	a.stream.notBefore = time.Now().Add(a.stream.retry)
	return a.stream.retry
}

// newStreamClient is the HTTP/2 client of streams: the configured client's
// transport (its TLS and dialer) speaking HTTP/2 only, cleartext with prior
// knowledge for an http:// endpoint; no overall timeout (the stream lasts),
// HTTP/2 pings to find a dead connection.
func newStreamClient(cfg Config) *http.Client {
	tr := cloneTransport(cfg)
	var p http.Protocols
	if strings.HasPrefix(cfg.Endpoint, "https://") {
		p.SetHTTP2(true)
	} else {
		p.SetUnencryptedHTTP2(true)
	}
	tr.Protocols = &p
	tr.HTTP2 = &http.HTTP2Config{SendPingTimeout: 30 * time.Second, PingTimeout: 15 * time.Second}
	return &http.Client{Transport: tr}
}

// cloneTransport is a copy of the configured client's transport (its TLS and
// dialer), or of the default one, for a stream client to set its protocols on.
func cloneTransport(cfg Config) *http.Transport {
	if t, ok := cfg.HTTPClient.Transport.(*http.Transport); ok && t != nil {
		return t.Clone()
	}
	return http.DefaultTransport.(*http.Transport).Clone()
}

// streamEnd is how a stream ended.
type streamEnd int

const (
	streamBroken      streamEnd = iota // open again at once
	streamUnreachable                  // open again after a backoff
	streamNotOpened                    // long-poll for a while
	streamReregister                   // the node is unknown: register, then long-poll for a while
)

// openStream is an open stream, whatever its transport: frames come on
// body, messages go to w (closed when the stream ends), header is the
// answer's.
type openStream struct {
	transport string // "raw" (streamraw.go) or "h2"
	body      io.Reader
	w         io.WriteCloser
	header    http.Header
}

// runStream opens a stream and feeds its snapshots to the apply path until
// it ends: the raw stream first (streamraw.go), the HTTP/2 stream when the
// raw one cannot be opened (a proxy that strips the upgrade, an API from
// before it).
func (a *Agent) runStream(parent context.Context) streamEnd {
	// Applies run on parent, as the poll loop's: a stream that breaks
	// does not cut an apply short.
	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	after := a.pollAfter()
	a.mu.Lock()
	after, delta := a.deltaAfterLocked(after) // delta.go
	a.mu.Unlock()
	q := url.Values{"after": {strconv.FormatInt(after, 10)}}
	if delta {
		q.Set("delta", "true")
	}
	if a.rawNow() {
		s, end := a.openRaw(ctx, q)
		if s != nil {
			defer s.w.Close()
			return a.feedStream(parent, ctx, cancel, s, after, delta)
		}
		if end != streamNotOpened {
			return end
		}
		a.rawRefused()
	}
	s, end := a.openH2(ctx, q)
	if s == nil {
		return end
	}
	defer s.w.Close()
	return a.feedStream(parent, ctx, cancel, s, after, delta)
}

// streamRequest is a stream's open request: method, query q, body (nil
// for none) and the headers both transports send.
func (a *Agent) streamRequest(ctx context.Context, method string, q url.Values, body io.Reader) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method,
		strings.TrimSuffix(a.cfg.Endpoint, "/")+"/v1/nodes/"+url.PathEscape(a.cfg.NodeName)+"/stream?"+q.Encode(), body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+a.cfg.Token)
	req.Header.Set("Accept-Encoding", "gzip")
	req.Header.Set(agentProtocolHeader, strconv.Itoa(streamProtocol))
	req.Header.Set("Fulcrum-Agent-Format", strconv.Itoa(snapconv.FormatMax))
	otel.GetTextMapPropagator().Inject(ctx, propagation.HeaderCarrier(req.Header))
	return req, nil
}

// openFailed is how a stream whose open request failed (err) ends.
func (a *Agent) openFailed(ctx context.Context, transport string, err error) streamEnd {
	if ctx.Err() != nil {
		return streamBroken
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		// The API is not there (restarting): not a refusal.
		a.log.Warn("snapshot stream could not be opened: API unreachable", "transport", transport, "err", err)
		return streamUnreachable
	}
	if transport == "raw" {
		a.log.Warn("snapshot stream could not be opened; trying the HTTP/2 stream", "transport", transport, "err", err)
	} else {
		a.log.Warn("snapshot stream could not be opened; long-polling instead", "transport", transport, "err", err)
	}
	return streamNotOpened
}

// openRefused is how a stream whose open was answered res (not the
// stream) ends; res's body is read and closed.
func (a *Agent) openRefused(res *http.Response, transport string) streamEnd {
	defer res.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(res.Body, 4096))
	next := "long-polling instead"
	if transport == "raw" {
		next = "trying the HTTP/2 stream"
	}
	a.log.Warn("snapshot stream refused; "+next, "transport", transport, "status", res.StatusCode, "body", string(body))
	if res.StatusCode == http.StatusNotFound && isNodeNotFound(body) {
		return streamReregister
	}
	return streamNotOpened
}

// openH2 opens the HTTP/2 stream (POST); nil and how it ended when it
// could not.
func (a *Agent) openH2(ctx context.Context, q url.Values) (*openStream, streamEnd) {
	pr, pw := io.Pipe()
	req, err := a.streamRequest(ctx, http.MethodPost, q, pr)
	if err != nil {
		pw.Close()
		return nil, streamNotOpened
	}
	req.Header.Set("Content-Type", "application/x-ndjson")
	res, err := a.streamClient.Do(req)
	if err != nil {
		pw.Close()
		return nil, a.openFailed(ctx, "h2", err)
	}
	if res.StatusCode != http.StatusOK || !strings.HasPrefix(res.Header.Get("Content-Type"), nodestream.ContentType) {
		pw.Close()
		return nil, a.openRefused(res, "h2")
	}
	return &openStream{transport: "h2", body: res.Body, w: closeBoth{pw, res.Body}, header: res.Header}, 0
}

// closeBoth closes the request body (w) and then the response's.
type closeBoth struct {
	io.WriteCloser
	res io.Closer
}

func (c closeBoth) Close() error {
	err := c.WriteCloser.Close()
	_ = c.res.Close()
	return err
}

// feedStream feeds an open stream's snapshots to the apply path (on
// parent) until it ends; ctx (ended by cancel) is the stream's.
func (a *Agent) feedStream(parent, ctx context.Context, cancel context.CancelFunc, s *openStream, after int64, delta bool) streamEnd {
	keepalive := streamKeepaliveDefault
	if d, err := time.ParseDuration(s.header.Get("Fulcrum-Stream-Keepalive")); err == nil && d > 0 {
		keepalive = d
	}
	gz := s.header.Get("Fulcrum-Stream-Encoding") == "gzip"
	a.mu.Lock()
	a.stream.opened++
	if s.transport == "raw" {
		a.stream.raw++
		a.stream.rawRetry = 0
	}
	a.stream.retry = 0
	a.pollAck.supported = true // protocol 3 records acknowledgements as 2 does
	a.mu.Unlock()
	a.log.Info("snapshot stream open", "transport", s.transport, "after", after, "delta", delta)

	// The agent's messages: acknowledgements and resyncs from this loop,
	// a ping after every keep-alive interval without one.
	sender := nodestream.NewSender(ctx, s.w, keepalive, cancel)
	send := func(m []byte) { sender.Send(m) }
	// An acknowledgement a broken stream did not carry goes on this one.
	if rev, ok := a.streamAck(); ok {
		send(nodestream.Ack(rev))
	}
	// A stream silent for three keep-alive intervals is dead.
	idle := time.AfterFunc(3*keepalive, cancel)
	defer idle.Stop()
	// On HTTP/2 because the raw stream was refused: the raw one is tried
	// again when due (streamraw.go).
	var probe *rawProbe
	if s.transport != "raw" {
		probe = a.probeRaw(cancel)
		defer probe.stop()
	}
	frames := nodestream.NewReader(s.body, streamFrameMax)
	for {
		kind, n, err := frames.Header()
		arrived := time.Now()
		if errors.Is(err, nodestream.ErrFrameTooLarge) {
			a.log.Warn("snapshot stream: frame too large; opening it again", "err", err)
			return streamBroken
		}
		if err != nil {
			if ctx.Err() == nil || !errors.Is(ctx.Err(), context.Canceled) {
				a.log.Warn("snapshot stream broke; opening it again", "err", err)
			}
			return streamBroken
		}
		idle.Reset(3 * keepalive)
		payload, err := frames.Payload(n)
		if err != nil {
			a.log.Warn("snapshot stream broke; opening it again", "err", err)
			return streamBroken
		}
		idle.Reset(3 * keepalive)
		switch kind {
		case nodestream.FrameKeepalive:
		case nodestream.FrameClose:
			return a.streamClosed(payload)
		case nodestream.FrameSnapshot:
			// An apply may take longer than the keep-alives: the
			// stream is not read meanwhile, and not dead.
			idle.Stop()
			probe.applyingNow(true)
			ok := a.streamSnapshot(parent, arrived, payload, gz, send)
			probe.applyingNow(false)
			if !ok {
				return streamBroken
			}
			idle.Reset(3 * keepalive)
		default:
			a.log.Warn("snapshot stream: unknown frame kind; ignored", "kind", string(kind))
		}
	}
}

// streamSnapshot takes a snapshot frame down the path of a poll's 200; false
// when the frame cannot be read (the stream is opened again).
//
// Its "agent.stream.frame" span runs from the frame's header read (arrived)
// to the merged snapshot (its own; the apply's span links to the write),
// so a trace shows the frame's read, decoding and merge apart from the apply.
func (a *Agent) streamSnapshot(ctx context.Context, arrived time.Time, payload []byte, gz bool, send func([]byte)) bool {
	_, span := a.tracer.Start(ctx, "agent.stream.frame", trace.WithTimestamp(arrived), trace.WithNewRoot(),
		trace.WithAttributes(attribute.Int("fulcrum.bytes", len(payload))))
	span.AddEvent("payload read")
	a.metrics.observeSnapshot(ctx, payload)
	raw, err := nodestream.Inflate(payload, gz)
	if err != nil {
		span.End()
		a.log.Warn("snapshot stream: frame not gzip; opening it again", "err", err)
		return false
	}
	var in openapi.Snapshot
	if err := json.Unmarshal(raw, &in); err != nil {
		span.End()
		a.log.Warn("snapshot stream: frame not a snapshot; opening it again", "err", err)
		return false
	}
	span.AddEvent("decoded", trace.WithAttributes(attribute.Int64(attrRevision, in.Revision)))
	a.mu.Lock()
	a.stream.frames++
	a.mu.Unlock()
	snap := a.receive(ctx, &in) // delta.go: merged with what is held
	span.End()
	if snap == nil {
		a.mu.Lock()
		needFull := a.delta.needFull
		a.mu.Unlock()
		if needFull {
			send(nodestream.Resync(0, false))
		}
		return true
	}
	a.expectPollAck() // a clean apply is acknowledged on the stream
	if err := a.Apply(ctx, snap); err != nil {
		a.log.Error("apply snapshot", "revision", snap.Revision, "err", err)
		a.reportNack(ctx, snap.Revision, err)
	}
	if rev, ok := a.streamAck(); ok {
		send(nodestream.Ack(rev))
	}
	return true
}

// streamAck is the acknowledgement to send after an apply: the revision
// served when it is clean and not yet acknowledged (as pollAckParamsLocked).
func (a *Agent) streamAck() (int64, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.pollAck.pending = false
	if !a.cleanLocked() || a.snap.Revision <= a.pollAck.confirmed {
		return 0, false
	}
	rev := a.snap.Revision
	a.pollAck.sent = max(a.pollAck.sent, rev)
	a.pollAck.confirmed = max(a.pollAck.confirmed, rev)
	a.pollAck.carried++
	return rev, true
}

// streamClosed reads the API's close frame.
func (a *Agent) streamClosed(payload []byte) streamEnd {
	var p struct {
		Status int    `json:"status"`
		Detail string `json:"detail"`
	}
	_ = json.Unmarshal(payload, &p)
	switch {
	case p.Status == http.StatusServiceUnavailable:
		a.log.Info("snapshot stream closed by the API; opening it again", "detail", p.Detail)
		return streamBroken
	case p.Status == http.StatusNotFound:
		a.log.Warn("snapshot stream closed: node unknown; registering again", "detail", p.Detail)
		return streamReregister
	default:
		a.log.Warn("snapshot stream closed by the API; long-polling instead", "status", p.Status, "detail", p.Detail)
		return streamNotOpened
	}
}

// isNodeNotFound says whether a 404's problem is about the node (register
// again), not a missing route (an API without streams).
func isNodeNotFound(body []byte) bool {
	var p struct {
		Detail string `json:"detail"`
	}
	_ = json.Unmarshal(body, &p)
	return p.Detail != "" && !strings.Contains(p.Detail, "No such route")
}
