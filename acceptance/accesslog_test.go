package acceptance

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdklog "go.opentelemetry.io/otel/sdk/log"

	"github.com/fulcrumlb/fulcrum/dataplane/agent"
	"github.com/fulcrumlb/fulcrum/internal/testcerts"
	"github.com/fulcrumlb/fulcrum/internal/teststack"
)

// memLogExporter keeps exported OTel log records in memory.
type memLogExporter struct {
	mu      sync.Mutex
	records []map[string]string // attributes of each record
	bodies  []string
}

func (m *memLogExporter) Export(_ context.Context, rs []sdklog.Record) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, r := range rs {
		attrs := map[string]string{}
		r.WalkAttributes(func(kv attribute.KeyValue) bool { attrs[string(kv.Key)] = kv.Value.Emit(); return true })
		m.records = append(m.records, attrs)
		m.bodies = append(m.bodies, r.Body().Emit())
	}
	return nil
}
func (m *memLogExporter) Shutdown(context.Context) error   { return nil }
func (m *memLogExporter) ForceFlush(context.Context) error { return nil }

func (m *memLogExporter) find(key, value string) map[string]string {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, r := range m.records {
		if r[key] == value {
			return r
		}
	}
	return nil
}

// accessLines reads the agent's JSON lines.
func accessLines(t *testing.T, path string) []agent.AccessRecord {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []agent.AccessRecord
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var r agent.AccessRecord
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("access log line %q: %v", sc.Text(), err)
		}
		out = append(out, r)
	}
	return out
}

// TestAccessLog: a listener with access_log.enabled makes the agent emit a
// record per request, with the request id, status, load balancer, listener,
// pool, member and tenant, as a JSON line and an OTel log record (tcp
// listeners: per connection); a listener with it disabled emits nothing until
// it is enabled; no record holds an Authorization header, a cookie, a query
// string or a body.
func TestAccessLog(t *testing.T) {
	t.Parallel()
	exp := &memLogExporter{}
	lp := sdklog.NewLoggerProvider(sdklog.WithProcessor(sdklog.NewSimpleProcessor(exp)))
	t.Cleanup(func() { _ = lp.Shutdown(context.Background()) })
	jsonPath := filepath.Join(t.TempDir(), "access.jsonl")
	out, err := os.OpenFile(jsonPath, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { out.Close() })
	s := startStack(t, teststack.Options{AgentConfig: func(c *agent.Config) {
		c.AccessLog = out
		c.LoggerProvider = lp
	}})
	s.StartAgent("access-log-node")
	web := teststack.StartBackend(t, "web")
	echo := startTCPServer(t)
	on := map[string]any{"access_log": map[string]any{"enabled": true}}
	cert := testcerts.New(t, testcerts.Spec{Hosts: []string{"www.example.test"}})
	certID := s.Create("/v1/certificates", map[string]any{"certificate": cert.CertPEM, "private_key": cert.KeyPEM})["id"].(string)
	lb := s.buildLB("access-log",
		poolSpec{Port: 10611, Members: []int{web.Port}, Listener: on},
		poolSpec{Port: 10612, Members: []int{web.Port}},
		poolSpec{Port: 10613, Protocol: "tcp", Members: []int{echo.Port}, Listener: on},
		poolSpec{Port: 10614, Members: []int{web.Port}, Listener: map[string]any{"access_log": on["access_log"], "protocol": "https", "certificate_ids": []string{certID}}})
	logged, quiet, tcp, https := lb.Listeners[0], lb.Listeners[1], lb.Listeners[2], lb.Listeners[3]
	for id, want := range map[string]bool{logged: true, quiet: false, tcp: true} {
		_, l := s.Call("GET", "/v1/listeners/"+id, nil)
		if got, _ := l["access_log"].(map[string]any)["enabled"].(bool); got != want {
			t.Errorf("listener %s: access_log %v, want enabled=%v", id, l["access_log"], want)
		}
	}

	c := teststack.NewClient(nil)
	rid := fmt.Sprintf("req-%d", time.Now().UnixNano())
	secrets := []string{"secret-bearer-token", "secret-cookie-value", "secret-query-value", "secret-body-value"}
	hdr := map[string]string{"X-Request-ID": rid, "Authorization": "Bearer " + secrets[0], "Cookie": "session=" + secrets[1]}
	if code, body, _, err := get(c, lb.url(10611, "/hello?token="+secrets[2]), hdr); err != nil || code != 200 || body != "web" {
		t.Fatalf("GET through the logged listener: %d %q %v", code, body, err)
	}
	res, err := c.Post(lb.url(10611, "/upload"), "text/plain", strings.NewReader(secrets[3]))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	quietID := fmt.Sprintf("quiet-%d", time.Now().UnixNano())
	if code, _, _, err := get(c, lb.url(10612, "/"), map[string]string{"X-Request-ID": quietID}); err != nil || code != 200 {
		t.Fatalf("GET through the quiet listener: %d %v", code, err)
	}
	if reply, err := tcpRoundTrip(lb.addr(10613), "ping"); err != nil || reply != "none|ping" {
		t.Fatalf("tcp round trip: %q %v", reply, err)
	}
	// https over HTTP/2, and a client speaking plain HTTP to it (a failed
	// TLS handshake).
	h2 := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{ForceAttemptHTTP2: true,
		TLSClientConfig: &tls.Config{ServerName: "www.example.test", InsecureSkipVerify: true}}}
	defer h2.CloseIdleConnections()
	ridTLS := rid + "-tls"
	res, err = h2.Do(func() *http.Request {
		req, _ := http.NewRequest("GET", fmt.Sprintf("https://%s/secure", lb.addr(10614)), nil)
		req.Header.Set("X-Request-ID", ridTLS)
		return req
	}())
	if err != nil || res.StatusCode != 200 || res.ProtoMajor != 2 {
		t.Fatalf("GET over https: %v %v", res, err)
	}
	res.Body.Close()
	if code, _, _, err := get(c, lb.url(10614, "/plain"), nil); err == nil && code == 200 {
		t.Fatalf("plain HTTP to the https listener answered %d", code)
	}

	// The records: the request with its id, the POST (an id generated by
	// the load balancer), the tcp connection.
	var byID, post, conn, tlsReq, tlsErr *agent.AccessRecord
	teststack.WaitFor(t, "access log records", 20*time.Second, func() bool {
		byID, post, conn, tlsReq, tlsErr = nil, nil, nil, nil, nil
		recs := accessLines(t, jsonPath)
		for i := range recs {
			r := &recs[i]
			switch {
			case r.RequestID == rid:
				byID = r
			case r.RequestID == ridTLS:
				tlsReq = r
			case r.Method == "POST":
				post = r
			case r.Type == "tcp":
				conn = r
			case r.Type == "error":
				tlsErr = r
			}
		}
		return byID != nil && post != nil && conn != nil && tlsReq != nil && tlsErr != nil && exp.find("fulcrum.request_id", rid) != nil
	})
	want := agent.AccessRecord{Type: "http", Node: "access-log-node", TenantID: s.TenantID, LoadBalancerID: lb.LB, ListenerID: logged,
		PoolID: lb.Pools[0], MemberID: lb.Members[0][0], Method: "GET", Path: "/hello", Status: 200, RequestID: rid, VIP: lb.VIP, Port: 10611,
		ClientIP: "127.0.0.1"}
	got := *byID
	got.Time, got.ClientPort, got.BytesIn, got.BytesOut, got.Host, got.UserAgent = time.Time{}, 0, 0, 0, "", ""
	got.RequestMS, got.QueueMS, got.ConnectMS, got.ResponseMS, got.TotalMS, got.TermState = 0, 0, 0, 0, 0, ""
	if got != want {
		t.Errorf("record of request %s:\n got %+v\nwant %+v", rid, *byID, want)
	}
	if byID.BytesOut <= 0 || byID.BytesIn <= 0 || byID.TotalMS < 0 || byID.ClientPort == 0 || time.Since(byID.Time) > time.Minute {
		t.Errorf("record of request %s: bytes, timings or time missing: %+v", rid, *byID)
	}
	if post.RequestID == "" || post.Status != 200 || post.ListenerID != logged {
		t.Errorf("record of a request without X-Request-ID: %+v", *post)
	}
	if conn.ListenerID != tcp || conn.PoolID != lb.Pools[2] || conn.MemberID != lb.Members[2][0] || conn.LoadBalancerID != lb.LB || conn.BytesIn == 0 {
		t.Errorf("record of the tcp connection: %+v", *conn)
	}
	if tlsReq.ListenerID != https || tlsReq.Status != 200 || tlsReq.Path != "/secure" || tlsReq.MemberID != lb.Members[3][0] {
		t.Errorf("record of the https request: %+v", *tlsReq)
	}
	if tlsErr.ListenerID != https || !strings.Contains(tlsErr.Error, "SSL") || tlsErr.LoadBalancerID != lb.LB {
		t.Errorf("record of the failed TLS handshake: %+v", *tlsErr)
	}
	o := exp.find("fulcrum.request_id", rid)
	for k, v := range map[string]string{"fulcrum.load_balancer_id": lb.LB, "fulcrum.listener_id": logged, "fulcrum.tenant_id": s.TenantID,
		"http.response.status_code": "200", "fulcrum.member_id": lb.Members[0][0]} {
		if o[k] != v {
			t.Errorf("OTel record of %s: %s = %q, want %q (all: %v)", rid, k, o[k], v, o)
		}
	}

	// The quiet listener logged nothing (its request went before the tcp
	// connection, whose record is in).
	for _, r := range accessLines(t, jsonPath) {
		if r.ListenerID == quiet || r.RequestID == quietID {
			t.Errorf("the listener without access log produced %+v", r)
		}
	}
	if r := exp.find("fulcrum.listener_id", quiet); r != nil {
		t.Errorf("the listener without access log produced an OTel record: %v", r)
	}
	// Nothing secret anywhere.
	raw, _ := os.ReadFile(jsonPath)
	exp.mu.Lock()
	otel := fmt.Sprint(exp.records, exp.bodies)
	exp.mu.Unlock()
	for _, sec := range secrets {
		if strings.Contains(string(raw), sec) || strings.Contains(otel, sec) {
			t.Errorf("the access log holds %q", sec)
		}
	}

	// Enabling it on the quiet listener starts its records.
	s.MustCall(200, "PATCH", "/v1/listeners/"+quiet, on)
	s.WaitActive("/v1/listeners/" + quiet)
	quietID2 := quietID + "-on"
	teststack.WaitFor(t, "a record from the listener once enabled", 20*time.Second, func() bool {
		if code, _, _, err := get(c, lb.url(10612, "/"), map[string]string{"X-Request-ID": quietID2}); err != nil || code != 200 {
			return false
		}
		time.Sleep(200 * time.Millisecond)
		for _, r := range accessLines(t, jsonPath) {
			if r.RequestID == quietID2 && r.ListenerID == quiet && r.Status == 200 {
				return true
			}
		}
		return false
	})
	t.Logf("%d access log records, %d OTel log records", len(accessLines(t, jsonPath)), len(exp.records))
}
