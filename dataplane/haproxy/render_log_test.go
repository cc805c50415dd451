package haproxy

import (
	"net/netip"
	"os/exec"
	"strings"
	"testing"
)

// TestRenderAccessLog: only listeners with AccessLog get log lines, http ones
// keep the request's values in variables before any other rule, tcp ones use
// the tcp format, and the result is a config HAProxy accepts.
func TestRenderAccessLog(t *testing.T) {
	g := testGlobal()
	g.AccessLogSocket = "/var/lib/fulcrum-agent/run/access.sock"
	g.ServerStateFile = "" // not there for haproxy -c
	tcpPool := httpPool("pool_t")
	tcpPool.Protocol = "tcp"
	lb := LoadBalancer{ID: "lb_1", TenantID: "tnt_1", VIP: netip.MustParseAddr("127.0.0.1"), Enabled: true,
		Listeners: []Listener{
			{ID: "lsn_http", Protocol: "http", Port: 80, DefaultPoolID: "pool_a", AccessLog: true,
				RateLimit: &RateLimit{Type: "requests", PerSecond: 10}},
			{ID: "lsn_rid", Protocol: "http", Port: 81, DefaultPoolID: "pool_a", AccessLog: true,
				InsertHeaders: InsertHeaders{XRequestID: true}},
			{ID: "lsn_off", Protocol: "http", Port: 82, DefaultPoolID: "pool_a"},
			{ID: "lsn_tcp", Protocol: "tcp", Port: 83, DefaultPoolID: "pool_t", AccessLog: true},
		},
		Pools: []Pool{httpPool("pool_a"), tcpPool}}
	text, err := Render(Config{Global: g, LoadBalancers: []LoadBalancer{lb}})
	if err != nil {
		t.Fatal(err)
	}
	checkRendered(t, text)
	sections := map[string]string{}
	for _, s := range strings.Split(string(text), "\nfrontend ")[1:] {
		name, _, _ := strings.Cut(s, "\n")
		sections[name] = s
	}
	logLine := "    log /var/lib/fulcrum-agent/run/access.sock len 8192 format raw local0 info\n"
	for _, name := range []string{"lsn_http", "lsn_rid", "lsn_tcp"} {
		if !strings.Contains(sections[name], logLine) {
			t.Errorf("frontend %s has no log line:\n%s", name, sections[name])
		}
	}
	if off := sections["lsn_off"]; strings.Contains(off, "log") || strings.Contains(off, "fulcrum_rid") {
		t.Errorf("frontend lsn_off logs although its access log is off:\n%s", off)
	}
	if s := sections["lsn_tcp"]; !strings.Contains(s, `"type":"tcp"`) || strings.Contains(s, "%ST") || strings.Contains(s, "http-request") {
		t.Errorf("frontend lsn_tcp has no tcp log format:\n%s", s)
	}
	for _, want := range []string{`"lb":"lb_1","tenant":"tnt_1","listener":"%f"`, `"request_id":"%[var(txn.fulcrum_rid),json(utf8s)]"`, "unique-id-format "} {
		if !strings.Contains(sections["lsn_http"], want) {
			t.Errorf("frontend lsn_http lacks %q:\n%s", want, sections["lsn_http"])
		}
	}
	if !strings.Contains(sections["lsn_tcp"], `error-log-format '{"v":1,"type":"error"`) {
		t.Errorf("frontend lsn_tcp has no error-log-format:\n%s", sections["lsn_tcp"])
	}
	// The variables are set before the rate limit can deny the request.
	h := sections["lsn_http"]
	if i, j := strings.Index(h, "set-var(txn.fulcrum_rid) req.fhdr(x-request-id)"), strings.Index(h, "track-sc0"); i < 0 || j < 0 || i > j {
		t.Errorf("lsn_http: request id not kept before the other rules:\n%s", h)
	}
	// With X-Request-ID inserted, the record has the id members receive.
	if r := sections["lsn_rid"]; !strings.Contains(r, "set-var(txn.fulcrum_rid) unique-id\n") || strings.Contains(r, "req.fhdr(x-request-id)") {
		t.Errorf("lsn_rid: request id is not the inserted one:\n%s", r)
	}
	if haproxy, err := exec.LookPath("haproxy"); err == nil {
		haproxyCheck(t, haproxy, text)
	}

	// Without a socket (the API's dry runs) nothing is logged.
	text, err = Render(Config{Global: testGlobal(), LoadBalancers: []LoadBalancer{lb}})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(text), "log-format") {
		t.Errorf("access log rendered without a socket:\n%s", text)
	}

	// A tenant id that is not an id is refused, not rendered.
	lb.TenantID = `tnt'","x":"`
	if _, err := Render(Config{Global: g, LoadBalancers: []LoadBalancer{lb}}); err == nil || !strings.Contains(err.Error(), "tenant_id") {
		t.Errorf("bad tenant id: err = %v", err)
	}
}
