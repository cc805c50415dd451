package agent

import (
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/fulcrumlb/fulcrum/dataplane/nodestream"
)

// The raw stream (issue 10): the stream of stream.go over an HTTP/1.1
// connection upgraded as WebSocket does (GET /v1/nodes/{id}/stream with
// Connection: Upgrade and Upgrade: fulcrum-node-stream, answered 101
// Switching Protocols); then the API's frames are read straight from the
// connection and the agent's messages written straight to it. The same
// frames and messages as the HTTP/2 stream, without HTTP/2 between them
// and the socket (cheaper for the API: no flow control, no frame crossing
// the connection's goroutines). Over TLS the connection asks ALPN
// http/1.1 (an HTTP/2 connection cannot be upgraded).
//
// Anything but a 101 (an API from before the raw stream answers 405, a
// proxy that strips the upgrade gets a 426, a proxy that cannot pass it
// answers what it answers) makes the agent open the HTTP/2 stream instead,
// and try the raw one again after a while (streamRetryMin, doubling up to
// streamRetryMax); a node the API does not know is registered again.

// newRawStreamClient is the HTTP/1.1 client of raw streams: the configured
// client's transport (its TLS and dialer) speaking HTTP/1.1 only (ALPN
// http/1.1 over TLS); no overall timeout (the stream lasts).
func newRawStreamClient(cfg Config) *http.Client {
	tr := cloneTransport(cfg)
	var p http.Protocols
	p.SetHTTP1(true)
	tr.Protocols = &p
	tr.ForceAttemptHTTP2 = false
	if tr.TLSClientConfig != nil {
		tr.TLSClientConfig = tr.TLSClientConfig.Clone()
	} else {
		tr.TLSClientConfig = &tls.Config{}
	}
	tr.TLSClientConfig.NextProtos = []string{"http/1.1"}
	// The answer of a refused upgrade is small: no gzip of it.
	tr.DisableCompression = true
	return &http.Client{Transport: tr}
}

// rawNow says whether the raw stream is to be tried (it was not refused
// lately).
func (a *Agent) rawNow() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return !time.Now().Before(a.stream.rawNotBefore)
}

// rawRefused notes a raw stream that could not be opened: the HTTP/2
// stream for a while.
func (a *Agent) rawRefused() {
	a.mu.Lock()
	defer a.mu.Unlock()
	first := a.stream.rawRetryMin
	if first == 0 {
		first = streamRetryMin
	}
	a.stream.rawRetry = min(max(2*a.stream.rawRetry, first), streamRetryMax)
	a.stream.rawNotBefore = time.Now().Add(a.stream.rawRetry)
}

// rawDue is how long until the raw stream is to be tried again; false when
// it was never refused.
func (a *Agent) rawDue() (time.Duration, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.stream.rawNotBefore.IsZero() {
		return 0, false
	}
	return time.Until(a.stream.rawNotBefore), true
}

// rawProbe ends an HTTP/2 stream once the raw stream is due to be tried
// again (the poll loop opens a stream again at once, the raw one first),
// never during an apply: then a second after it, its acknowledgement sent.
type rawProbe struct {
	mu       sync.Mutex
	applying bool
	missed   bool
	cancel   context.CancelFunc
	timer    *time.Timer
	log      *slog.Logger
}

// probeRaw arms the probe of an HTTP/2 stream whose context cancel ends;
// nil when the raw stream was never refused.
func (a *Agent) probeRaw(cancel context.CancelFunc) *rawProbe {
	wait, ok := a.rawDue()
	if !ok {
		return nil
	}
	p := &rawProbe{cancel: cancel, log: a.log}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.timer = time.AfterFunc(max(wait, 0), p.fire)
	return p
}

func (p *rawProbe) fire() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.applying {
		p.missed = true
		return
	}
	p.log.Info("snapshot stream: the raw stream is due to be tried again; opening it")
	p.cancel()
}

// applying notes an apply starting (on) or ending.
func (p *rawProbe) applyingNow(on bool) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.applying = on
	if !on && p.missed {
		p.missed = false
		p.timer.Reset(time.Second)
	}
}

func (p *rawProbe) stop() {
	if p != nil {
		p.timer.Stop()
	}
}

// openRaw opens the raw stream; nil and how it ended when it could not
// (streamNotOpened: try the HTTP/2 stream).
func (a *Agent) openRaw(ctx context.Context, q url.Values) (*openStream, streamEnd) {
	req, err := a.streamRequest(ctx, http.MethodGet, q, nil)
	if err != nil {
		return nil, streamNotOpened
	}
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", nodestream.UpgradeToken)
	res, err := a.rawClient.Do(req)
	if err != nil {
		return nil, a.openFailed(ctx, "raw", err)
	}
	rwc, ok := res.Body.(io.ReadWriteCloser)
	if res.StatusCode != http.StatusSwitchingProtocols || !ok || !upgradedTo(res.Header.Get("Upgrade")) ||
		!strings.HasPrefix(res.Header.Get("Content-Type"), nodestream.ContentType) {
		return nil, a.openRefused(res, "raw")
	}
	// The connection is the stream's now: its end (a cancel, the idle
	// timer) closes it, which ends a read or a write blocked on it.
	stop := context.AfterFunc(ctx, func() { _ = rwc.Close() })
	return &openStream{transport: "raw", body: rwc, w: rawCloser{rwc, stop}, header: res.Header}, 0
}

// upgradedTo says whether a 101's Upgrade header names the raw stream.
func upgradedTo(v string) bool {
	for p := range strings.SplitSeq(v, ",") {
		if strings.EqualFold(strings.TrimSpace(p), nodestream.UpgradeToken) {
			return true
		}
	}
	return false
}

// rawCloser closes a raw stream's connection.
type rawCloser struct {
	io.ReadWriteCloser
	stop func() bool
}

func (c rawCloser) Close() error {
	c.stop()
	return c.ReadWriteCloser.Close()
}
