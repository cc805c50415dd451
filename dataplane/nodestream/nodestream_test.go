package nodestream

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"io"
	"testing"
	"time"
)

// Frames written with PutHeader read back with Reader; a payload larger than
// the reader's bound is refused before it is read.
func TestFrames(t *testing.T) {
	var buf bytes.Buffer
	for _, f := range []struct {
		kind    byte
		payload string
	}{{FrameSnapshot, `{"revision":5}`}, {FrameKeepalive, ""}, {FrameClose, `{"status":503}`}} {
		var hdr [HeaderSize]byte
		PutHeader(hdr[:], f.kind, len(f.payload))
		buf.Write(hdr[:])
		buf.WriteString(f.payload)
	}
	r := NewReader(&buf, 64)
	for _, want := range []string{"S" + `{"revision":5}`, "K", "C" + `{"status":503}`} {
		kind, payload, err := r.Next()
		if err != nil || string(kind)+string(payload) != want {
			t.Fatalf("frame %q, %v; want %q", string(kind)+string(payload), err, want)
		}
	}
	if _, _, err := r.Next(); !errors.Is(err, io.EOF) {
		t.Fatalf("after the last frame: %v", err)
	}
	var hdr [HeaderSize]byte
	PutHeader(hdr[:], FrameSnapshot, 65)
	if _, _, err := NewReader(bytes.NewReader(hdr[:]), 64).Next(); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("a frame over the bound: %v", err)
	}
}

// Messages are one JSON object a line; ParseAck reads acknowledgements as
// Ack writes them and nothing else.
func TestMessages(t *testing.T) {
	for _, m := range [][]byte{Ack(0), Ack(123456789), Resync(7, true), Resync(0, false), Ping} {
		if m[len(m)-1] != '\n' || bytes.Count(m, []byte("\n")) != 1 {
			t.Fatalf("%q is not one line", m)
		}
		var v map[string]any
		if err := json.Unmarshal(m, &v); err != nil {
			t.Fatalf("%q: %v", m, err)
		}
	}
	for _, rev := range []int64{0, 7, 123456789} {
		if got, ok := ParseAck(Ack(rev)); !ok || got != rev {
			t.Fatalf("ParseAck(Ack(%d)) = %d, %v", rev, got, ok)
		}
	}
	for _, line := range []string{`{"type":"ack","applied":-1}` + "\n", `{"type":"ack","applied":}` + "\n", `{"type":"ack","applied":1}`,
		`{"type":"ack", "applied":1}` + "\n", `{"type":"ack","applied":1234567890123456789}` + "\n", string(Ping)} {
		if _, ok := ParseAck([]byte(line)); ok {
			t.Errorf("ParseAck(%q) read an acknowledgement", line)
		}
	}
	if !IsPing(Ping) || IsPing(Ack(1)) {
		t.Error("IsPing")
	}
}

// Inflate gunzips a gzip-encoded stream's payloads, two gzip members (the
// node's part and the group's) included, and passes others as they are.
func TestInflate(t *testing.T) {
	var z bytes.Buffer
	for _, part := range []string{`{"revision":5,`, `"load_balancers":[]}`} {
		zw := gzip.NewWriter(&z)
		_, _ = zw.Write([]byte(part))
		_ = zw.Close()
	}
	if got, err := Inflate(z.Bytes(), true); err != nil || string(got) != `{"revision":5,"load_balancers":[]}` {
		t.Fatalf("Inflate: %q, %v", got, err)
	}
	if got, err := Inflate([]byte("{}"), false); err != nil || string(got) != "{}" {
		t.Fatalf("identity: %q, %v", got, err)
	}
	if _, err := Inflate([]byte("{}"), true); err == nil {
		t.Fatal("Inflate of something not gzip")
	}
}

// A Sender writes what it is sent in order, pings after an interval of
// silence, and ends (closing its writer) with its context; a failed write
// says the stream is broken.
func TestSender(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	s := NewSender(ctx, pw, 50*time.Millisecond, func() { t.Error("broken") })
	lines := bufio.NewReader(pr)
	s.Send(Ack(1))
	s.Send(Ack(2))
	for _, want := range [][]byte{Ack(1), Ack(2), Ping} {
		got, err := lines.ReadBytes('\n')
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("read %q, %v; want %q", got, err, want)
		}
	}
	cancel()
	if _, err := lines.ReadBytes('\n'); !errors.Is(err, io.EOF) {
		t.Fatalf("after the end: %v, want EOF (writer closed)", err)
	}
	if s.Send(Ack(3)) {
		t.Fatal("Send after the end")
	}

	broken := make(chan struct{})
	pr2, pw2 := io.Pipe()
	pr2.Close()
	s = NewSender(context.Background(), pw2, time.Hour, func() { close(broken) })
	s.Send(Ack(1))
	select {
	case <-broken:
	case <-time.After(5 * time.Second):
		t.Fatal("a failed write did not say the stream is broken")
	}
}
