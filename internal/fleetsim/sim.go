// Package fleetsim simulates a fleet of dataplane nodes speaking the real
// agent protocol over HTTP (register, long-poll snapshots, ack and heartbeat
// reports) without HAProxy, to measure the control plane at fleet scale
// (issue 10). It uses only the public protocol, never the API's packages, so
// it measures the API before and after the API changes.
//
// Run holds the simulated nodes; fleet_test.go drives a real stack and runs
// Run in a child process, so the API's CPU (the test process) and the
// simulator's are measured apart.
package fleetsim

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Config describes the simulated fleet.
type Config struct {
	Endpoint string // the API, http://127.0.0.1:port
	Token    string // a node token
	Prefix   string // node names are Prefix-0000 …
	Nodes    int
	// Heartbeat is the interval between reports of one node (a real agent
	// also reports after every snapshot it applies).
	Heartbeat time.Duration
	// PollWait is the long-poll wait sent as `wait`.
	PollWait time.Duration
	// ReportTimeout is the latency above which a report counts as a timeout
	// (also while still in flight). The HTTP client waits PollWait + 30s, as
	// the agent's does, so the simulator does not cancel work the agent would
	// wait for.
	ReportTimeout time.Duration
	// ReportTail is the report body after the revision: the JSON members
	// from `"status"` to the closing brace, as a real agent sends them
	// (member statuses, stats). Encoded once: the simulator spends no CPU on it.
	ReportTail []byte
	// HeartbeatTail, when set, replaces ReportTail after a node's first
	// answered report: what a real agent sends while nothing changed (it
	// reports member health and counters only when they change, and all of
	// them once a minute; the simulator's members never change).
	HeartbeatTail []byte
	// Deltas asks for snapshot format 2 and, once a node holds a revision,
	// for deltas (only the load balancers changed since), as the agent does.
	Deltas bool
	// PollAcks makes the nodes speak node protocol 2, as the agent does:
	// once the API's answers say it serves it, the poll after a snapshot
	// carries its acknowledgement (applied=) instead of a report; reports
	// are then heartbeats (and full first reports) only. Without it every
	// snapshot is acknowledged by a report (an agent from before).
	PollAcks bool
	// Stream makes the nodes speak node protocol 3 (as the agent does with
	// an API that serves it): one HTTP/2 stream per node (POST
	// /v1/nodes/{name}/stream, each node on its own connection) pushing
	// snapshots, acknowledgements sent back on it. Needs PollAcks and Deltas.
	Stream bool
	// StreamHTTP1 opens the streams over HTTP/1.1 (full duplex, chunked)
	// instead of HTTP/2, to compare the API's cost of each (the agent uses
	// HTTP/2: proxies buffer HTTP/1.1 request bodies).
	StreamHTTP1 bool
	// StreamRaw opens the streams as the agent does first: raw streams, an
	// HTTP/1.1 connection per node upgraded by GET /v1/nodes/{name}/stream
	// (101 Switching Protocols), the same frames and messages straight on
	// the connection.
	StreamRaw bool
	// MaxDuration bounds the whole run.
	MaxDuration time.Duration
}

// Events written to out, one a line:
//
//	snap <node> <revision> <wire bytes> <unix ns>   a node received a snapshot (HTTP 200)
//	stats <label> <n> <p50 ms> <p99 ms> <max ms> <timeouts> <errors> <user ms> <sys ms> <full n> <full p50 ms> <full p99 ms> <full max ms> <full timeouts> <full errors> <acks by report> <acks by poll> <nodes reported>
//	ready                                            every node started
//
// Commands read from in, one a line: `mark` starts a new window of report
// latencies; `stats <label>` prints the window's (heartbeats and acks first,
// then apart the full first reports of nodes and their re-sends until one
// is answered 2xx, when a HeartbeatTail is set); `heartbeats off` stops the
// periodic reports (a node still reports after every snapshot: its ack) and
// `heartbeats on` resumes them; `acks off` / `acks on` do the same for the
// reports after snapshots; EOF ends the run.

// Run simulates cfg.Nodes nodes until in reaches EOF, ctx ends or
// cfg.MaxDuration passes.
func Run(ctx context.Context, cfg Config, in io.Reader, out io.Writer) error {
	if cfg.Nodes <= 0 || cfg.Endpoint == "" {
		return errors.New("fleetsim: Nodes and Endpoint are required")
	}
	if !strings.HasPrefix(cfg.Endpoint, "http://127.") && !strings.HasPrefix(cfg.Endpoint, "http://[::1]") {
		return fmt.Errorf("fleetsim: endpoint %q is not on loopback", cfg.Endpoint)
	}
	if cfg.MaxDuration <= 0 {
		cfg.MaxDuration = 20 * time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.MaxDuration)
	defer cancel()
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		MaxIdleConns:        4 * cfg.Nodes,
		MaxIdleConnsPerHost: 4 * cfg.Nodes,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true, // Accept-Encoding is set by hand, so the wire bytes can be counted
	}
	defer tr.CloseIdleConnections()
	w := &writer{out: bufio.NewWriterSize(out, 64<<10)}
	wctx, wcancel := context.WithCancel(context.Background())
	defer wcancel()
	go w.flushing(wctx)
	defer func() {
		w.mu.Lock()
		w.out.Flush()
		w.mu.Unlock()
	}()
	f := &fleet{cfg: cfg, w: w,
		poll:   &http.Client{Transport: tr, Timeout: cfg.PollWait + 30*time.Second},
		report: &http.Client{Transport: tr, Timeout: cfg.PollWait + 30*time.Second}}
	var wg sync.WaitGroup
	for i := 0; i < cfg.Nodes; i++ {
		n := &node{f: f, name: fmt.Sprintf("%s-%04d", cfg.Prefix, i), idx: i, kick: make(chan struct{}, 1)}
		f.nodes = append(f.nodes, n)
		wg.Add(2)
		go func() { defer wg.Done(); n.pollLoop(ctx) }()
		go func() { defer wg.Done(); n.reportLoop(ctx) }()
	}
	w.line("ready")
	sc := bufio.NewScanner(in)
	cmds := make(chan string)
	go func() {
		defer close(cmds)
		for sc.Scan() {
			cmds <- sc.Text()
		}
	}()
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case c, ok := <-cmds:
			if !ok {
				break loop
			}
			switch fields := strings.Fields(c); {
			case len(fields) == 1 && fields[0] == "mark":
				f.mark()
			case len(fields) == 2 && fields[0] == "stats":
				f.stats(fields[1])
			case len(fields) == 2 && fields[0] == "heartbeats":
				f.heartbeatsOff.Store(fields[1] == "off")
			case len(fields) == 2 && fields[0] == "acks":
				f.acksOff.Store(fields[1] == "off")
			}
		}
	}
	cancel()
	wg.Wait()
	return nil
}

type writer struct {
	mu  sync.Mutex
	out *bufio.Writer
	// held says receipts wait in out for the next flush (receipt).
	held bool
}

// receiptFlush is how long a receipt line may wait in the simulator's
// output before it is written. The driver reads these lines in the process
// whose CPU is the API's figure: a write's 1,000 receipts written one at a
// time cost it up to 1,000 reads and wake-ups, written together a few. Each
// line carries its own receipt time, and the driver looks every 50 ms.
const receiptFlush = 5 * time.Millisecond

// line writes one line at once (with the receipts waiting before it).
func (w *writer) line(format string, args ...any) {
	w.mu.Lock()
	defer w.mu.Unlock()
	fmt.Fprintf(w.out, format+"\n", args...)
	w.out.Flush()
	w.held = false
}

// receipt writes one line within receiptFlush (flushing).
func (w *writer) receipt(format string, args ...any) {
	w.mu.Lock()
	defer w.mu.Unlock()
	fmt.Fprintf(w.out, format+"\n", args...)
	w.held = true
}

// flushing writes the receipts waiting every receiptFlush until ctx ends.
func (w *writer) flushing(ctx context.Context) {
	t := time.NewTicker(receiptFlush)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			w.mu.Lock()
			w.out.Flush()
			w.mu.Unlock()
			return
		case <-t.C:
		}
		w.mu.Lock()
		if w.held {
			w.out.Flush()
			w.held = false
		}
		w.mu.Unlock()
	}
}

type fleet struct {
	cfg          Config
	w            *writer
	poll, report *http.Client
	nodes        []*node

	// heartbeatsOff pauses the periodic reports (acks still go); acksOff
	// the reports after snapshots.
	heartbeatsOff, acksOff atomic.Bool
	// ackReports and ackPolls count the acknowledgements sent as reports
	// and carried by polls; reported the nodes with a report answered.
	ackReports, ackPolls, reported atomic.Int64

	mu sync.Mutex
	// steady holds the window's heartbeats and acks, full the full first
	// reports (and their re-sends until answered 2xx).
	steady, full reportWindow
}

// reportWindow is the reports of a window of one kind.
type reportWindow struct {
	latencies []time.Duration // answered 2xx
	timeouts  int
	errs      int
}

// samples is the window's latencies with those in flight for longer than
// the report timeout (inflight) and the timeouts counted as the slowest,
// sorted.
func (w *reportWindow) samples(timeout time.Duration, inflight int) ([]time.Duration, int) {
	to := w.timeouts + inflight
	all := append(append([]time.Duration(nil), w.latencies...), make([]time.Duration, to)...)
	for i := len(w.latencies); i < len(all); i++ {
		all[i] = timeout
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	return all, to
}

func (f *fleet) mark() {
	f.mu.Lock()
	f.steady, f.full = reportWindow{}, reportWindow{}
	f.mu.Unlock()
}

func (f *fleet) stats(label string) {
	f.mu.Lock()
	var late, lateFull int
	for _, n := range f.nodes { // reports in flight for longer than ReportTimeout
		if !n.reportStart.IsZero() && time.Since(n.reportStart) > f.cfg.ReportTimeout {
			if n.reportFull {
				lateFull++
			} else {
				late++
			}
		}
	}
	all, to := f.steady.samples(f.cfg.ReportTimeout, late)
	full, toFull := f.full.samples(f.cfg.ReportTimeout, lateFull)
	errs, errsFull := f.steady.errs, f.full.errs
	f.mu.Unlock()
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	f.w.line("stats %s %d %.1f %.1f %.1f %d %d %d %d %d %.1f %.1f %.1f %d %d %d %d %d", label, len(all), ms(Percentile(all, 50)), ms(Percentile(all, 99)),
		ms(Percentile(all, 100)), to, errs, time.Duration(ru.Utime.Nano()).Milliseconds(), time.Duration(ru.Stime.Nano()).Milliseconds(),
		len(full), ms(Percentile(full, 50)), ms(Percentile(full, 99)), ms(Percentile(full, 100)), toFull, errsFull,
		f.ackReports.Load(), f.ackPolls.Load(), f.reported.Load())
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// Percentile is the nearest-rank p-th percentile of sorted samples (0 when none).
func Percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted))*p/100+0.999999) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

type node struct {
	f    *fleet
	name string
	idx  int
	kick chan struct{} // a snapshot arrived: report now

	mu  sync.Mutex
	rev int64
	has bool
	// apiAcks: the API's last answer to a poll said it records
	// acknowledgements carried by polls; ackDue is the revision the next
	// poll acknowledges (0: none). Only pollLoop uses them.
	apiAcks bool
	ackDue  int64

	reportStart time.Time // of the report in flight; under f.mu
	reportFull  bool      // the report in flight is a full first one; under f.mu
	reported    bool      // a report was answered; only reportLoop uses it
}

func (n *node) held() (int64, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.rev, n.has
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

func (n *node) do(ctx context.Context, c *http.Client, method, path string, body []byte) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, n.f.cfg.Endpoint+path, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+n.f.cfg.Token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return c.Do(req)
}

func (n *node) register(ctx context.Context) error {
	res, err := n.do(ctx, n.f.report, http.MethodPut, "/v1/nodes/"+n.name, []byte(`{"agent_version":"fleetsim"}`))
	if err != nil {
		return err
	}
	defer res.Body.Close()
	_, _ = io.Copy(io.Discard, res.Body)
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("register: HTTP %d", res.StatusCode)
	}
	return nil
}

// pollLoop registers and long-polls like the agent's pollLoop.
func (n *node) pollLoop(ctx context.Context) {
	// Nodes of a fleet do not all start in the same millisecond.
	sleep(ctx, time.Duration(rand.Int64N(int64(time.Second))))
	if n.f.cfg.Stream {
		n.streamLoop(ctx)
		return
	}
	backoff := time.Second
	registered := false
	wait := n.f.cfg.PollWait.String()
	for ctx.Err() == nil {
		if !registered {
			if err := n.register(ctx); err != nil {
				sleep(ctx, backoff)
				backoff = min(backoff*2, 5*time.Second)
				continue
			}
			registered = true
		}
		after, _ := n.held()
		q := url.Values{"after": {strconv.FormatInt(after, 10)}, "wait": {wait}}
		if n.f.cfg.Deltas && after > 0 {
			// As the agent asks once it holds a complete snapshot at after:
			// the load balancers changed since, not the whole group.
			q.Set("delta", "true")
		}
		carried := int64(0)
		if n.ackDue > 0 && n.apiAcks {
			carried = n.ackDue
			q.Set("applied", strconv.FormatInt(carried, 10))
			n.f.ackPolls.Add(1)
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, n.f.cfg.Endpoint+"/v1/nodes/"+n.name+"/snapshot?"+q.Encode(), nil)
		if err != nil {
			return
		}
		req.Header.Set("Authorization", "Bearer "+n.f.cfg.Token)
		req.Header.Set("Accept-Encoding", "gzip")
		if n.f.cfg.Deltas {
			req.Header.Set("Fulcrum-Agent-Format", "2")
		}
		if n.f.cfg.PollAcks {
			req.Header.Set("Fulcrum-Agent-Protocol", "2")
		}
		res, err := n.f.poll.Do(req)
		if err != nil {
			sleep(ctx, backoff)
			backoff = min(backoff*2, 5*time.Second)
			continue
		}
		raw, err := io.ReadAll(res.Body)
		res.Body.Close()
		got := time.Now()
		if err != nil {
			sleep(ctx, backoff)
			continue
		}
		if res.StatusCode == http.StatusOK || res.StatusCode == http.StatusNotModified {
			// As the agent: acknowledgements go in polls only to an API
			// that says it records them; one answered is not sent again.
			v, _ := strconv.Atoi(res.Header.Get("Fulcrum-Agent-Protocol"))
			n.apiAcks = n.f.cfg.PollAcks && v >= 2
			if n.apiAcks && carried > 0 && carried >= n.ackDue {
				n.ackDue = 0
			}
		}
		switch res.StatusCode {
		case http.StatusOK:
			backoff = time.Second
			body := raw
			if strings.EqualFold(res.Header.Get("Content-Encoding"), "gzip") {
				zr, err := gzip.NewReader(bytes.NewReader(raw))
				if err == nil {
					body, err = io.ReadAll(zr)
				}
				if err != nil {
					sleep(ctx, backoff)
					continue
				}
			}
			rev, ok := TopLevelInt(body, "revision")
			if !ok {
				sleep(ctx, backoff)
				continue
			}
			n.mu.Lock()
			if rev > n.rev || !n.has {
				n.rev, n.has = rev, true
			}
			n.mu.Unlock()
			n.f.w.receipt("snap %d %d %d %d", n.idx, rev, len(raw), got.UnixNano())
			if n.apiAcks {
				// The next poll acknowledges it (the agent applies first;
				// the simulator holds it at once).
				if !n.f.acksOff.Load() {
					n.ackDue = rev
				}
				continue
			}
			select {
			case n.kick <- struct{}{}:
			default:
			}
		case http.StatusNotModified:
			backoff = time.Second
		case http.StatusNotFound:
			registered = false
		default:
			sleep(ctx, backoff)
			backoff = min(backoff*2, 5*time.Second)
		}
	}
}

// reportLoop reports every Heartbeat and after every snapshot, one report at
// a time, like the agent's reportLoop; nothing before the first snapshot.
func (n *node) reportLoop(ctx context.Context) {
	// Spread the heartbeats of the fleet over the interval.
	sleep(ctx, time.Duration(rand.Int64N(int64(n.f.cfg.Heartbeat))))
	t := time.NewTicker(n.f.cfg.Heartbeat)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if n.f.heartbeatsOff.Load() {
				continue
			}
		case <-n.kick:
			if n.f.acksOff.Load() {
				continue
			}
			n.f.ackReports.Add(1)
		}
		rev, ok := n.held()
		if !ok {
			continue
		}
		tail := n.f.cfg.ReportTail
		if n.reported && n.f.cfg.HeartbeatTail != nil {
			tail = n.f.cfg.HeartbeatTail
		}
		// A node's first report carries everything (and is sent again
		// until answered); the later ones only changes: counted apart.
		full := !n.reported && n.f.cfg.HeartbeatTail != nil
		body := make([]byte, 0, len(tail)+32)
		body = append(body, `{"revision":`...)
		body = strconv.AppendInt(body, rev, 10)
		body = append(body, ',')
		body = append(body, tail...)
		start := time.Now()
		n.f.mu.Lock()
		n.reportStart, n.reportFull = start, full
		n.f.mu.Unlock()
		res, err := n.do(ctx, n.f.report, http.MethodPost, "/v1/nodes/"+n.name+"/reports", body)
		if err == nil {
			_, _ = io.Copy(io.Discard, res.Body)
			res.Body.Close()
		}
		d := time.Since(start)
		if ctx.Err() != nil {
			return
		}
		if err == nil && res.StatusCode/100 == 2 {
			// Answered, however slowly: as for the agent, what it carried
			// is acknowledged and the next reports carry only changes.
			if !n.reported {
				n.f.reported.Add(1)
			}
			n.reported = true
		}
		n.f.mu.Lock()
		n.reportStart = time.Time{}
		win := &n.f.steady
		if full {
			win = &n.f.full
		}
		switch {
		case d > n.f.cfg.ReportTimeout || err != nil && (errors.Is(err, context.DeadlineExceeded) || isTimeout(err)):
			win.timeouts++
		case err != nil || res.StatusCode/100 != 2:
			win.errs++
		default:
			win.latencies = append(win.latencies, d)
		}
		n.f.mu.Unlock()
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// TopLevelInt finds the integer member key of the top-level JSON object in
// b without decoding the rest (a snapshot can be megabytes; a thousand
// simulated nodes must not spend the machine's CPU decoding them).
func TopLevelInt(b []byte, key string) (int64, bool) {
	depth := 0
	want := `"` + key + `"`
	for i := 0; i < len(b); i++ {
		switch b[i] {
		case '{', '[':
			depth++
		case '}', ']':
			depth--
		case '"':
			// A string: find its end, skipping escaped quotes.
			j := i + 1
			for {
				k := bytes.IndexByte(b[j:], '"')
				if k < 0 {
					return 0, false
				}
				j += k
				bs := 0
				for m := j - 1; m > i && b[m] == '\\'; m-- {
					bs++
				}
				if bs%2 == 0 {
					break
				}
				j++
			}
			if depth == 1 && string(b[i:j+1]) == want {
				rest := bytes.TrimLeft(b[j+1:], " \t\r\n")
				if len(rest) == 0 || rest[0] != ':' {
					return 0, false
				}
				rest = bytes.TrimLeft(rest[1:], " \t\r\n")
				end := 0
				for end < len(rest) && (rest[end] == '-' || rest[end] >= '0' && rest[end] <= '9') {
					end++
				}
				v, err := strconv.ParseInt(string(rest[:end]), 10, 64)
				return v, err == nil
			}
			i = j
		}
	}
	return 0, false
}
