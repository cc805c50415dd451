package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/fulcrumlb/fulcrum/api/auth"
	"github.com/fulcrumlb/fulcrum/api/problem"
	"github.com/fulcrumlb/fulcrum/api/snapshot"
	"github.com/fulcrumlb/fulcrum/dataplane/nodestream"
	"github.com/fulcrumlb/fulcrum/openapi"
)

// The streamed node protocol (node protocol 3, issue 10), as xDS streams:
// one long-lived, full-duplex request per node (POST /v1/nodes/{id}/stream,
// HTTP/2 cleartext or TLS, HTTP/1.1 where nothing buffers) instead of a
// long-poll per change. The API pushes a frame whenever the node's snapshot
// moves past the last one it sent, with the same bytes a poll would answer
// (the shared per-(group, revision) cache, the same delta from the last
// revision sent); the agent sends its acknowledgements on the same request,
// recorded exactly as a poll's applied=. So a write costs the API one frame
// and one small message per node instead of two requests.
//
// Frames (API → agent): one byte of kind, four bytes of payload length
// (big-endian), the payload. Agent messages (agent → API): one JSON object a
// line (streamMessage). The wire codec is dataplane/nodestream, shared with
// the agent and the fleet simulator.

// Frame kinds.
const (
	frameSnapshot  = nodestream.FrameSnapshot
	frameKeepalive = nodestream.FrameKeepalive
	frameClose     = nodestream.FrameClose
)

// Stream limits and intervals.
const (
	// ProtocolStream: POST /v1/nodes/{id}/stream.
	ProtocolStream = 3
	// StreamKeepalive is how often the API sends a keep-alive frame; an
	// agent sends a message at least as often.
	StreamKeepalive = 15 * time.Second
	// streamReadIdle ends a stream the agent sent nothing on for that long.
	streamReadIdle = 3 * StreamKeepalive
	// streamWriteTimeout bounds the write of one frame (a dead peer).
	streamWriteTimeout = 30 * time.Second
	// streamMessageMax bounds an agent message, its newline included.
	streamMessageMax = 4096
	// streamContentType is the response's content type.
	streamContentType = nodestream.ContentType
)

// streamAuthKey carries the Authorization header of a stream's open, which
// the stream checks again (through the token cache) while it lasts.
type streamAuthKey struct{}

// isStreamPath matches /v1/nodes/{id}/stream.
func isStreamPath(path string) bool {
	rest, ok := strings.CutPrefix(path, "/v1/nodes/")
	if !ok {
		return false
	}
	id, ok := strings.CutSuffix(rest, "/stream")
	return ok && id != "" && !strings.Contains(id, "/")
}

// isStreamRequest says whether req opens a node's stream: the HTTP/2 (or
// HTTP/1.1 full-duplex) POST, or the GET upgraded to a raw stream
// (node_streamraw.go).
func isStreamRequest(req *http.Request) bool {
	return (req.Method == http.MethodPost || req.Method == http.MethodGet) && isStreamPath(req.URL.Path)
}

// streamMessage is a message of the agent: an acknowledgement ("ack",
// Applied), what it holds ("resync", After and Delta: the next frame is the
// snapshot after After, a delta when Delta) or nothing ("ping").
type streamMessage struct {
	Type    string `json:"type"`
	Applied *int64 `json:"applied,omitempty"`
	After   *int64 `json:"after,omitempty"`
	Delta   *bool  `json:"delta,omitempty"`
}

// parseStreamMessage reads one message line; a malformed one is a 400
// naming the field.
func parseStreamMessage(line []byte) (streamMessage, error) {
	var m streamMessage
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return m, problem.BadRequest("message", "must be one JSON object a line with type, applied, after or delta: %v", err)
	}
	if dec.More() {
		return m, problem.BadRequest("message", "must be one JSON object a line")
	}
	switch m.Type {
	case "ack":
		if m.Applied == nil || *m.Applied < 0 {
			return m, problem.BadRequest("applied", "is required with type ack: a revision (0 or more)")
		}
	case "resync":
		if m.After == nil || *m.After < 0 {
			return m, problem.BadRequest("after", "is required with type resync: a revision (0 or more)")
		}
	case "ping":
	default:
		return m, problem.BadRequest("type", "must be ack, resync or ping, not %q", m.Type)
	}
	return m, nil
}

func (h *handlers) StreamNode(ctx context.Context, r openapi.StreamNodeRequestObject) (openapi.StreamNodeResponseObject, error) {
	if r.Body == nil {
		return nil, problem.BadRequest("body", "is required: the agent's messages")
	}
	s, err := h.openStream(ctx, r.Id, streamParams{After: r.Params.After, Delta: r.Params.Delta, Format: r.Params.FulcrumAgentFormat,
		Protocol: r.Params.FulcrumAgentProtocol, AcceptEncoding: r.Params.AcceptEncoding})
	if err != nil {
		return nil, err
	}
	s.body = r.Body
	return s, nil
}

// streamParams are the parameters of a stream's open, the same for both
// transports.
type streamParams struct {
	After                  *int64
	Delta                  *bool
	Format, AcceptEncoding *string
	Protocol               string
}

// openStream checks a stream's open, for either transport, before it is
// answered: the caller, the protocol, the snapshot request and the node (it
// exists and is the caller's). Its refusals are problems as for a poll.
func (h *handlers) openStream(ctx context.Context, name string, p streamParams) (*nodeStream, error) {
	scope, err := nodeCaller(ctx)
	if err != nil {
		return nil, err
	}
	v := strings.TrimSpace(p.Protocol)
	if proto, err := strconv.Atoi(v); err != nil || proto < ProtocolStream || proto > ProtocolMax {
		return nil, problem.BadRequest(agentProtocolHeader, "must be a node protocol this API streams (%d to %d), not %q", ProtocolStream, ProtocolMax, v)
	}
	req, err := snapshotRequest(openapi.GetNodeSnapshotParams{After: p.After, Delta: p.Delta, FulcrumAgentFormat: p.Format})
	if err != nil {
		return nil, err
	}
	if req.After < 0 {
		return nil, problem.BadRequest("after", "must be a revision (0 or more)")
	}
	group := scope.groupID
	if group == "" {
		group = h.views.GroupOf(name)
	}
	// The node exists and is the caller's, before the stream is answered.
	poll, _, _, err := h.readPoll(ctx, name, scope, group, false)
	if err != nil {
		return nil, err
	}
	authz, _ := ctx.Value(streamAuthKey{}).(string)
	return &nodeStream{h: h, ctx: ctx, name: name, scope: scope, group: poll.GroupID(), req: req,
		gz: acceptsGzip(deref(p.AcceptEncoding)), authz: authz, bound: boundNodeName(ctx), wake: make(chan struct{}, 1),
		keep: make(chan struct{}, 1)}, nil
}

// nodeStream is one node's open stream.
type nodeStream struct {
	h     *handlers
	ctx   context.Context
	name  string
	scope nodeScope
	group string
	req   snapshot.Request // After: the revision last sent
	gz    bool
	body  io.Reader
	authz string
	// bound is the node the token is bound to, "" for none.
	bound string
	// rawRead is a raw cleartext stream's TCP descriptor when body is its
	// connection alone (nothing buffered with the upgrade), and rawConn
	// that connection: its messages are read by the replica's ack reader
	// (node_streamacks.go); nil for other streams.
	rawRead syscall.RawConn
	rawConn io.Reader

	// mu is held by whoever writes to the stream: its goroutine (run) but
	// while it waits, or its group feed's (node_streamfan.go) while the
	// stream is parked. It guards req, fw and parked.
	mu     sync.Mutex
	parked bool
	fw     *frameWriter
	// wake wakes the stream's goroutine for a turn (the feed's signal);
	// keep for its keep-alive (the feed's keep-alive walk).
	wake, keep chan struct{}
}

// streamEnd ends a stream with a close frame saying why.
type streamEnd struct{ p *problem.Problem }

func (e streamEnd) Error() string { return "stream ended: " + e.p.Error() }

func (r *nodeStream) VisitStreamNodeResponse(w http.ResponseWriter) error {
	rc := http.NewResponseController(w)
	_ = rc.EnableFullDuplex() // HTTP/1.1: read messages while frames go out (HTTP/2 always does)
	r.streamHeaders(w.Header())
	fw := &frameWriter{w: w, flush: rc.Flush, setDeadline: rc.SetWriteDeadline}
	// An open stream is an agent waiting for changes, as a long-poll
	// (fulcrum_api_snapshot_waiters).
	defer waitSnapshot(r.ctx)()
	w.WriteHeader(http.StatusOK)
	if err := fw.flushNow(); err != nil {
		return nil // the agent went away
	}
	r.serve(fw, rc.SetReadDeadline)
	return nil
}

// streamHeaders sets the headers that open a stream (a 200 of the POST, a
// 101 of the upgrade).
func (r *nodeStream) streamHeaders(hd http.Header) {
	hd.Set("Content-Type", streamContentType)
	hd.Set(agentProtocolHeader, protocolMax)
	hd.Set("Fulcrum-Stream-Keepalive", StreamKeepalive.String())
	hd.Set("Cache-Control", "no-store")
	if r.gz {
		hd.Set("Fulcrum-Stream-Encoding", "gzip")
	} else {
		hd.Set("Fulcrum-Stream-Encoding", "identity")
	}
}

// serve runs an open stream, whatever its transport: frames go out through
// fw, the agent's messages are read from r.body (its read deadline set by
// setReadDeadline), until the stream ends; then a close frame says why when
// the API ends it.
func (r *nodeStream) serve(fw *frameWriter, setReadDeadline func(time.Time) error) {
	// The stream ends with a cause: the agent's body ending or a malformed
	// message (readMessages), the replica stopping, the request's end.
	ctx, cancel := context.WithCancelCause(r.ctx)
	defer cancel(nil)
	go func() {
		select {
		case <-r.h.notify.Done():
			cancel(streamEnd{p: problem.Unavailable(0, "The API replica is stopping: open the stream again (another replica takes it).")})
		case <-ctx.Done():
		}
	}()
	// A revoked token or a deleted node ends the stream within the token
	// cache's TTL.
	r.h.feeds.watchToken(r, cancel)
	defer r.h.feeds.unwatchToken(r)
	msgs := make(chan streamMessage, 16)
	// A raw cleartext stream's messages are read by the replica's ack
	// reader (node_streamacks.go) until it hands them back (demote).
	demote := func(rest []byte) {
		go r.readMessages(ctx, cancel, io.MultiReader(bytes.NewReader(rest), r.rawConn), &deadline{set: setReadDeadline, span: streamReadIdle}, msgs)
	}
	if stop, ok := r.h.feeds.readAcks(ctx, r, cancel, msgs, demote); ok {
		defer stop()
	} else {
		go r.readMessages(ctx, cancel, r.body, &deadline{set: setReadDeadline, span: streamReadIdle}, msgs)
	}
	err := r.run(ctx, fw, msgs)
	if ctx.Err() != nil {
		err = context.Cause(ctx)
	}
	var end streamEnd
	if errors.As(err, &end) {
		_ = fw.close(end.p)
		return
	}
	if err != nil && r.ctx.Err() == nil {
		r.h.log.DebugContext(r.ctx, "node stream ended", "node", r.name, "err", err)
	}
}

// run pushes frames until the stream ends. It holds r.mu but while it
// waits: then, parked (it sent everything up to its group feed's view),
// the feed's goroutine may push its next frame itself (node_streamfan.go)
// and wakes it (r.wake) only when it must take its turn.
func (r *nodeStream) run(ctx context.Context, fw *frameWriter, msgs <-chan streamMessage) error {
	h := r.h
	r.mu.Lock()
	defer r.mu.Unlock()
	r.fw = fw
	// The token is checked again for every open stream of the replica at
	// once (node_streamfeed.go), and the group's feed sends the streams'
	// keep-alives, or asks a stream for its own (node_streamfan.go).
	if fw.last.IsZero() {
		fw.last = time.Now()
	}
	stale := time.NewTimer(time.Hour)
	defer stale.Stop()
	feed := h.feeds.join(r.group, r) // node_streamfeed.go
	defer func() { h.feeds.leave(feed, r) }()
	for {
		// A frame the feed's goroutine began is finished first.
		if err := fw.finish(); err != nil {
			return err
		}
		if fw.err != nil {
			return fw.err
		}
		poll, mark, refresh, fromFeed, err := r.turn(ctx, feed)
		if err != nil {
			return streamEnd{p: h.streamProblem(ctx, err)}
		}
		r.group = poll.GroupID()
		if r.group != feed.group {
			h.feeds.leave(feed, r)
			feed = h.feeds.join(r.group, r)
		}
		if poll.Revision() > r.req.After {
			// The cache bounds its builds itself (and shares them).
			snap, head, body, err := r.nextFrame(ctx, poll)
			if err != nil {
				return streamEnd{p: h.streamProblem(ctx, err)}
			}
			if snap != nil {
				if err := fw.frame(frameSnapshot, head, body); err != nil {
					return err
				}
				r.sent(snap)
				if !fromFeed || snap.Revision() < poll.Revision() {
					continue
				}
				// The feed's view shows nothing newer than what was
				// sent (a turn with it would send nothing): wait for
				// the next.
			}
		}
		// The group's feed reads the next view for every stream of the
		// group (and when the view expires) and pushes this stream's
		// frame or wakes it; a turn that did not use its view waits for
		// the group's notification itself (and for the feed's wake-up,
		// should the feed read a view again).
		var changed <-chan struct{}
		var staleC <-chan time.Time
		if !fromFeed {
			stale.Reset(time.Until(refresh))
			staleC = stale.C
			changed = h.notify.ChangedSince(r.group, mark)
		}
		err = r.wait(ctx, fw, fromFeed, changed, staleC, msgs)
		stale.Stop()
		if err != nil {
			return err
		}
	}
}

// nextFrame is the snapshot frame that takes the stream from what it sent
// to poll's revision (the cache bounds its builds itself, and shares
// them); snap is nil when there is none to send.
func (r *nodeStream) nextFrame(ctx context.Context, poll snapshot.Poll) (snap *snapshot.NodeSnapshot, head, body []byte, err error) {
	snap, err = r.h.snapcache.ForNode(ctx, poll, r.req.After)
	if err != nil || snap == nil {
		return nil, nil, nil, err
	}
	req := r.req
	req.Delta = req.Delta && req.After > 0
	head, body, err = snap.EncodeFor(req, r.gz)
	if err != nil {
		return nil, nil, nil, err
	}
	return snap, head, body, nil
}

// sent records that snap went out: the agent holds it (or says otherwise:
// resync), so the next frame is a delta from it.
func (r *nodeStream) sent(snap *snapshot.NodeSnapshot) {
	r.req.After, r.req.Delta = snap.Revision(), r.req.Format >= snapshot.FormatDelta
}

// wait waits, r.mu released (and r parked when parked), for the stream's
// next turn: a wake-up by the feed, changed or stale closing or firing, a
// resync. It sends the stream's keep-alive when one is due (sent nothing
// for StreamKeepalive/2): first, and when the group's feed asks it to
// (r.keep: the feed could not send it itself). It returns with r.mu held.
func (r *nodeStream) wait(ctx context.Context, fw *frameWriter, parked bool, changed <-chan struct{}, stale <-chan time.Time,
	msgs <-chan streamMessage) error {
	if time.Since(fw.last) >= StreamKeepalive/2 {
		if err := fw.frame(frameKeepalive); err != nil {
			r.parked = false
			return err
		}
	}
	for {
		r.parked = parked
		r.mu.Unlock()
		select {
		case <-r.wake:
			r.mu.Lock()
			r.parked = false
			return nil
		case <-changed:
			r.mu.Lock()
			r.parked = false
			return nil
		case <-stale:
			r.mu.Lock()
			r.parked = false
			return nil
		case <-r.keep:
			// The group's feed could not send the keep-alive (or
			// finish it) itself.
			r.mu.Lock()
			if err := fw.finish(); err != nil {
				r.parked = false
				return err
			}
			if time.Since(fw.last) >= StreamKeepalive/2 {
				if err := fw.frame(frameKeepalive); err != nil {
					r.parked = false
					return err
				}
			}
		case m := <-msgs: // a resync
			r.mu.Lock()
			r.parked = false
			r.req.After, r.req.Delta = *m.After, m.Delta != nil && *m.Delta && r.req.Format >= snapshot.FormatDelta
			return nil
		case <-ctx.Done():
			r.mu.Lock()
			r.parked = false
			return context.Cause(ctx)
		}
	}
}

// turn reads what a turn needs besides the group's part: from the view
// the group's feed read last (fromFeed: the feed pushes or wakes the stream
// when it reads a newer one), while it shows the node in the caller's
// scope; else as poll.
func (r *nodeStream) turn(ctx context.Context, feed *groupFeed) (snapshot.Poll, uint64, time.Time, bool, error) {
	if v := feed.current(); v != nil {
		if n, ok := v.Node(r.name); ok && viewNodeInScope(r.name, r.bound, n, r.scope) {
			return v.Poll(n), v.Mark(), v.Expires(), true, nil
		}
	}
	poll, mark, refresh, err := r.poll(ctx)
	return poll, mark, refresh, false, err
}

// poll reads what a turn needs besides the group's part: from the group's
// poll view while it shows the node in the caller's scope (memory only),
// else from the database, as a poll does (readPoll).
func (r *nodeStream) poll(ctx context.Context) (snapshot.Poll, uint64, time.Time, error) {
	v, err := r.h.views.Get(ctx, r.group) // bounds its reads itself
	if err != nil {
		return snapshot.Poll{}, 0, time.Time{}, err
	}
	if n, ok := v.Node(r.name); ok && viewNodeInScope(r.name, r.bound, n, r.scope) {
		return v.Poll(n), v.Mark(), v.Expires(), nil
	}
	return r.h.readPoll(ctx, r.name, r.scope, r.group, false)
}

// authorized says whether the stream's token, as Authenticate found it
// again (p, err), still serves it.
func (r *nodeStream) authorized(ctx context.Context, p auth.Principal, err error) error {
	if err != nil {
		return streamEnd{p: r.h.streamProblem(ctx, err)}
	}
	if scope, err := nodeCallerOf(p); err != nil {
		return streamEnd{p: r.h.streamProblem(ctx, err)}
	} else if scope != r.scope {
		return streamEnd{p: problem.Forbidden("The node token changed scope: open the stream again.")}
	}
	return nil
}

// readMessages reads the agent's messages until body ends: acks are
// recorded here (in the background batch, as a poll's applied=), resyncs
// go to the stream's loop; a malformed message ends the stream with a 400.
func (r *nodeStream) readMessages(ctx context.Context, end context.CancelCauseFunc, body io.Reader, dl *deadline, msgs chan<- streamMessage) {
	br := bufio.NewReaderSize(body, streamMessageMax)
	dl.extend()
	for {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			end(streamEnd{p: problem.BadRequest("message", "is longer than %d bytes", streamMessageMax)})
			return
		}
		if err != nil {
			if len(bytes.TrimSpace(line)) > 0 && errors.Is(err, io.EOF) {
				err = streamEnd{p: problem.BadRequest("message", "must end with a newline")}
			}
			end(err)
			return
		}
		dl.extend()
		// Acknowledgements (one per node and write) and pings as agents
		// write them are read without a JSON decoder.
		if n, ok := nodestream.ParseAck(line); ok {
			r.h.reportw.streamAcks.Add(1) // counted with the next batch (ackbatch.go)
			r.h.recordAck(r.name, r.scope, r.bound, n)
			continue
		}
		if nodestream.IsPing(line) || len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		m, err := parseStreamMessage(line)
		if err != nil {
			end(streamEnd{p: r.h.streamProblem(ctx, err)})
			return
		}
		switch m.Type {
		case "ack":
			r.h.reportw.streamAcks.Add(1)
			r.h.recordAck(r.name, r.scope, r.bound, *m.Applied)
		case "resync":
			select {
			case msgs <- m:
			case <-ctx.Done():
				return
			}
		}
	}
}

// deadline keeps a read or write deadline at least span ahead, moving it
// (2 × span ahead) only when less than span is left: with HTTP/2 each move
// is a message to the connection's goroutine, too dear for every frame.
type deadline struct {
	set  func(time.Time) error
	span time.Duration
	at   time.Time
}

func (d *deadline) extend() { d.extendAt(time.Now()) }

// extendAt is extend at time now.
func (d *deadline) extendAt(now time.Time) {
	if d.at.Sub(now) >= d.span {
		return
	}
	d.at = now.Add(2 * d.span)
	_ = d.set(d.at)
}

// streamProblem is the problem a stream ends with for err.
func (h *handlers) streamProblem(ctx context.Context, err error) *problem.Problem {
	var p *problem.Problem
	if errors.As(err, &p) {
		return p
	}
	if p := storeProblem(err); p != nil {
		return p
	}
	if ctx.Err() == nil {
		h.log.WarnContext(ctx, "node stream failed", "err", err)
	}
	return problem.Unavailable(RetryAfterUnavailable, "The stream failed on the API's side; open it again.")
}

// streamAuthEvery is how often the open streams' tokens are checked again:
// a quarter of the token cache's TTL, so a
// revoked token ends it about when the cache forgets it.
func (h *handlers) streamAuthEvery() time.Duration {
	ttl := h.tokenTTL
	if ttl == 0 {
		ttl = auth.NodeTokenTTLDefault
	}
	if ttl > 0 {
		return min(max(ttl/4, 100*time.Millisecond), StreamKeepalive)
	}
	return time.Second
}

// frameWriter writes frames, each flushed at once and bounded by
// streamWriteTimeout: to an HTTP response (flushed through its
// controller) or straight to a raw stream's connection (no flush).
type frameWriter struct {
	w           io.Writer
	flush       func() error // nil: nothing to flush
	setDeadline func(time.Time) error
	// buf holds a frame's header and its small parts (a snapshot's node
	// part), written with one Write; larger parts are written as they are.
	buf []byte
	dl  deadline
	// last is when the last frame went out.
	last time.Time
	// raw is a raw stream's connection, written without blocking by its
	// group feed's goroutine (node_streamfan.go); nil for other streams.
	// pending is the rest of a frame that write began, err its failure:
	// the next frame writes the rest first, or returns the failure.
	raw     syscall.RawConn
	pending []byte
	err     error
}

// frameSmallPart: parts up to this size are copied into buf.
const frameSmallPart = 2048

func (f *frameWriter) frame(kind byte, parts ...[]byte) error {
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	if f.err != nil {
		return f.err
	}
	f.extendDeadline()
	if err := f.finish(); err != nil {
		return err
	}
	f.last = time.Now()
	f.buf = append(f.buf[:0], make([]byte, nodestream.HeaderSize)...)
	nodestream.PutHeader(f.buf, kind, n)
	for _, p := range parts {
		if len(p) <= frameSmallPart {
			f.buf = append(f.buf, p...)
			continue
		}
		if _, err := f.w.Write(f.buf); err != nil {
			return err
		}
		f.buf = f.buf[:0]
		if _, err := f.w.Write(p); err != nil {
			return err
		}
	}
	if len(f.buf) > 0 {
		if _, err := f.w.Write(f.buf); err != nil {
			return err
		}
	}
	return f.flushNow()
}

// finish writes the rest of a frame the group feed's goroutine began
// (pending), if any.
func (f *frameWriter) finish() error {
	if f.pending == nil {
		return nil
	}
	f.extendDeadline()
	p := f.pending
	f.pending = nil
	if _, err := f.w.Write(p); err != nil {
		f.err = err
		return err
	}
	return nil
}

// extendDeadline keeps the connection's write deadline a
// streamWriteTimeout ahead of the frame being written.
func (f *frameWriter) extendDeadline() { f.extendDeadlineAt(time.Now()) }

// extendDeadlineAt is extendDeadline at time now.
func (f *frameWriter) extendDeadlineAt(now time.Time) {
	if f.dl.set == nil {
		f.dl = deadline{set: f.setDeadline, span: streamWriteTimeout}
	}
	f.dl.extendAt(now)
}

func (f *frameWriter) flushNow() error {
	if f.flush == nil {
		return nil
	}
	if err := f.flush(); err != nil {
		return fmt.Errorf("flush stream: %w", err)
	}
	return nil
}

// close writes the close frame: p as a problem document.
func (f *frameWriter) close(p *problem.Problem) error {
	body := map[string]any{"type": p.TypeURI(), "title": p.Title, "status": p.Status}
	if p.Detail != "" {
		body["detail"] = p.Detail
	}
	if len(p.Errors) > 0 {
		body["errors"] = p.Errors
	}
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	return f.frame(frameClose, b)
}
