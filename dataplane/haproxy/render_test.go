package haproxy

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fulcrumlb/fulcrum/internal/testcerts"
	"github.com/fulcrumlb/fulcrum/internal/testenv"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/render")

// Fixed certificate paths used in golden models; the haproxy -c check
// replaces them with generated files.
const (
	certA = "/etc/fulcrum/certs/cert_a.pem"
	certB = "/etc/fulcrum/certs/cert_b.pem"
)

func testGlobal() Global {
	return Global{
		MaxConn:         4000,
		StatsSocket:     "/run/fulcrum/haproxy.sock",
		ServerStateFile: "/var/lib/fulcrum/server-state",
		HardStopAfter:   30 * time.Second,
		PrometheusBind:  netip.MustParseAddrPort("127.0.0.1:8405"),
	}
}

func member(id, addr string, port, weight int) Member {
	return Member{ID: id, Address: addr, Port: port, Weight: weight, Enabled: true}
}

func httpPool(id string) Pool {
	return Pool{ID: id, Protocol: "http", Algorithm: "round_robin", Retries: 3, Persistence: Persistence{Type: "none"},
		ProxyProtocol: "none", Members: []Member{member("mbr_"+strings.TrimPrefix(id, "pool_")+"_1", "10.0.1.1", 8080, 1)}}
}

func prefixes(ss ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParsePrefix(s)
	}
	return out
}

// goldenCases are the representative models with a golden file each.
func goldenCases() []struct {
	name string
	cfg  Config
} {
	vip := netip.MustParseAddr("127.77.0.10")

	// Many allowed sources, to show an acl split over several lines.
	var allowed []netip.Prefix
	for i := range 20 {
		allowed = append(allowed, netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i), 0, 0}), 16))
	}
	allowed = append(allowed, netip.MustParsePrefix("2001:db8::/32"))

	algorithms := []string{"round_robin", "static_round_robin", "least_connections", "source_ip", "uri", "url_param", "header", "random", "first"}
	var algoPools []Pool
	for _, a := range algorithms {
		p := httpPool("pool_" + a)
		p.Algorithm = a
		switch a {
		case "url_param":
			p.HashKey = "session_id"
		case "header":
			p.HashKey = "X-Tenant"
		}
		algoPools = append(algoPools, p)
	}

	persistence := []Persistence{
		{Type: "none"},
		{Type: "source_ip"},
		{Type: "source_ip", CookieTTLSeconds: 600},
		{Type: "cookie_insert", CookieName: "SRV"},
		{Type: "cookie_insert", CookieName: "SRVID", CookieTTLSeconds: 3600},
		{Type: "cookie_rewrite", CookieName: "JSESSIONID"},
		{Type: "cookie_prefix", CookieName: "PHPSESSID"},
		{Type: "app_cookie", CookieName: "session", CookieTTLSeconds: 7200},
	}
	var perPools []Pool
	for i, per := range persistence {
		p := httpPool("pool_p" + string(rune('a'+i)) + "_" + per.Type)
		p.Persistence = per
		p.Members = append(p.Members, member(p.Members[0].ID[:len(p.Members[0].ID)-1]+"2", "10.0.1.2", 8080, 1))
		perPools = append(perPools, p)
	}

	ruleTargets := []Pool{httpPool("pool_api"), httpPool("pool_canary"), httpPool("pool_stable"), httpPool("pool_web")}

	return []struct {
		name string
		cfg  Config
	}{
		{"empty", Config{}},
		{"tcp_basic", Config{Global: testGlobal(), LoadBalancers: []LoadBalancer{{
			ID: "lb_tcp", VIP: vip, Enabled: true,
			Listeners: []Listener{{
				ID: "lsn_tcp", Protocol: "tcp", Port: 5432, DefaultPoolID: "pool_db", ConnectionLimit: 500,
				RateLimit:    &RateLimit{Type: "connections", PerSecond: 20},
				AllowedCIDRs: prefixes("10.0.0.0/8", "192.168.0.0/16"),
				DeniedCIDRs:  prefixes("10.66.0.0/16"),
				Timeouts:     Timeouts{ClientMS: 3600000, HTTPRequestMS: 5000},
			}},
			Pools: []Pool{{
				ID: "pool_db", Protocol: "tcp", Algorithm: "least_connections", Retries: 2, Redispatch: true,
				Persistence:   Persistence{Type: "none"},
				Monitor:       &Monitor{Type: "tcp", IntervalMS: 5000, TimeoutMS: 3000, Rise: 2, Fall: 3},
				ProxyProtocol: "v2", ConnectTimeoutMS: 2000, ServerTimeoutMS: 3600000,
				Members: []Member{
					member("mbr_db1", "10.0.2.1", 5432, 10),
					member("mbr_db2", "10.0.2.2", 5432, 10),
				},
			}},
		}}}},
		{"http_listener", Config{Global: testGlobal(), LoadBalancers: []LoadBalancer{{
			ID: "lb_http", VIP: vip, Enabled: true,
			Listeners: []Listener{{
				ID: "lsn_http", Protocol: "http", Port: 80, DefaultPoolID: "pool_web", ConnectionLimit: 10000,
				RateLimit:    &RateLimit{Type: "requests", PerSecond: 100},
				AllowedCIDRs: allowed,
				DeniedCIDRs:  prefixes("10.1.2.3/32", "10.4.0.0/16"),
				Timeouts: Timeouts{ClientMS: 30000, ConnectMS: 4000, ServerMS: 30000,
					HTTPRequestMS: 5000, HTTPKeepAliveMS: 2000, TunnelMS: 3600000},
				InsertHeaders:       InsertHeaders{XForwardedFor: true, XForwardedProto: true, XForwardedPort: true, XRequestID: true},
				RedirectHTTPToHTTPS: true,
				Compression:         true,
			}},
			Pools: []Pool{func() Pool {
				p := httpPool("pool_web")
				p.ConnectTimeoutMS, p.ServerTimeoutMS, p.TunnelTimeoutMS = 4000, 30000, 3600000
				return p
			}()},
		}}}},
		{"https_hsts", Config{Global: testGlobal(), LoadBalancers: []LoadBalancer{{
			ID: "lb_https", VIP: vip, Enabled: true,
			Listeners: []Listener{
				{ID: "lsn_https", Protocol: "https", Port: 443, DefaultPoolID: "pool_web",
					CertFiles:     []string{certA, certB},
					HSTS:          &HSTS{MaxAgeSeconds: 31536000, IncludeSubdomains: true, Preload: true},
					InsertHeaders: InsertHeaders{XForwardedFor: true, XForwardedProto: true}},
				{ID: "lsn_https_alt", Protocol: "https", Port: 8443, DefaultPoolID: "pool_web",
					CertFiles: []string{certB},
					HSTS:      &HSTS{MaxAgeSeconds: 600}},
			},
			Pools: []Pool{httpPool("pool_web")},
		}}}},
		{"algorithms", Config{Global: testGlobal(), LoadBalancers: []LoadBalancer{{
			ID: "lb_algo", VIP: vip, Enabled: true,
			Listeners: []Listener{{ID: "lsn_algo", Protocol: "http", Port: 80, DefaultPoolID: "pool_round_robin"}},
			Pools:     algoPools,
		}}}},
		{"persistence", Config{Global: testGlobal(), LoadBalancers: []LoadBalancer{{
			ID: "lb_persist", VIP: vip, Enabled: true,
			Listeners: []Listener{{ID: "lsn_persist", Protocol: "http", Port: 80, DefaultPoolID: perPools[0].ID}},
			Pools:     perPools,
		}}}},
		{"monitors", Config{Global: testGlobal(), LoadBalancers: []LoadBalancer{{
			ID: "lb_mon", VIP: vip, Enabled: true,
			Listeners: []Listener{{ID: "lsn_mon", Protocol: "http", Port: 80, DefaultPoolID: "pool_http_check"}},
			Pools: []Pool{
				{ID: "pool_http_check", Protocol: "http", Algorithm: "round_robin", Retries: 3,
					Monitor: &Monitor{Type: "http", IntervalMS: 2000, TimeoutMS: 1000, Rise: 2, Fall: 3,
						Method: "GET", Path: "/healthz?full=1", Host: "app.example.com", Expect: "200,204,301-302"},
					ProxyProtocol: "v1",
					Members: []Member{
						member("mbr_a", "10.0.3.1", 8080, 1),
						{ID: "mbr_b", Address: "10.0.3.2", Port: 8080, Weight: 0, Enabled: true},
						{ID: "mbr_c", Address: "10.0.3.3", Port: 8080, Weight: 5, Backup: true, MaxConnections: 100, Enabled: true},
						{ID: "mbr_d", Address: "10.0.3.4", Port: 8080, Weight: 1, Enabled: false},
						member("mbr_e", "app-backend.example.internal", 8080, 2),
						member("mbr_f", "2001:db8::10", 8080, 1),
					}},
				{ID: "pool_https_check", Protocol: "http", Algorithm: "round_robin", Retries: 1, TLSToMembers: true,
					Monitor: &Monitor{Type: "https", IntervalMS: 10000, TimeoutMS: 5000, Rise: 1, Fall: 1,
						Method: "HEAD", Path: "/", Expect: "200-399"},
					Members: []Member{member("mbr_tls", "10.0.4.1", 8443, 1)}},
				{ID: "pool_empty", Protocol: "http", Algorithm: "least_connections", Retries: 3,
					Monitor: &Monitor{Type: "http", IntervalMS: 5000, TimeoutMS: 3000, Rise: 2, Fall: 3, Method: "GET", Path: "/", Expect: "200"}},
			},
		}}}},
		{"rules", Config{Global: testGlobal(), LoadBalancers: []LoadBalancer{{
			ID: "lb_rules", VIP: vip, Enabled: true,
			Listeners: []Listener{{
				ID: "lsn_rules", Protocol: "http", Port: 80, DefaultPoolID: "pool_web",
				Rules: []Rule{
					{ID: "rule_deny", Priority: 1, Conditions: []Condition{
						{Field: "source_ip", Match: "exact", Values: []string{"192.0.2.0/24", "198.51.100.7"}},
						{Field: "path", Match: "prefix", Values: []string{"/admin"}},
					}, Action: Action{Type: "deny"}},
					{ID: "rule_api", Priority: 10, Conditions: []Condition{
						{Field: "host", Match: "exact", Values: []string{"api.example.com", "*.api.example.com"}},
						{Field: "method", Match: "exact", Values: []string{"GET", "POST"}},
					}, Action: Action{Type: "forward", Pools: []WeightedPool{{PoolID: "pool_api", Weight: 1}}}},
					{ID: "rule_canary", Priority: 20, Conditions: []Condition{
						{Field: "path", Match: "regex", Values: []string{`^/app/(v1|v2)/[a-z]+$`}},
						{Field: "cookie", Match: "exact", Key: "beta", Values: []string{"off"}, Invert: true},
					}, Action: Action{Type: "forward", Pools: []WeightedPool{
						{PoolID: "pool_stable", Weight: 90}, {PoolID: "pool_canary", Weight: 10}, {PoolID: "pool_web", Weight: 0},
					}}},
					{ID: "rule_old", Priority: 30, Conditions: []Condition{
						{Field: "path", Match: "exact", Values: []string{"/old"}},
					}, Action: Action{Type: "redirect", RedirectURL: "https://www.example.com/new?from=old%20page", RedirectCode: 301}},
					{ID: "rule_move", Priority: 40, Conditions: []Condition{
						{Field: "host", Match: "suffix", Values: []string{".example.org"}},
					}, Action: Action{Type: "redirect", RedirectPrefix: "https://example.com", RedirectCode: 308}},
					{ID: "rule_tls", Priority: 50, Conditions: []Condition{
						{Field: "header", Match: "exact", Key: "X-Forwarded-Proto", Values: []string{"http"}},
					}, Action: Action{Type: "redirect", RedirectScheme: "https"}},
					{ID: "rule_port", Priority: 60, Conditions: []Condition{
						{Field: "query", Match: "contains", Key: "debug", Values: []string{"1"}},
					}, Action: Action{Type: "redirect", RedirectHost: "debug.example.com", RedirectPort: 8443, RedirectScheme: "https", RedirectCode: 307}},
					{ID: "rule_port_only", Priority: 61, Conditions: []Condition{
						{Field: "query", Match: "exact", Key: "alt", Values: []string{"yes"}},
					}, Action: Action{Type: "redirect", RedirectPort: 8080, RedirectCode: 302}},
					{ID: "rule_teapot", Priority: 70, Conditions: []Condition{
						{Field: "header", Match: "regex", Key: "User-Agent's", Values: []string{`(?i)curl/[0-9.]+ "quoted" $HOME #x`}},
					}, Action: Action{Type: "fixed_response", StatusCode: 418, ContentType: "application/json; charset=utf-8",
						Body: "{\"msg\": \"I'm a teapot\", \"cost\": \"$5 # 100%\",\n \"path\": \"C:\\\\tmp\"}\n"}},
					{ID: "rule_empty", Priority: 80, Conditions: []Condition{
						{Field: "path", Match: "suffix", Values: []string{".bak", "~"}},
					}, Action: Action{Type: "fixed_response", StatusCode: 204}},
					{ID: "rule_all", Priority: 90, Action: Action{Type: "deny"}},
				},
			}},
			Pools: ruleTargets,
		}}}},
		{"ipv6_vip", Config{Global: testGlobal(), LoadBalancers: []LoadBalancer{{
			ID: "lb_v6", VIP: netip.MustParseAddr("fd00:77::10"), Enabled: true,
			Listeners: []Listener{
				{ID: "lsn_v6_http", Protocol: "http", Port: 80, DefaultPoolID: "pool_v6",
					RateLimit: &RateLimit{Type: "requests", PerSecond: 50}, AllowedCIDRs: prefixes("fd00::/8")},
				{ID: "lsn_v6_tcp", Protocol: "tcp", Port: 9000, DefaultPoolID: "pool_v6_tcp"},
			},
			Pools: []Pool{
				{ID: "pool_v6", Protocol: "http", Algorithm: "source_ip", Persistence: Persistence{Type: "source_ip"},
					Members: []Member{member("mbr_v6a", "fd00:1::1", 80, 1), member("mbr_v6b", "10.0.5.1", 80, 1)}},
				{ID: "pool_v6_tcp", Protocol: "tcp", Algorithm: "round_robin",
					Members: []Member{member("mbr_v6c", "fd00:1::2", 9000, 1)}},
			},
		}}}},
		{"disabled_lb", Config{Global: testGlobal(), LoadBalancers: []LoadBalancer{
			{ID: "lb_off", VIP: vip, Enabled: false,
				Listeners: []Listener{{ID: "lsn_off", Protocol: "http", Port: 80, DefaultPoolID: "pool_off"}},
				Pools:     []Pool{httpPool("pool_off")}},
			{ID: "lb_on", VIP: netip.MustParseAddr("127.77.0.11"), Enabled: true,
				Listeners: []Listener{{ID: "lsn_on", Protocol: "http", Port: 80, DefaultPoolID: "pool_on"}},
				Pools:     []Pool{httpPool("pool_on")}},
		}}},
	}
}

// goldenCase returns the model of the named golden case.
func goldenCase(name string) Config {
	for _, tc := range goldenCases() {
		if tc.name == name {
			return tc.cfg
		}
	}
	panic("no golden case " + name)
}

func TestRenderGolden(t *testing.T) {
	haproxy, _ := testenv.Find("haproxy")
	var certDir string
	if haproxy != "" {
		certDir = writeTestCerts(t)
	}
	for _, tc := range goldenCases() {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Render(tc.cfg)
			if err != nil {
				t.Fatalf("Render: %v", err)
			}
			again, _ := Render(tc.cfg)
			if !bytes.Equal(got, again) {
				t.Fatal("Render is not deterministic")
			}
			checkRendered(t, got)
			golden := filepath.Join("testdata", "render", tc.name+".cfg")
			if *update {
				if err := os.MkdirAll(filepath.Dir(golden), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("Render differs from %s (run with -update to accept):\n%s", golden, lineDiff(string(want), string(got)))
			}

			if haproxy == "" {
				testenv.RequireHAProxy(t) // the golden file matched; haproxy -c cannot run
			}
			cfg := withCertDir(tc.cfg, certDir)
			if cfg.Global.ServerStateFile != "" {
				// HAProxy warns when the state file does not exist yet.
				cfg.Global.ServerStateFile = filepath.Join(certDir, "server-state")
				if err := os.WriteFile(cfg.Global.ServerStateFile, []byte("1\n"), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			text, err := Render(cfg)
			if err != nil {
				t.Fatalf("Render with real cert paths: %v", err)
			}
			haproxyCheck(t, haproxy, text)
		})
	}
}

// withCertDir returns c with the golden certificate paths moved to dir.
func withCertDir(c Config, dir string) Config {
	lbs := make([]LoadBalancer, len(c.LoadBalancers))
	for i, lb := range c.LoadBalancers {
		lb.Listeners = append([]Listener(nil), lb.Listeners...)
		for j := range lb.Listeners {
			files := make([]string, len(lb.Listeners[j].CertFiles))
			for k, f := range lb.Listeners[j].CertFiles {
				files[k] = filepath.Join(dir, filepath.Base(f))
			}
			lb.Listeners[j].CertFiles = files
		}
		lbs[i] = lb
	}
	c.LoadBalancers = lbs
	return c
}

// haproxyCheck runs haproxy -c on text and fails on any alert or warning.
func haproxyCheck(t *testing.T, haproxy string, text []byte) {
	t.Helper()
	f := filepath.Join(t.TempDir(), "haproxy.cfg")
	if err := os.WriteFile(f, text, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(haproxy, "-c", "-f", f).CombinedOutput()
	var exit *exec.ExitError
	if errors.As(err, &exit) && exit.ExitCode() == 2 && bytes.Contains(out, []byte("has no error but will not start (no listener)")) {
		err = nil // a config without any frontend is valid
	}
	if err != nil {
		t.Fatalf("haproxy -c: %v\n%s\nconfig:\n%s", err, out, numbered(text))
	}
	// Members named by DNS names that do not resolve here start disabled
	// (init-addr none), with a warning; any other warning is a failure.
	problems := regexp.MustCompile(`(?m)^\[(WARNING|ALERT)\].*$`).FindAll(out, -1)
	problems = slices.DeleteFunc(problems, func(p []byte) bool { return bytes.Contains(p, []byte("could not resolve address")) })
	if len(problems) > 0 {
		t.Fatalf("haproxy -c reported problems:\n%s\nconfig:\n%s", out, numbered(text))
	}
}

func numbered(text []byte) string {
	var b strings.Builder
	for i, l := range strings.Split(string(text), "\n") {
		b.WriteString(strings.Repeat(" ", 4-len(itoa(i+1))) + itoa(i+1) + "  " + l + "\n")
	}
	return b.String()
}

func itoa(i int) string { return big.NewInt(int64(i)).String() }

// lineDiff shows the first differing lines of want and got.
func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	for i := 0; i < max(len(w), len(g)); i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			return "line " + itoa(i+1) + ":\n- " + wl + "\n+ " + gl
		}
	}
	return "(no line differs)"
}

// checkRendered checks properties every rendered config has.
func checkRendered(t *testing.T, text []byte) {
	t.Helper()
	if len(text) == 0 || text[len(text)-1] != '\n' {
		t.Fatal("output does not end with a newline")
	}
	for i, c := range text {
		if (c < 0x20 && c != '\n') || c == 0x7f {
			t.Fatalf("output has control byte %#x at offset %d", c, i)
		}
	}
	for n, line := range strings.Split(strings.TrimSuffix(string(text), "\n"), "\n") {
		if _, err := splitConfigLine(line); err != nil {
			t.Fatalf("line %d %q: %v", n+1, line, err)
		}
	}
}

// writeTestCerts writes self-signed PEM bundles (certificate and key) named
// like the golden certificate paths into a temporary directory.
func writeTestCerts(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, name := range []string{certA, certB} {
		certPEM, keyPEM := testcerts.SelfSigned(t, filepath.Base(name)+".example.com")
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(name)), []byte(certPEM+keyPEM), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestRenderLoadBalancer(t *testing.T) {
	rules := goldenCase("rules")
	full, err := Render(rules)
	if err != nil {
		t.Fatal(err)
	}
	one, err := RenderLoadBalancer(rules.Global, rules.LoadBalancers[0])
	if err != nil {
		t.Fatal(err)
	}
	// The same config without the Prometheus frontend.
	withoutProm := rules
	withoutProm.Global.PrometheusBind = netip.AddrPort{}
	want, _ := Render(withoutProm)
	if !bytes.Equal(one, want) {
		t.Errorf("RenderLoadBalancer differs from Render of that LB alone:\n%s", lineDiff(string(want), string(one)))
	}
	if bytes.Equal(one, full) || !bytes.Contains(full, []byte("frontend prometheus")) || bytes.Contains(one, []byte("frontend prometheus")) {
		t.Error("the Prometheus frontend must be in Render only")
	}
	off := rules.LoadBalancers[0]
	off.Enabled = false
	text, err := RenderLoadBalancer(rules.Global, off)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(text, []byte("frontend")) || bytes.Contains(text, []byte("backend")) {
		t.Errorf("a disabled LB rendered sections:\n%s", text)
	}
}

// TestRenderSorted checks that the order of the model's slices does not
// matter.
func TestRenderSorted(t *testing.T) {
	for _, tc := range goldenCases() {
		want, err := Render(tc.cfg)
		if err != nil {
			t.Fatal(err)
		}
		c := tc.cfg
		c.LoadBalancers = reversed(c.LoadBalancers)
		for i := range c.LoadBalancers {
			lb := &c.LoadBalancers[i]
			lb.Listeners = reversed(lb.Listeners)
			lb.Pools = reversed(lb.Pools)
			for j := range lb.Pools {
				lb.Pools[j].Members = reversed(lb.Pools[j].Members)
			}
			for j := range lb.Listeners {
				lb.Listeners[j].Rules = reversed(lb.Listeners[j].Rules)
			}
		}
		got, err := Render(c)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s: order of the model changed the output:\n%s", tc.name, lineDiff(string(want), string(got)))
		}
	}
}

func reversed[T any](s []T) []T {
	out := make([]T, len(s))
	for i, v := range s {
		out[len(s)-1-i] = v
	}
	return out
}

func TestRenderErrors(t *testing.T) {
	base := func() Config { return goldenCase("rules") }
	lsn := func(c *Config) *Listener { return &c.LoadBalancers[0].Listeners[0] }
	pool := func(c *Config) *Pool { return &c.LoadBalancers[0].Pools[0] }
	cases := []struct {
		name string
		edit func(c *Config)
		want string
	}{
		{"newline in header value", func(c *Config) { lsn(c).Rules[1].Conditions[0].Values[0] = "a\nb" }, "control character"},
		{"CR in path", func(c *Config) { lsn(c).Rules[0].Conditions[1].Values[0] = "/a\rb" }, "control character"},
		{"NUL in body", func(c *Config) { lsn(c).Rules[8].Action.Body = "a\x00b" }, "NUL"},
		{"body too large", func(c *Config) { lsn(c).Rules[8].Action.Body = strings.Repeat("x", MaxFixedResponseBody+1) }, "at most"},
		{"empty value", func(c *Config) { lsn(c).Rules[2].Conditions[0].Values[0] = "" }, "empty"},
		{"bad header name", func(c *Config) { lsn(c).Rules[5].Conditions[0].Key = "X-A(b)" }, "not a token"},
		{"bad cookie name", func(c *Config) { lsn(c).Rules[2].Conditions[1].Key = "a b" }, "not a token"},
		{"bad id", func(c *Config) { lsn(c).ID = "lsn x" }, "only letters"},
		{"bad member address", func(c *Config) { pool(c).Members[0].Address = "unix@/tmp/x" }, "hostname"},
		{"bad source ip", func(c *Config) { lsn(c).Rules[0].Conditions[0].Values[0] = "10.0.0.0/33" }, "CIDR"},
		{"unknown pool", func(c *Config) { lsn(c).DefaultPoolID = "pool_nope" }, "not a pool"},
		{"bad status list", func(c *Config) {
			pool(c).Monitor = &Monitor{Type: "http", Expect: "200,2O4"}
		}, "status code"},
		{"bad redirect code", func(c *Config) { lsn(c).Rules[3].Action.RedirectCode = 300 }, "redirect code"},
		{"space in redirect", func(c *Config) { lsn(c).Rules[3].Action.RedirectURL = "https://a/b c" }, "spaces"},
		{"unknown field", func(c *Config) { lsn(c).Rules[0].Conditions[0].Field = "body" }, "unknown field"},
		{"https without cert", func(c *Config) { lsn(c).Protocol = "https" }, "certificate"},
		{"duplicate listener id", func(c *Config) {
			l := *lsn(c)
			l.Port = 81
			c.LoadBalancers[0].Listeners = append(c.LoadBalancers[0].Listeners, l)
		}, "also used"},
		{"duplicate bind", func(c *Config) {
			l := *lsn(c)
			l.ID = "lsn_other"
			c.LoadBalancers[0].Listeners = append(c.LoadBalancers[0].Listeners, l)
		}, "binds"},
		{"invalid VIP", func(c *Config) { c.LoadBalancers[0].VIP = netip.Addr{} }, "address is not set"},
		{"stats socket with newline", func(c *Config) { c.Global.StatsSocket = "/run/x\nuser root" }, "control character"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := base()
			// Deep enough copies of what the edits touch.
			c.LoadBalancers = append([]LoadBalancer(nil), c.LoadBalancers...)
			c.LoadBalancers[0].Listeners = append([]Listener(nil), c.LoadBalancers[0].Listeners...)
			tc.edit(&c)
			_, err := Render(c)
			if err == nil {
				t.Fatal("Render succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not mention %q", err, tc.want)
			}
		})
	}
}

func TestQuoteWord(t *testing.T) {
	cases := []struct{ in, want string }{
		{"pool_1", "pool_1"},
		{"/etc/fulcrum/a.pem", "/etc/fulcrum/a.pem"},
		{"a b", `"a b"`},
		{`a"b`, `"a\"b"`},
		{`a\b`, `"a\\b"`},
		{"$HOME", `"\$HOME"`},
		{"${HOME}", `"\${HOME}"`},
		{"a#b", `"a#b"`},
		{"it's", `"it's"`},
		{"héllo", `"héllo"`},
		{"-f", "-f"},
	}
	for _, c := range cases {
		got, err := quoteWord(c.in)
		if err != nil || got != c.want {
			t.Errorf("quoteWord(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
		words, err := splitConfigLine("x " + got)
		if err != nil || len(words) != 2 || words[1] != c.in {
			t.Errorf("quoteWord(%q) = %q reads back as %q, %v", c.in, got, words, err)
		}
	}
	for _, bad := range []string{"", "a\nb", "a\rb", "a\x00b", "a\tb", "a\x7fb", "a\u0085b", "a\u2028b", "\xff"} {
		if got, err := quoteWord(bad); err == nil {
			t.Errorf("quoteWord(%q) = %q, want an error", bad, got)
		}
	}
}

func TestQuoteBody(t *testing.T) {
	in := "line1\nline2\r\n\ttab \"q\" $HOME ${X} \\ # ' % \x01\x7f \u0085 é \xff end"
	got, err := quoteBody(in)
	if err != nil {
		t.Fatal(err)
	}
	want := `"line1\nline2\r\n\ttab \"q\" \$HOME \${X} \\ # ' % \x01\x7f \xc2\x85 é \xff end"`
	if got != want {
		t.Errorf("quoteBody = %s\nwant          %s", got, want)
	}
	words, err := splitConfigLine("string " + got)
	if err != nil || len(words) != 2 || words[1] != in {
		t.Errorf("reads back as %q, %v", words, err)
	}
}

func TestFetchWithArg(t *testing.T) {
	cases := []struct{ key, want string }{
		{"X-Tenant", "req.hdr(X-Tenant)"},
		{"User-Agent's", `"req.hdr(\"User-Agent's\")"`},
		{"a$b#c", `"req.hdr(\"a\$b#c\")"`},
	}
	for _, c := range cases {
		got, err := fetchWithArg("req.hdr", c.key)
		if err != nil || got != c.want {
			t.Errorf("fetchWithArg(%q) = %q, %v; want %q", c.key, got, err, c.want)
		}
	}
}

// TestRenderLogFormatEscaping checks that '%' in values used as log-format
// strings is doubled.
func TestRenderLogFormatEscaping(t *testing.T) {
	text, err := Render(goldenCase("rules"))
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`redirect location https://www.example.com/new\?from=old%%20page code 301`).Match(text) {
		t.Errorf("redirect location not escaped for log-format:\n%s", text)
	}
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// testBackend is an HTTP server that names itself in X-Backend, echoes the
// request headers it received as JSON and answers /health with status.
func testBackend(t *testing.T, name string, health int) Member {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/health" {
			w.WriteHeader(health)
			return
		}
		w.Header().Set("X-Backend", name)
		_ = json.NewEncoder(w).Encode(r.Header)
	}))
	t.Cleanup(srv.Close)
	addr := srv.Listener.Addr().(*net.TCPAddr)
	return Member{ID: "mbr_" + name, Address: addr.IP.String(), Port: addr.Port, Weight: 1, Enabled: true}
}

// TestRenderLive runs HAProxy on a rendered config and checks with real
// requests that escaped values arrive intact and rules behave as modelled.
func TestRenderLive(t *testing.T) {
	haproxy := testenv.RequireHAProxy(t)
	if testing.Short() {
		t.Skip("short mode")
	}
	dir := writeTestCerts(t)
	port, tlsPort := freePort(t), freePort(t)
	pool := func(id string, members ...Member) Pool {
		return Pool{ID: id, Protocol: "http", Algorithm: "round_robin", Members: members}
	}
	a, b, c := testBackend(t, "a", 200), testBackend(t, "b", 200), testBackend(t, "c", 204)
	monOK := pool("pool_mon_ok", c)
	monOK.Monitor = &Monitor{Type: "http", IntervalMS: 100, TimeoutMS: 100, Rise: 1, Fall: 1, Method: "GET", Path: "/health", Expect: "200,204"}
	monBad := pool("pool_mon_bad", c)
	monBad.Monitor = &Monitor{Type: "http", IntervalMS: 100, TimeoutMS: 100, Rise: 1, Fall: 1, Method: "GET", Path: "/health", Expect: "200,201,300-399"}

	cookiePool := pool("pool_cookie", c)
	cookiePool.Persistence = Persistence{Type: "cookie_insert", CookieName: "SRV'$#x", CookieTTLSeconds: 60}

	const (
		oddHeader = "X-Odd'$#`|~Name"
		oddValue  = `a"b$c\d#e'f g {x} %[src] ${HOME}`
		oddBody   = "line1\nline2\r\n\ttab \"q\" $HOME ${X} \\ # ' %[src] %% \x01\x7f é \u0085 end\n"
		oddURL    = "https://example.com/x?a=%20b&c='d'&e=$HOME#frag"
	)
	cfg := Config{
		Global: Global{StatsSocket: filepath.Join(dir, "stats.sock")},
		LoadBalancers: []LoadBalancer{{
			ID: "lb_live", VIP: netip.MustParseAddr("127.0.0.1"), Enabled: true,
			Listeners: []Listener{{
				ID: "lsn_live", Protocol: "http", Port: port, DefaultPoolID: "pool_a",
				InsertHeaders: InsertHeaders{XForwardedFor: true, XForwardedProto: true, XForwardedPort: true, XRequestID: true},
				Rules: []Rule{
					{ID: "rule_denyfirst", Priority: 1, Conditions: []Condition{{Field: "path", Match: "exact", Values: []string{"/denyfirst"}}},
						Action: Action{Type: "deny"}},
					{ID: "rule_fwdfirst", Priority: 2, Conditions: []Condition{{Field: "path", Match: "prefix", Values: []string{"/denyfirst", "/both"}}},
						Action: Action{Type: "forward", Pools: []WeightedPool{{PoolID: "pool_b", Weight: 1}}}},
					{ID: "rule_both_deny", Priority: 3, Conditions: []Condition{{Field: "path", Match: "exact", Values: []string{"/both"}}},
						Action: Action{Type: "deny"}},
					{ID: "rule_odd", Priority: 4, Conditions: []Condition{{Field: "header", Match: "exact", Key: oddHeader, Values: []string{oddValue}}},
						Action: Action{Type: "fixed_response", StatusCode: 418, ContentType: "text/plain; charset=utf-8", Body: oddBody}},
					{ID: "rule_url", Priority: 5, Conditions: []Condition{{Field: "path", Match: "exact", Values: []string{"/url"}}},
						Action: Action{Type: "redirect", RedirectURL: oddURL, RedirectCode: 308}},
					{ID: "rule_port", Priority: 6, Conditions: []Condition{{Field: "path", Match: "exact", Values: []string{"/port"}}},
						Action: Action{Type: "redirect", RedirectPort: 8443}},
					{ID: "rule_host", Priority: 7, Conditions: []Condition{
						{Field: "host", Match: "exact", Values: []string{"*.example.com"}},
						{Field: "query", Match: "regex", Key: "id", Values: []string{`^[0-9]+$`}},
						{Field: "method", Match: "exact", Values: []string{"GET"}},
					}, Action: Action{Type: "forward", Pools: []WeightedPool{{PoolID: "pool_c", Weight: 1}}}},
					{ID: "rule_weighted", Priority: 8, Conditions: []Condition{{Field: "path", Match: "prefix", Values: []string{"/weighted"}}},
						Action: Action{Type: "forward", Pools: []WeightedPool{{PoolID: "pool_a", Weight: 1}, {PoolID: "pool_b", Weight: 1}, {PoolID: "pool_c", Weight: 0}}}},
					{ID: "rule_cookie", Priority: 10, Conditions: []Condition{{Field: "path", Match: "exact", Values: []string{"/cookie"}}},
						Action: Action{Type: "forward", Pools: []WeightedPool{{PoolID: "pool_cookie", Weight: 1}}}},
					{ID: "rule_empty", Priority: 9, Conditions: []Condition{{Field: "cookie", Match: "exact", Key: "gone", Values: []string{"1"}, Invert: true},
						{Field: "path", Match: "exact", Values: []string{"/empty"}}},
						Action: Action{Type: "fixed_response", StatusCode: 503}},
				},
			}},
			Pools: []Pool{pool("pool_a", a), pool("pool_b", b), pool("pool_c", c), monOK, monBad, cookiePool},
		}},
	}
	cfg.LoadBalancers[0].Listeners = append(cfg.LoadBalancers[0].Listeners, Listener{
		ID: "lsn_tls", Protocol: "https", Port: tlsPort, DefaultPoolID: "pool_b",
		CertFiles:     []string{filepath.Join(dir, filepath.Base(certA)), filepath.Join(dir, filepath.Base(certB))},
		HSTS:          &HSTS{MaxAgeSeconds: 31536000, IncludeSubdomains: true, Preload: true},
		InsertHeaders: InsertHeaders{XForwardedProto: true},
	})
	text, err := Render(cfg)
	if err != nil {
		t.Fatal(err)
	}
	haproxyCheck(t, haproxy, text)
	cfgFile := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(cfgFile, text, 0o600); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	cmd := exec.Command(haproxy, "-db", "-f", cfgFile)
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("haproxy output:\n%s\nconfig:\n%s", logs.String(), numbered(text))
		}
	})
	base := "http://127.0.0.1:" + itoa(port)
	client := &http.Client{Timeout: 5 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	do := func(method, path string, hdr map[string]string) (*http.Response, []byte) {
		t.Helper()
		req, err := http.NewRequest(method, base+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range hdr {
			if k == "Host" {
				req.Host = v
			} else {
				req.Header[k] = []string{v}
			}
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp, body
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		conn, err := net.Dial("tcp", "127.0.0.1:"+itoa(port))
		if err == nil {
			conn.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("haproxy did not start listening: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}

	backendOf := func(path string, hdr map[string]string) string {
		t.Helper()
		resp, body := do("GET", path, hdr)
		if resp.StatusCode != 200 {
			t.Fatalf("GET %s: status %d: %s", path, resp.StatusCode, body)
		}
		return resp.Header.Get("X-Backend")
	}

	// Default backend and inserted headers.
	resp, body := do("GET", "/", nil)
	if resp.StatusCode != 200 || resp.Header.Get("X-Backend") != "a" {
		t.Fatalf("GET /: %d from %q", resp.StatusCode, resp.Header.Get("X-Backend"))
	}
	var seen http.Header
	if err := json.Unmarshal(body, &seen); err != nil {
		t.Fatal(err)
	}
	if seen.Get("X-Forwarded-For") != "127.0.0.1" || seen.Get("X-Forwarded-Proto") != "http" ||
		seen.Get("X-Forwarded-Port") != itoa(port) || seen.Get("X-Request-Id") == "" {
		t.Errorf("inserted headers: %v", seen)
	}

	// Priorities: a deny before a forward wins, a forward before a deny wins.
	if resp, _ := do("GET", "/denyfirst", nil); resp.StatusCode != 403 {
		t.Errorf("GET /denyfirst: %d, want 403", resp.StatusCode)
	}
	if got := backendOf("/both", nil); got != "b" {
		t.Errorf("GET /both went to %q, want b (forward has priority over a later deny)", got)
	}

	// Header name and value with characters special to HAProxy, fixed
	// response body returned byte for byte.
	resp, body = do("GET", "/x", map[string]string{oddHeader: oddValue})
	if resp.StatusCode != 418 || string(body) != oddBody || resp.Header.Get("Content-Type") != "text/plain; charset=utf-8" {
		t.Errorf("odd header: %d %q %q, want 418 %q", resp.StatusCode, resp.Header.Get("Content-Type"), body, oddBody)
	}
	if resp, _ := do("GET", "/x", map[string]string{oddHeader: oddValue + "x"}); resp.StatusCode != 200 {
		t.Errorf("odd header with another value: %d, want 200", resp.StatusCode)
	}

	// Redirects.
	if resp, _ := do("GET", "/url", nil); resp.StatusCode != 308 || resp.Header.Get("Location") != oddURL {
		t.Errorf("redirect url: %d %q, want 308 %q", resp.StatusCode, resp.Header.Get("Location"), oddURL)
	}
	if resp, _ := do("GET", "/port?q=1", map[string]string{"Host": "example.net:" + itoa(port)}); resp.StatusCode != 302 ||
		resp.Header.Get("Location") != "http://example.net:8443/port?q=1" {
		t.Errorf("redirect port: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}

	// Wildcard host, query regex and method, all required.
	if got := backendOf("/h?id=42", map[string]string{"Host": "www.Example.com:" + itoa(port)}); got != "c" {
		t.Errorf("wildcard host rule went to %q, want c", got)
	}
	if got := backendOf("/h?id=x42", map[string]string{"Host": "www.example.com"}); got != "a" {
		t.Errorf("query mismatch went to %q, want a", got)
	}
	if got := backendOf("/h?id=42", map[string]string{"Host": "example.com"}); got != "a" {
		t.Errorf("host mismatch went to %q, want a", got)
	}

	// Weighted forward: both weighted pools serve, the zero-weight one never.
	counts := map[string]int{}
	for range 200 {
		counts[backendOf("/weighted", nil)]++
	}
	t.Logf("weighted forward 1:1:0 over 200 requests: %v", counts)
	if counts["a"] < 40 || counts["b"] < 40 || counts["a"]+counts["b"] != 200 {
		t.Errorf("weighted forward: %v", counts)
	}

	// Inverted condition and empty fixed response.
	if resp, body := do("GET", "/empty", nil); resp.StatusCode != 503 || len(body) != 0 {
		t.Errorf("empty fixed response: %d %q", resp.StatusCode, body)
	}
	if got := backendOf("/empty", map[string]string{"Cookie": "gone=1"}); got != "a" {
		t.Errorf("inverted cookie condition went to %q, want a", got)
	}

	// Cookie persistence with a cookie name special to HAProxy (with
	// maxlife, HAProxy appends "|<dates>" to the server cookie).
	if resp, _ := do("GET", "/cookie", nil); !strings.HasPrefix(resp.Header.Get("Set-Cookie"), "SRV'$#x=mbr_c|") {
		t.Errorf("cookie_insert: Set-Cookie %q", resp.Header.Get("Set-Cookie"))
	}

	// HTTPS: SNI selects the certificate, HSTS and X-Forwarded-Proto.
	for _, name := range []string{certA, certB} {
		host := filepath.Base(name) + ".example.com"
		tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true, ServerName: host}}
		resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Get("https://127.0.0.1:" + itoa(tlsPort) + "/")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		tr.CloseIdleConnections()
		if cn := resp.TLS.PeerCertificates[0].Subject.CommonName; cn != host {
			t.Errorf("SNI %s got certificate %s", host, cn)
		}
		if h := resp.Header.Get("Strict-Transport-Security"); h != "max-age=31536000; includeSubDomains; preload" {
			t.Errorf("Strict-Transport-Security: %q", h)
		}
		var seen http.Header
		if err := json.Unmarshal(body, &seen); err != nil || seen.Get("X-Forwarded-Proto") != "https" || resp.Header.Get("X-Backend") != "b" {
			t.Errorf("https request: backend %q, headers %v, %v", resp.Header.Get("X-Backend"), seen, err)
		}
	}

	// Health checks with a list of expected codes: the member answers 204.
	want := map[string]string{"pool_mon_ok": "UP", "pool_mon_bad": "DOWN"}
	var got map[string]string
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		got = serverStatus(t, cfg.Global.StatsSocket)
		if got["pool_mon_ok"] == want["pool_mon_ok"] && got["pool_mon_bad"] == want["pool_mon_bad"] {
			break
		}
	}
	t.Logf("health states: %v", got)
	if got["pool_mon_ok"] != want["pool_mon_ok"] || got["pool_mon_bad"] != want["pool_mon_bad"] {
		t.Errorf("health states %v, want %v", got, want)
	}
}

// serverStatus returns the status of the first server of each backend
// from "show stat" on the stats socket.
func serverStatus(t *testing.T, socket string) map[string]string {
	t.Helper()
	conn, err := net.Dial("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte("show stat\n")); err != nil {
		t.Fatal(err)
	}
	out, err := io.ReadAll(conn)
	if err != nil {
		t.Fatal(err)
	}
	status := map[string]string{}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Split(line, ",")
		if len(f) > 17 && f[1] != "FRONTEND" && f[1] != "BACKEND" && !strings.HasPrefix(f[0], "#") {
			if _, ok := status[f[0]]; !ok {
				status[f[0]] = f[17]
			}
		}
	}
	return status
}

// TestRenderUnconditionalRule checks that rules after a rule that ends
// every request are left out, so that HAProxy has nothing to warn about.
func TestRenderUnconditionalRule(t *testing.T) {
	c := Config{LoadBalancers: []LoadBalancer{{ID: "lb_u", VIP: netip.MustParseAddr("127.0.0.1"), Enabled: true,
		Listeners: []Listener{{ID: "lsn_u", Protocol: "http", Port: 38080, DefaultPoolID: "pool_u", Rules: []Rule{
			{ID: "rule_2", Priority: 2, Conditions: []Condition{{Field: "path", Match: "exact", Values: []string{"/x"}}},
				Action: Action{Type: "redirect", RedirectScheme: "https"}},
			{ID: "rule_1", Priority: 1, Action: Action{Type: "fixed_response", StatusCode: 503, ContentType: "text/plain", Body: "maintenance"}},
		}}},
		Pools: []Pool{httpPool("pool_u")},
	}}}
	text, err := Render(c)
	if err != nil {
		t.Fatal(err)
	}
	if n := bytes.Count(text, []byte("\n    http-request ")); n != 1 || !bytes.Contains(text, []byte(`http-request return status 503 content-type text/plain string "maintenance"`+"\n")) {
		t.Errorf("want only the unconditional rule:\n%s", text)
	}
	haproxyCheck(t, testenv.RequireHAProxy(t), text)
}

// TestRenderHardStopOutlivesDrains: old workers live at least as long as the
// longest pool drain (plus a second), so a member removed by a reload can
// finish its connections up to its pool's drain_timeout_ms.
func TestRenderHardStopOutlivesDrains(t *testing.T) {
	cfg := goldenCase("algorithms")
	cfg.Global.HardStopAfter = 5 * time.Second
	text, err := Render(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(text), "hard-stop-after 5000ms") {
		t.Fatalf("without long drains: want hard-stop-after 5000ms:\n%s", text)
	}
	cfg.LoadBalancers[0].Pools[0].DrainTimeoutMS = 60000
	if text, err = Render(cfg); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(text), "hard-stop-after 61000ms") {
		t.Fatalf("with a 60 s drain: want hard-stop-after 61000ms:\n%s", text)
	}
}
