package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	otellog "go.opentelemetry.io/otel/log"
	sdklog "go.opentelemetry.io/otel/sdk/log"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/fulcrumlb/fulcrum/internal/telemetry"
)

// Datagrams as HAProxy 2.6 sends them with the log-format of
// dataplane/haproxy/render_log.go (captured from a real HAProxy).
const (
	haproxyHTTPRecord  = `{"v":1,"type":"http","ts":1795797459589,"lb":"lb_1","tenant":"tnt_1","listener":"lsn_a","client":"127.0.0.1","client_port":53658,"vip":"127.77.0.1","port":8080,"pool":"pool_a","member":"mbr_a","bytes_in":116,"bytes_out":73,"term":"--","status":200,"tq":0,"tw":0,"tc":1,"tr":2,"ta":3,"method":"GET","request_id":"abc\"\\def","host":"example.com","path":"\/p\/a%22th","user_agent":"a, b \"x\""}` + "\n"
	haproxyNoSrvRecord = `{"v":1,"type":"http","ts":1795797459659,"lb":"lb_1","tenant":"-","listener":"lsn_a","client":"::1","client_port":53660,"vip":"::1","port":8080,"pool":"lsn_a","member":"<NOSRV>","bytes_in":0,"bytes_out":187,"term":"CR","status":400,"tq":-1,"tw":-1,"tc":-1,"tr":-1,"ta":0,"method":"<BADREQ>","request_id":"-","host":"-","path":"-","user_agent":"-"}`
	haproxyErrorRecord = `{"v":1,"type":"error","ts":1795798953900,"lb":"lb_1","tenant":"tnt_1","listener":"lsn_s","client":"127.0.0.1","client_port":39406,"vip":"127.0.0.1","port":18083,"term":"PR","error":"SSL handshake failure"}` + "\n"
	haproxyTCPRecord   = `{"v":1,"type":"tcp","ts":1795797459675,"lb":"lb_1","tenant":"tnt_1","listener":"lsn_t","client":"127.0.0.1","client_port":52804,"vip":"127.77.0.1","port":5432,"pool":"pool_t","member":"mbr_t","bytes_in":82,"bytes_out":66,"term":"--","tw":1,"tc":0,"tt":12}`
)

func TestParseAccessLogRecord(t *testing.T) {
	r, err := ParseAccessRecord([]byte(haproxyHTTPRecord))
	if err != nil {
		t.Fatal(err)
	}
	want := AccessRecord{Time: time.UnixMilli(1795797459589).UTC(), Type: "http", TenantID: "tnt_1", LoadBalancerID: "lb_1", ListenerID: "lsn_a",
		PoolID: "pool_a", MemberID: "mbr_a", ClientIP: "127.0.0.1", ClientPort: 53658, VIP: "127.77.0.1", Port: 8080,
		Method: "GET", Host: "example.com", Path: "/p/a%22th", Status: 200, RequestID: `abc"\def`, UserAgent: `a, b "x"`,
		BytesIn: 116, BytesOut: 73, RequestMS: 0, QueueMS: 0, ConnectMS: 1, ResponseMS: 2, TotalMS: 3, TermState: "--"}
	if r != want {
		t.Errorf("http record:\n got %+v\nwant %+v", r, want)
	}

	r, err = ParseAccessRecord([]byte(haproxyNoSrvRecord))
	if err != nil {
		t.Fatal(err)
	}
	if r.PoolID != "" || r.MemberID != "" || r.Method != "" || r.RequestID != "" || r.Path != "" || r.TenantID != "" || r.Status != 400 || r.ClientIP != "::1" {
		t.Errorf("a request that reached no member: %+v", r)
	}

	r, err = ParseAccessRecord([]byte(haproxyTCPRecord))
	if err != nil {
		t.Fatal(err)
	}
	if r.Type != "tcp" || r.PoolID != "pool_t" || r.MemberID != "mbr_t" || r.TotalMS != 12 || r.RequestMS != -1 || r.Status != 0 || r.BytesOut != 66 {
		t.Errorf("tcp record: %+v", r)
	}

	r, err = ParseAccessRecord([]byte(haproxyErrorRecord))
	if err != nil {
		t.Fatal(err)
	}
	if r.Type != "error" || r.Error != "SSL handshake failure" || r.ListenerID != "lsn_s" || r.TermState != "PR" || r.TotalMS != -1 || r.ClientPort != 39406 {
		t.Errorf("error record: %+v", r)
	}

	for _, bad := range []string{
		``, `not json`, `{"v":2,"type":"http","lb":"lb_1","listener":"lsn_a"}`, `{"v":1,"type":"udp","lb":"lb_1","listener":"lsn_a"}`,
		`{"v":1,"type":"http","listener":"lsn_a"}`, haproxyHTTPRecord[:200],
	} {
		if _, err := ParseAccessRecord([]byte(bad)); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

// memLogs is an in-memory OTel log exporter.
type memLogs struct {
	mu      sync.Mutex
	records []sdklog.Record
}

func (m *memLogs) Export(_ context.Context, rs []sdklog.Record) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, r := range rs {
		m.records = append(m.records, r.Clone())
	}
	return nil
}
func (m *memLogs) Shutdown(context.Context) error   { return nil }
func (m *memLogs) ForceFlush(context.Context) error { return nil }

// blockingWriter holds every write until released.
type blockingWriter struct {
	release chan struct{}
	mu      sync.Mutex
	buf     bytes.Buffer
}

func (w *blockingWriter) Write(p []byte) (int, error) {
	<-w.release
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Write(p)
}

// TestAccessLogSocket: datagrams on the socket come out as JSON lines and
// OTel log records; when the output stalls, the reader never blocks the
// sender and drops what does not fit, counting it.
func TestAccessLogSocket(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "access.sock")
	conn, err := listenAccessLog(sock)
	if err != nil {
		t.Fatal(err)
	}
	exp := &memLogs{}
	lp := sdklog.NewLoggerProvider(sdklog.WithProcessor(sdklog.NewSimpleProcessor(exp)))
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	out := &blockingWriter{release: make(chan struct{})}
	al := newAccessLog("node-1", slog.New(slog.NewTextHandler(io.Discard, nil)), lp, out, mp)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); al.run(ctx, conn) }()

	client, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	// The first record reaches the writer, which holds it; the following ones
	// fill the queue, then are dropped. Sends never wait for the writer.
	n := accessLogQueue + 2000
	sent := 0
	_ = client.SetWriteDeadline(time.Now().Add(30 * time.Second))
	for i := 0; i < n; i++ {
		if _, err := client.Write([]byte(haproxyHTTPRecord)); err != nil {
			t.Fatalf("send %d: %v (the agent must never make HAProxy wait)", i, err)
		}
		sent++
	}
	waitFor(t, "drops counted", func() bool { return al.dropped.Load() > 0 })
	close(out.release)
	waitFor(t, "every datagram emitted or dropped", func() bool { return al.emitted.Load()+al.dropped.Load() == int64(sent) })
	if _, err := client.Write([]byte("garbage")); err != nil {
		t.Fatal(err)
	}
	sent++
	waitFor(t, "the malformed datagram dropped", func() bool { return al.emitted.Load()+al.dropped.Load() == int64(sent) })
	cancel()
	<-done
	t.Logf("sent %d, emitted %d, dropped %d", sent, al.emitted.Load(), al.dropped.Load())

	lines := strings.Split(strings.TrimSpace(out.buf.String()), "\n")
	if int64(len(lines)) != al.emitted.Load() {
		t.Errorf("%d JSON lines for %d records", len(lines), al.emitted.Load())
	}
	var rec AccessRecord
	if err := json.Unmarshal([]byte(lines[0]), &rec); err != nil {
		t.Fatal(err)
	}
	if rec.RequestID != `abc"\def` || rec.Node != "node-1" || rec.Status != 200 || rec.LoadBalancerID != "lb_1" {
		t.Errorf("JSON line: %s", lines[0])
	}

	exp.mu.Lock()
	nOTel := len(exp.records)
	var first sdklog.Record
	if nOTel > 0 {
		first = exp.records[0]
	}
	exp.mu.Unlock()
	if int64(nOTel) != al.emitted.Load() {
		t.Errorf("%d OTel records for %d records", nOTel, al.emitted.Load())
	}
	attrs := map[string]string{}
	first.WalkAttributes(func(kv attribute.KeyValue) bool { attrs[string(kv.Key)] = kv.Value.Emit(); return true })
	for k, v := range map[string]string{"fulcrum.load_balancer_id": "lb_1", "fulcrum.listener_id": "lsn_a", "fulcrum.tenant_id": "tnt_1",
		"fulcrum.request_id": `abc"\def`, "http.response.status_code": "200", "fulcrum.member_id": "mbr_a"} {
		if attrs[k] != v {
			t.Errorf("OTel attribute %s = %q, want %q (all: %v)", k, attrs[k], v, attrs)
		}
	}
	if first.Severity() != otellog.SeverityInfo || first.EventName() != "fulcrum.access_log" {
		t.Errorf("OTel record severity %v, event %q", first.Severity(), first.EventName())
	}

	// fulcrum_agent_access_log_dropped_total, by reason.
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	dropped := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != "fulcrum.agent.access_log.dropped" {
				continue
			}
			for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
				reason, _ := dp.Attributes.Value("reason")
				dropped[reason.AsString()] += dp.Value
			}
		}
	}
	if dropped["malformed"] != 1 || dropped["overload"] == 0 || dropped["overload"]+dropped["malformed"] != al.dropped.Load() {
		t.Errorf("dropped metric %v, counted %d", dropped, al.dropped.Load())
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting: %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestAccessLogDroppedMetricName: the drops are served to Prometheus as
// fulcrum_agent_access_log_dropped_total{reason}.
func TestAccessLogDroppedMetricName(t *testing.T) {
	tel, err := telemetry.Setup(context.Background(), "fulcrum-agent", "test", telemetry.WithoutGlobals())
	if err != nil {
		t.Fatal(err)
	}
	defer tel.Shutdown(context.Background()) //nolint:errcheck
	al := newAccessLog("n", slog.New(slog.NewTextHandler(io.Discard, nil)), tel.LoggerProvider(), nil, tel.MeterProvider())
	al.drop(context.Background(), "overload")
	rec := httptest.NewRecorder()
	tel.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if !strings.Contains(rec.Body.String(), `fulcrum_agent_access_log_dropped_total{otel_scope_name="github.com/fulcrumlb/fulcrum/dataplane/agent"`) ||
		!strings.Contains(rec.Body.String(), `reason="overload"} 1`) {
		t.Errorf("no fulcrum_agent_access_log_dropped_total in:\n%s", grepLines(rec.Body.String(), "access_log"))
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
