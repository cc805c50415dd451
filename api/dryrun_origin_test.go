package api

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fulcrumlb/fulcrum/api/problem"
	"github.com/fulcrumlb/fulcrum/dataplane/haproxy"
	"github.com/fulcrumlb/fulcrum/internal/testcerts"
	"github.com/fulcrumlb/fulcrum/openapi"
)

// originModel is a load balancer with a line of every kind of object: two
// listeners (http, https), a routing rule, a pool with persistence and a
// health monitor, a member. The rule's second path regex is one PCRE2
// refuses (\x{100} is above 0xff) unless fixed.
func originModel(certFile string, fixed bool) haproxy.LoadBalancer {
	regex := `^/\x{100}`
	if fixed {
		regex = `^/\x{ff}`
	}
	return haproxy.LoadBalancer{ID: "lb_o", VIP: netip.MustParseAddr("127.0.0.10"), Enabled: true,
		Listeners: []haproxy.Listener{
			{ID: "lsn_http", Protocol: "http", Port: 80, DefaultPoolID: "pool_web",
				AllowedCIDRs: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")},
				RateLimit:    &haproxy.RateLimit{Type: "requests", PerSecond: 10},
				Timeouts:     haproxy.Timeouts{ClientMS: 1000},
				Rules: []haproxy.Rule{{ID: "rule_o", Priority: 1, Conditions: []haproxy.Condition{
					{Field: "host", Match: "exact", Values: []string{"a.example.test"}},
					{Field: "path", Match: "regex", Values: []string{"^/ok$", regex}},
				}, Action: haproxy.Action{Type: "deny"}}}},
			{ID: "lsn_https", Protocol: "https", Port: 443, DefaultPoolID: "pool_web", CertFiles: []string{certFile}},
		},
		Pools: []haproxy.Pool{{ID: "pool_web", Protocol: "http", Algorithm: "round_robin", Retries: 3,
			Persistence: haproxy.Persistence{Type: "cookie_insert", CookieName: "SRV"},
			Monitor:     &haproxy.Monitor{Type: "http", IntervalMS: 1000, TimeoutMS: 500, Rise: 1, Fall: 1, Path: "/", Expect: "200"},
			Members:     []haproxy.Member{{ID: "mbr_o", Address: "10.0.0.1", Port: 80, Weight: 1, Enabled: true}}}},
	}
}

func originRule() openapi.RoutingRule {
	return openapi.RoutingRule{Id: "rule_o", Conditions: []openapi.RuleCondition{
		{Field: "host", Values: []string{"a.example.test"}},
		{Field: "path", Values: []string{"^/ok$", `^/\x{100}`}},
	}}
}

// lineStarting is the number of the one line of text starting (after its
// indentation) with prefix.
func lineStarting(t *testing.T, text []byte, prefix string) int {
	t.Helper()
	n := 0
	for i, line := range strings.Split(string(text), "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), prefix) {
			if n != 0 {
				t.Fatalf("%q starts lines %d and %d", prefix, n, i+1)
			}
			n = i + 1
		}
	}
	if n == 0 {
		t.Fatalf("no line starts with %q", prefix)
	}
	return n
}

// TestDryRunAlertField maps alerts on lines of each kind of object to the
// written object's field, by the renderer's origins.
func TestDryRunAlertField(t *testing.T) {
	r, err := haproxy.RenderLoadBalancerWithOrigins(haproxy.Global{}, originModel("/certs/crt_o.pem", false))
	if err != nil {
		t.Fatal(err)
	}
	lb := openapi.LoadBalancer{Id: "lb_o"}
	httpL, httpsL := openapi.Listener{Id: "lsn_http"}, openapi.Listener{Id: "lsn_https"}
	pool, member, rule := openapi.Pool{Id: "pool_web"}, openapi.Member{Id: "mbr_o"}, originRule()
	tests := []struct {
		name   string
		obj    any
		line   string // the start of the line the alert is on; "" for none
		server string // the server the alert names
		msg    string
		want   string
	}{
		{"listener port", httpL, "bind 127.0.0.10:80", "", "cannot parse address", "port"},
		{"listener certificate", httpsL, "bind 127.0.0.10:443", "", "unable to load SSL private key from PEM file '/certs/crt_o.pem'", "certificate_ids"},
		{"listener cidrs", httpL, "acl allowed_src", "", "unknown keyword", "allowed_cidrs"},
		{"listener timeout", httpL, "timeout client 1000ms", "", "unexpected character", "timeouts.client_ms"},
		{"listener rate limit", httpL, "http-request track-sc0", "", "unknown", "rate_limit"},
		{"listener, line of its rule", httpL, "acl rule_o_c1", "", "regex '^/\\x{100}' is invalid", "body"},
		{"listener, line of another listener", httpL, "bind 127.0.0.10:443", "", "ssl", "body"},
		{"rule value", rule, "acl rule_o_c1", "", "error detected while parsing ACL 'rule_o_c1' : regex '^/\\x{100}' is invalid", "conditions[1].values[1]"},
		{"rule condition", rule, "acl rule_o_c0", "", "something about the host", "conditions[0].values"},
		{"rule action", rule, "http-request deny deny_status 403", "", "no such ACL", "action"},
		{"rule, line of its listener", rule, "bind 127.0.0.10:80", "", "cannot parse", "body"},
		{"pool algorithm", pool, "balance roundrobin", "", "unknown", "algorithm"},
		{"pool persistence", pool, "cookie SRV", "", "unknown", "session_persistence"},
		{"pool monitor", pool, "option httpchk", "", "unknown", "health_monitor"},
		{"pool expected codes", pool, "http-check expect", "", "unknown", "health_monitor.expected_codes"},
		{"pool, line of its member", pool, "server mbr_o", "", "unknown", "body"},
		{"member line", member, "server mbr_o", "", "invalid address", "address"},
		{"member named, no line", member, "", "mbr_o", "could not resolve address", "address"},
		{"member, line of its pool", member, "balance roundrobin", "", "unknown", "body"},
		{"load balancer", lb, "# load balancer lb_o", "", "unknown", "body"},
		{"load balancer, line of its listener", lb, "bind 127.0.0.10:80", "", "unknown", "body"},
		{"no line", httpL, "", "", "Fatal errors found in configuration.", "body"},
		{"global line", pool, "maxconn 4000", "", "unknown", "body"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := haproxy.Alert{Server: tc.server, Message: tc.msg}
			if tc.line != "" {
				a.Line = lineStarting(t, r.Text, tc.line)
			}
			tree := &dryRunTree{obj: tc.obj, lb: openapi.SnapshotLoadBalancer{LoadBalancer: lb}}
			if got := tree.alertField(a, &r); got != tc.want {
				t.Errorf("alert on %q: field %q, want %q (origin %+v)", tc.line, got, tc.want, r.Origin(a.Line))
			}
		})
	}
	if got := (&dryRunTree{obj: httpL}).alertField(haproxy.Alert{Line: len(r.Origins) + 5}, &r); got != "body" {
		t.Errorf("alert past the end: field %q", got)
	}
}

// TestDryRunRejectedByOrigin runs haproxy -c on a load balancer with a
// regex PCRE2 refuses, then on one with a certificate that is no certificate
// (HAProxy loads certificates once the whole file parsed): the 422 names the
// rule's value for the rule, the certificates for the listener.
func TestDryRunRejectedByOrigin(t *testing.T) {
	bin, err := exec.LookPath("haproxy")
	if err != nil {
		if _, serr := os.Stat("/usr/sbin/haproxy"); serr != nil {
			t.Skip("haproxy is not installed")
		}
		bin = "/usr/sbin/haproxy"
	}
	dir := t.TempDir()
	certPEM, keyPEM := testcerts.SelfSigned(t, "origin.example.test")
	good, bad := filepath.Join(dir, "crt_good.pem"), filepath.Join(dir, "crt_o.pem")
	if err := os.WriteFile(good, []byte(certPEM+keyPEM), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bad, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		lb    haproxy.LoadBalancer
		obj   any
		field string
		says  string
	}{
		{originModel(good, false), originRule(), "conditions[1].values[1]", `regex '^/\x{100}' is invalid`},
		{originModel(bad, true), openapi.Listener{Id: "lsn_https"}, "certificate_ids", "crt_o.pem"},
	} {
		r, err := haproxy.RenderLoadBalancerWithOrigins(haproxy.Global{StatsSocket: filepath.Join(dir, "stats.sock")}, tc.lb)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, "haproxy.cfg")
		if err := os.WriteFile(path, r.Text, 0o600); err != nil {
			t.Fatal(err)
		}
		err = haproxy.Check(context.Background(), bin, path)
		var ce *haproxy.CheckError
		if !errors.As(err, &ce) {
			t.Fatalf("%T: haproxy -c: %v, want a CheckError", tc.obj, err)
		}
		tree := &dryRunTree{obj: tc.obj, lb: openapi.SnapshotLoadBalancer{LoadBalancer: openapi.LoadBalancer{Id: "lb_o"}}}
		var p *problem.Problem
		if !errors.As(tree.rejected(ce, path, &r), &p) || p.Type != "haproxy-rejected" {
			t.Fatalf("%T: rejected is not a haproxy-rejected problem", tc.obj)
		}
		found := false
		for _, f := range p.Errors {
			if f.Field == tc.field && strings.Contains(f.Message, tc.says) {
				found = true
			}
			if strings.Contains(f.Message, path) {
				t.Errorf("%T: %s names the temporary file: %s", tc.obj, f.Field, f.Message)
			}
		}
		if !found {
			t.Errorf("%T: errors %+v, want %s saying %q\nhaproxy said: %s", tc.obj, p.Errors, tc.field, tc.says, ce.Output)
		}
	}
}
