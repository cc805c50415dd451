package agent

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	otellog "go.opentelemetry.io/otel/log"
	"go.opentelemetry.io/otel/metric"

	"github.com/fulcrumlb/fulcrum/dataplane/haproxy"
)

// The access log of tenants' traffic: HAProxy sends one datagram per request
// (per connection on tcp listeners) of the listeners whose access log is
// enabled to a unix datagram socket in the state directory (the log-format is
// in dataplane/haproxy/render_log.go). One goroutine reads the socket into a
// bounded queue, dropping (and counting) what does not fit, so a slow
// consumer never makes HAProxy wait: HAProxy's own sends never block either,
// and it drops what the socket buffer cannot take. Another goroutine parses
// the records and emits each as an OpenTelemetry log record (through the
// LoggerProvider: OTEL_LOGS_EXPORTER) and as a JSON line (--access-log).

// Access log limits.
const (
	accessLogQueue   = 4096    // records waiting to be emitted
	accessLogRecvBuf = 4 << 20 // socket receive buffer asked for, bytes
	accessLogMaxSize = 16384   // longest datagram read; HAProxy sends at most 8192
)

// AccessRecord is one access log record: a request of an http or https
// listener, a connection of a tcp one, or a connection that failed before
// either (type "error": a TLS handshake failure). It never holds a request body, a
// query string, an Authorization header or a cookie.
type AccessRecord struct {
	Time           time.Time `json:"time"` // when HAProxy accepted the request or connection
	Type           string    `json:"type"` // http | tcp | error
	Node           string    `json:"node,omitempty"`
	TenantID       string    `json:"tenant_id,omitempty"`
	LoadBalancerID string    `json:"load_balancer_id"`
	ListenerID     string    `json:"listener_id"`
	PoolID         string    `json:"pool_id,omitempty"`   // "" when no pool was chosen
	MemberID       string    `json:"member_id,omitempty"` // "" when no member was reached
	ClientIP       string    `json:"client_ip"`
	ClientPort     int       `json:"client_port"`
	VIP            string    `json:"vip"`
	Port           int       `json:"port"`
	// HTTP only.
	Method    string `json:"method,omitempty"`
	Host      string `json:"host,omitempty"`
	Path      string `json:"path,omitempty"` // without the query string
	Status    int    `json:"status,omitempty"`
	RequestID string `json:"request_id,omitempty"`
	UserAgent string `json:"user_agent,omitempty"`
	BytesIn   int64  `json:"bytes_in"`  // from the client
	BytesOut  int64  `json:"bytes_out"` // to the client
	// Timings in milliseconds (HAProxy's Tq, Tw, Tc, Tr, Ta; Tt for tcp);
	// -1 when the step did not happen.
	RequestMS  int    `json:"request_ms"`        // Tq: receiving the request (http)
	QueueMS    int    `json:"queue_ms"`          // Tw: waiting in queues
	ConnectMS  int    `json:"connect_ms"`        // Tc: connecting to the member
	ResponseMS int    `json:"response_ms"`       // Tr: the member's response headers (http)
	TotalMS    int    `json:"total_ms"`          // Ta (http) or Tt (tcp)
	TermState  string `json:"termination_state"` // HAProxy's two-letter session state, "--" for a normal end
	// Error is why a connection failed before any request (type "error"),
	// e.g. "SSL handshake failure".
	Error string `json:"error,omitempty"`
}

// haproxyRecord is a record as the log-format of render_log.go writes it.
type haproxyRecord struct {
	V          int    `json:"v"`
	Type       string `json:"type"`
	TS         int64  `json:"ts"` // milliseconds since the epoch
	LB         string `json:"lb"`
	Tenant     string `json:"tenant"`
	Listener   string `json:"listener"`
	Client     string `json:"client"`
	ClientPort int    `json:"client_port"`
	VIP        string `json:"vip"`
	Port       int    `json:"port"`
	Pool       string `json:"pool"`
	Member     string `json:"member"`
	BytesIn    int64  `json:"bytes_in"`
	BytesOut   int64  `json:"bytes_out"`
	Term       string `json:"term"`
	Status     int    `json:"status"`
	Tq         int    `json:"tq"`
	Tw         int    `json:"tw"`
	Tc         int    `json:"tc"`
	Tr         int    `json:"tr"`
	Ta         int    `json:"ta"`
	Tt         int    `json:"tt"`
	Method     string `json:"method"`
	RequestID  string `json:"request_id"`
	Host       string `json:"host"`
	Path       string `json:"path"`
	UserAgent  string `json:"user_agent"`
	Error      string `json:"error"`
}

// ParseAccessRecord parses one datagram HAProxy sent to the access log socket.
func ParseAccessRecord(b []byte) (AccessRecord, error) {
	var h haproxyRecord
	if err := json.Unmarshal(b, &h); err != nil {
		return AccessRecord{}, fmt.Errorf("access log record: %w", err)
	}
	if h.V != haproxy.AccessLogVersion {
		return AccessRecord{}, fmt.Errorf("access log record: version %d, want %d", h.V, haproxy.AccessLogVersion)
	}
	if h.Type != "http" && h.Type != "tcp" && h.Type != "error" {
		return AccessRecord{}, fmt.Errorf("access log record: type %s", strconv.Quote(h.Type))
	}
	if h.LB == "" || h.Listener == "" {
		return AccessRecord{}, errors.New("access log record: no load balancer or listener")
	}
	// HAProxy writes "-" for a value it does not have.
	val := func(s string) string {
		if s == "-" {
			return ""
		}
		return s
	}
	r := AccessRecord{Time: time.UnixMilli(h.TS).UTC(), Type: h.Type, TenantID: val(h.Tenant), LoadBalancerID: h.LB, ListenerID: h.Listener,
		PoolID: val(h.Pool), MemberID: val(h.Member), ClientIP: val(h.Client), ClientPort: h.ClientPort, VIP: val(h.VIP), Port: h.Port,
		BytesIn: h.BytesIn, BytesOut: h.BytesOut, QueueMS: h.Tw, ConnectMS: h.Tc, TermState: val(h.Term)}
	if r.PoolID == r.ListenerID { // no backend chosen: HAProxy names the frontend
		r.PoolID = ""
	}
	if r.MemberID == "<NOSRV>" {
		r.MemberID = ""
	}
	switch h.Type {
	case "tcp":
		r.RequestMS, r.ResponseMS, r.TotalMS = -1, -1, h.Tt
		return r, nil
	case "error":
		r.PoolID, r.MemberID, r.Error = "", "", val(h.Error)
		r.RequestMS, r.QueueMS, r.ConnectMS, r.ResponseMS, r.TotalMS = -1, -1, -1, -1, -1
		return r, nil
	}
	r.Method, r.Host, r.Path, r.Status = val(h.Method), val(h.Host), val(h.Path), h.Status
	r.RequestID, r.UserAgent = val(h.RequestID), val(h.UserAgent)
	if r.Method == "<BADREQ>" {
		r.Method = ""
	}
	r.RequestMS, r.ResponseMS, r.TotalMS = h.Tq, h.Tr, h.Ta
	return r, nil
}

// accessLog reads the socket and emits the records.
type accessLog struct {
	node    string
	log     *slog.Logger
	logger  otellog.Logger
	out     io.Writer // JSON lines; nil for none
	queue   chan []byte
	dropped atomic.Int64 // datagrams dropped: queue full or malformed
	emitted atomic.Int64

	droppedCounter metric.Int64Counter
	emittedCounter metric.Int64Counter
}

func newAccessLog(node string, log *slog.Logger, lp otellog.LoggerProvider, out io.Writer, mp metric.MeterProvider) *accessLog {
	m := mp.Meter("github.com/fulcrumlb/fulcrum/dataplane/agent")
	al := &accessLog{node: node, log: log, out: out, queue: make(chan []byte, accessLogQueue),
		logger: lp.Logger("github.com/fulcrumlb/fulcrum/dataplane/agent/accesslog")}
	al.droppedCounter, _ = m.Int64Counter("fulcrum.agent.access_log.dropped",
		metric.WithDescription("Access log records dropped, by reason: overload (the agent could not keep up) or malformed."))
	al.emittedCounter, _ = m.Int64Counter("fulcrum.agent.access_log.records",
		metric.WithDescription("Access log records emitted."))
	return al
}

// listen binds the unix datagram socket at path (replacing a stale one: the
// state directory is locked, so no other agent uses it).
func listenAccessLog(path string) (*net.UnixConn, error) {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("access log socket: %w", err)
	}
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return nil, fmt.Errorf("access log socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		conn.Close()
		return nil, fmt.Errorf("access log socket: %w", err)
	}
	_ = conn.SetReadBuffer(accessLogRecvBuf) // the kernel may cap it; a smaller buffer only drops earlier
	return conn, nil
}

// run reads conn until ctx ends, emitting what it reads; it closes conn.
func (al *accessLog) run(ctx context.Context, conn *net.UnixConn) {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); al.emitLoop(ctx) }()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	buf := make([]byte, accessLogMaxSize)
	for {
		n, _, err := conn.ReadFromUnix(buf)
		if err != nil {
			if ctx.Err() == nil && !errors.Is(err, net.ErrClosed) {
				al.log.Error("access log socket", "err", err)
			}
			break
		}
		al.offer(ctx, append([]byte(nil), buf[:n]...))
	}
	close(al.queue)
	wg.Wait()
}

// offer queues a datagram, or drops it when the queue is full.
func (al *accessLog) offer(ctx context.Context, b []byte) {
	select {
	case al.queue <- b:
	default:
		al.drop(ctx, "overload")
	}
}

func (al *accessLog) drop(ctx context.Context, reason string) {
	al.dropped.Add(1)
	al.droppedCounter.Add(ctx, 1, metric.WithAttributes(attribute.String("reason", reason)))
}

// emitLoop emits queued records until the queue is closed (what is queued
// when ctx ends is still emitted).
func (al *accessLog) emitLoop(ctx context.Context) {
	ctx = context.WithoutCancel(ctx)
	var w *bufio.Writer
	if al.out != nil {
		w = bufio.NewWriterSize(al.out, 64<<10)
	}
	var lastWarn time.Time
	for b := range al.queue {
		r, err := ParseAccessRecord(b)
		if err != nil {
			al.drop(ctx, "malformed")
			al.log.Debug("access log record dropped", "err", err)
			continue
		}
		r.Node = al.node
		al.emitOTel(ctx, &r)
		if w != nil {
			line, _ := json.Marshal(&r)
			_, _ = w.Write(append(line, '\n'))
			if len(al.queue) == 0 { // flush when idle, in batches under load
				if err := w.Flush(); err != nil {
					// A bufio.Writer keeps its error: start afresh (the
					// buffered lines are lost), warning once a minute.
					w.Reset(al.out)
					if time.Since(lastWarn) > time.Minute {
						al.log.Warn("access log output: lines lost", "err", err)
						lastWarn = time.Now()
					}
				}
			}
		}
		al.emitted.Add(1)
		al.emittedCounter.Add(ctx, 1)
	}
	if w != nil {
		_ = w.Flush()
	}
}

func (al *accessLog) emitOTel(ctx context.Context, r *AccessRecord) {
	const event = "fulcrum.access_log"
	if !al.logger.Enabled(ctx, otellog.EnabledParameters{Severity: otellog.SeverityInfo, EventName: event}) {
		return
	}
	var rec otellog.Record
	rec.SetEventName(event)
	rec.SetTimestamp(r.Time)
	rec.SetObservedTimestamp(time.Now())
	rec.SetSeverity(otellog.SeverityInfo)
	rec.SetSeverityText("INFO")
	body := r.Type + " " + r.ClientIP + ":" + strconv.Itoa(r.ClientPort) + " -> " + r.ListenerID
	switch r.Type {
	case "http":
		body = r.Method + " " + r.Path + " " + strconv.Itoa(r.Status) + " " + r.RequestID
	case "error":
		body += ": " + r.Error
		rec.SetSeverity(otellog.SeverityWarn)
		rec.SetSeverityText("WARN")
	}
	rec.SetBody(attribute.StringValue(body))
	attrs := []attribute.KeyValue{
		attribute.String("fulcrum.load_balancer_id", r.LoadBalancerID),
		attribute.String("fulcrum.listener_id", r.ListenerID),
		attribute.String("client.address", r.ClientIP),
		attribute.Int("client.port", r.ClientPort),
		attribute.String("server.address", r.VIP),
		attribute.Int("server.port", r.Port),
		attribute.Int64("fulcrum.bytes_in", r.BytesIn),
		attribute.Int64("fulcrum.bytes_out", r.BytesOut),
		attribute.Int("fulcrum.queue_ms", r.QueueMS),
		attribute.Int("fulcrum.connect_ms", r.ConnectMS),
		attribute.Int("fulcrum.total_ms", r.TotalMS),
		attribute.String("fulcrum.termination_state", r.TermState),
	}
	opt := func(k, v string) {
		if v != "" {
			attrs = append(attrs, attribute.String(k, v))
		}
	}
	opt("fulcrum.tenant_id", r.TenantID)
	opt("fulcrum.pool_id", r.PoolID)
	opt("fulcrum.member_id", r.MemberID)
	opt("fulcrum.node", r.Node)
	opt("error.type", r.Error)
	if r.Type == "http" {
		attrs = append(attrs, attribute.Int("http.response.status_code", r.Status),
			attribute.Int("fulcrum.request_ms", r.RequestMS), attribute.Int("fulcrum.response_ms", r.ResponseMS))
		opt("http.request.method", r.Method)
		opt("url.path", r.Path)
		if r.Host != "" {
			attrs = append(attrs, attribute.StringSlice("http.request.header.host", []string{r.Host}))
		}
		opt("user_agent.original", r.UserAgent)
		opt("fulcrum.request_id", r.RequestID)
	}
	rec.AddAttributes(attrs...)
	al.logger.Emit(ctx, rec)
}
