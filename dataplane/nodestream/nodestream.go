// Package nodestream is the wire codec of the streamed node protocol (node
// protocol 3, issue 10), shared by the API (api/node_stream.go), the agent
// (dataplane/agent/stream.go) and the fleet simulator (internal/fleetsim).
//
// One long-lived request per node, POST /v1/nodes/{id}/stream. The API
// answers with frames: one byte of kind, four bytes of payload length
// (big-endian), the payload. The agent writes its messages on the request's
// body: one JSON object a line (an acknowledgement, a resync, a ping).
package nodestream

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"
)

// ContentType is the content type of a stream's response.
const ContentType = "application/vnd.fulcrum.snapshot-stream"

// Frame kinds (API → agent).
const (
	FrameSnapshot  = 'S' // a snapshot, as a poll's 200 body
	FrameKeepalive = 'K' // nothing: the stream is alive
	FrameClose     = 'C' // the end: a problem (application/problem+json)
)

// HeaderSize is the size of a frame's header.
const HeaderSize = 5

// PutHeader writes the header of a frame of kind with a payload of n bytes.
func PutHeader(dst []byte, kind byte, n int) {
	dst[0] = kind
	binary.BigEndian.PutUint32(dst[1:HeaderSize], uint32(n))
}

// ErrFrameTooLarge: a frame's payload is larger than the reader accepts.
var ErrFrameTooLarge = errors.New("stream frame too large")

// Reader reads frames.
type Reader struct {
	r   io.Reader
	max int
	hdr [HeaderSize]byte
}

// NewReader reads frames from r, refusing payloads of more than max bytes.
func NewReader(r io.Reader, max int) *Reader { return &Reader{r: r, max: max} }

// Header reads the next frame's header: its kind and payload length.
func (r *Reader) Header() (kind byte, n int, err error) {
	if _, err := io.ReadFull(r.r, r.hdr[:]); err != nil {
		return 0, 0, err
	}
	n64 := int64(binary.BigEndian.Uint32(r.hdr[1:]))
	if n64 > int64(r.max) {
		return r.hdr[0], 0, fmt.Errorf("%w: %d bytes", ErrFrameTooLarge, n64)
	}
	return r.hdr[0], int(n64), nil
}

// Payload reads the n bytes of payload that follow a header (a new slice).
func (r *Reader) Payload(n int) ([]byte, error) {
	p := make([]byte, n)
	if _, err := io.ReadFull(r.r, p); err != nil {
		return nil, err
	}
	return p, nil
}

// Next reads the next frame.
func (r *Reader) Next() (kind byte, payload []byte, err error) {
	kind, n, err := r.Header()
	if err != nil {
		return kind, nil, err
	}
	payload, err = r.Payload(n)
	return kind, payload, err
}

// Inflate is a snapshot frame's payload as JSON: gunzipped when the stream
// is gzip-encoded (the response's Fulcrum-Stream-Encoding).
func Inflate(payload []byte, gz bool) ([]byte, error) {
	if !gz {
		return payload, nil
	}
	zr, err := gzip.NewReader(bytes.NewReader(payload))
	if err != nil {
		return nil, fmt.Errorf("stream frame not gzip: %w", err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		return nil, fmt.Errorf("stream frame not gzip: %w", err)
	}
	return raw, nil
}

// Agent messages (agent → API), each one line.
var (
	ackPrefix = []byte(`{"type":"ack","applied":`)
	ackSuffix = []byte("}\n")
	// Ping is the message that says the agent is alive.
	Ping = []byte(`{"type":"ping"}` + "\n")
)

// Ack is the acknowledgement of revision applied: the agent applied it
// cleanly (recorded as a poll's applied=).
func Ack(applied int64) []byte {
	b := make([]byte, 0, len(ackPrefix)+20+len(ackSuffix))
	b = append(b, ackPrefix...)
	b = strconv.AppendInt(b, applied, 10)
	return append(b, ackSuffix...)
}

// Resync asks for the snapshot after revision after (a delta from it when
// delta) as the next frame.
func Resync(after int64, delta bool) []byte {
	return fmt.Appendf(nil, `{"type":"resync","after":%d,"delta":%t}`+"\n", after, delta)
}

// ParseAck reads an acknowledgement as Ack writes it (a revision of 0 or
// more, in decimal digits); ok is false for any other line, to be decoded in
// full.
func ParseAck(line []byte) (applied int64, ok bool) {
	rest, ok := bytes.CutPrefix(line, ackPrefix)
	if !ok {
		return 0, false
	}
	digits, ok := bytes.CutSuffix(rest, ackSuffix)
	if !ok || len(digits) == 0 || len(digits) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range digits {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// IsPing says whether line is Ping.
func IsPing(line []byte) bool { return bytes.Equal(line, Ping) }

// Sender writes an agent's messages on its stream's request body, in the
// order sent, and a Ping whenever nothing was written for an interval.
type Sender struct {
	ctx  context.Context
	msgs chan []byte
}

// NewSender writes the messages sent to it on w, and pings every interval
// of silence, until ctx ends; a failed write calls broken (the stream is
// dead) and ends it. w is closed when it ends.
func NewSender(ctx context.Context, w io.WriteCloser, interval time.Duration, broken func()) *Sender {
	s := &Sender{ctx: ctx, msgs: make(chan []byte, 16)}
	go func() {
		defer w.Close()
		t := time.NewTimer(interval)
		defer t.Stop()
		for {
			var m []byte
			select {
			case <-ctx.Done():
				return
			case m = <-s.msgs:
			case <-t.C:
				m = Ping
			}
			if _, err := w.Write(m); err != nil {
				broken()
				return
			}
			t.Reset(interval)
		}
	}()
	return s
}

// Send queues message m (a line); false when the sender has ended.
func (s *Sender) Send(m []byte) bool {
	if s.ctx.Err() != nil {
		return false
	}
	select {
	case s.msgs <- m:
		return true
	case <-s.ctx.Done():
		return false
	}
}

// UpgradeToken is the Upgrade token of the raw stream: the same frames and
// messages on an HTTP/1.1 connection upgraded by GET /v1/nodes/{id}/stream
// (answered 101 Switching Protocols).
const UpgradeToken = "fulcrum-node-stream"
