package fleetsim

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/fulcrumlb/fulcrum/dataplane/nodestream"
)

// streamLoop registers and keeps a node protocol 3 stream open, as the
// agent does with an API that serves it: one raw stream per node (an
// HTTP/1.1 connection upgraded by GET, 101) or one HTTP/2 request per node
// on its own connection, snapshot frames pushed by the API, the acknowledgement of
// each sent back on the request as a message (one line of JSON).
func (n *node) streamLoop(ctx context.Context) {
	var p http.Protocols
	if n.f.cfg.StreamHTTP1 || n.f.cfg.StreamRaw {
		p.SetHTTP1(true)
	} else {
		p.SetUnencryptedHTTP2(true)
	}
	tr := &http.Transport{DialContext: (&net.Dialer{Timeout: 5 * time.Second}).DialContext, Protocols: &p,
		HTTP2: &http.HTTP2Config{SendPingTimeout: 30 * time.Second, PingTimeout: 15 * time.Second}, DisableCompression: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	backoff := time.Second
	registered := false
	for ctx.Err() == nil {
		if !registered {
			if err := n.register(ctx); err != nil {
				sleep(ctx, backoff)
				backoff = min(backoff*2, 5*time.Second)
				continue
			}
			registered = true
		}
		switch n.stream(ctx, client) {
		case http.StatusNotFound:
			registered = false
		case http.StatusOK:
			backoff = time.Second
			sleep(ctx, 100*time.Millisecond)
		default:
			sleep(ctx, backoff)
			backoff = min(backoff*2, 5*time.Second)
		}
	}
}

// stream runs one stream until it ends: 200 when it broke or the API
// closed it to be opened again, else the status it was refused or closed with.
func (n *node) stream(ctx context.Context, client *http.Client) int {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	after, has := n.held()
	q := url.Values{"after": {strconv.FormatInt(after, 10)}}
	if has && after > 0 {
		q.Set("delta", "true")
	}
	url := n.f.cfg.Endpoint + "/v1/nodes/" + n.name + "/stream?" + q.Encode()
	var req *http.Request
	var pw *io.PipeWriter
	var err error
	if n.f.cfg.StreamRaw {
		// The raw stream: GET with Connection: Upgrade, answered 101; frames
		// and messages then go straight over the connection.
		req, err = http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return 0
		}
		req.Header.Set("Connection", "Upgrade")
		req.Header.Set("Upgrade", nodestream.UpgradeToken)
	} else {
		var pr *io.PipeReader
		pr, pw = io.Pipe()
		defer pw.Close()
		req, err = http.NewRequestWithContext(ctx, http.MethodPost, url, pr)
		if err != nil {
			return 0
		}
		req.Header.Set("Content-Type", "application/x-ndjson")
	}
	req.Header.Set("Authorization", "Bearer "+n.f.cfg.Token)
	req.Header.Set("Accept-Encoding", "gzip")
	req.Header.Set("Fulcrum-Agent-Format", "2")
	req.Header.Set("Fulcrum-Agent-Protocol", "3")
	res, err := client.Do(req)
	if err != nil {
		return 0
	}
	defer res.Body.Close()
	var w io.WriteCloser = pw
	var r io.Reader = res.Body
	if n.f.cfg.StreamRaw {
		rw, ok := res.Body.(io.ReadWriteCloser)
		if res.StatusCode != http.StatusSwitchingProtocols || !ok {
			_, _ = io.Copy(io.Discard, res.Body)
			return res.StatusCode
		}
		// Closing the connection ends the reads when the stream ends.
		stop := context.AfterFunc(ctx, func() { rw.Close() })
		defer stop()
		w, r = rw, bufio.NewReaderSize(rw, 32<<10)
	} else if res.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, res.Body)
		return res.StatusCode
	}
	gz := res.Header.Get("Fulcrum-Stream-Encoding") == "gzip"
	sender := nodestream.NewSender(ctx, w, 15*time.Second, cancel)
	frames := nodestream.NewReader(r, 1<<30)
	for {
		kind, payload, err := frames.Next()
		if err != nil {
			return http.StatusOK
		}
		got := time.Now()
		switch kind {
		case nodestream.FrameClose:
			st := 0
			if v, ok := TopLevelInt(payload, "status"); ok {
				st = int(v)
			}
			if st == http.StatusServiceUnavailable {
				return http.StatusOK
			}
			return st
		case nodestream.FrameSnapshot:
			body, err := nodestream.Inflate(payload, gz)
			if err != nil {
				return 0
			}
			rev, ok := TopLevelInt(body, "revision")
			if !ok {
				return 0
			}
			n.mu.Lock()
			if rev > n.rev || !n.has {
				n.rev, n.has = rev, true
			}
			n.mu.Unlock()
			n.f.w.receipt("snap %d %d %d %d", n.idx, rev, len(payload), got.UnixNano())
			if !n.f.acksOff.Load() {
				n.f.ackPolls.Add(1)
				if !sender.Send(nodestream.Ack(rev)) {
					return http.StatusOK
				}
			}
		}
	}
}
