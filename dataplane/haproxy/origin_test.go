package haproxy

import (
	"bytes"
	"strings"
	"testing"
)

// TestRenderOriginsSections checks, on every golden case, that each line has
// an origin, that the text is Render's, and that the lines of a section come
// from its object: a frontend's from its listener or its rules, a backend's
// from its pool or, for server lines, from the member the server is named for.
func TestRenderOriginsSections(t *testing.T) {
	for _, tc := range goldenCases() {
		t.Run(tc.name, func(t *testing.T) {
			r, err := RenderWithOrigins(tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			plain, _ := Render(tc.cfg)
			if !bytes.Equal(r.Text, plain) {
				t.Fatal("RenderWithOrigins's text differs from Render's")
			}
			lines := strings.Split(strings.TrimSuffix(string(r.Text), "\n"), "\n")
			if len(r.Origins) != len(lines) {
				t.Fatalf("%d origins for %d lines", len(r.Origins), len(lines))
			}
			rules := map[string]string{} // rule id -> listener id
			for _, lb := range tc.cfg.LoadBalancers {
				for _, l := range lb.Listeners {
					for _, ru := range l.Rules {
						rules[ru.ID] = l.ID
					}
				}
			}
			section := ""
			for i, line := range lines {
				n := i + 1
				o := r.Origin(n)
				if o != r.Origins[i] {
					t.Fatalf("Origin(%d) is not Origins[%d]", n, i)
				}
				words := strings.Fields(line)
				if len(words) > 0 && !strings.HasPrefix(line, " ") && !strings.HasPrefix(line, "#") {
					section = words[0] + " " + strings.Join(words[1:], " ")
				}
				bad := func(why string) {
					t.Errorf("line %d %q in [%s]: origin %+v: %s", n, line, section, o, why)
				}
				kind, name, _ := strings.Cut(section, " ")
				switch {
				case line == "":
					if o != (Origin{}) {
						bad("a blank line has an origin")
					}
				case strings.HasPrefix(line, "# load balancer "):
					if o != (Origin{Kind: KindLoadBalancer, ID: strings.TrimPrefix(line, "# load balancer ")}) {
						bad("want the load balancer")
					}
				case kind == "global" || kind == "defaults" || section == "frontend prometheus" || strings.HasPrefix(line, "# Generated"):
					if o != (Origin{}) {
						bad("a line of the renderer's own has an origin")
					}
				case kind == "frontend":
					switch {
					case o.Kind == KindListener && o.ID == name:
					case o.Kind == KindRule && rules[o.ID] == name:
					default:
						bad("want the listener or one of its rules")
					}
				case kind == "backend" && words[0] == "server":
					if o != (Origin{Kind: KindMember, ID: words[1], Field: "address"}) {
						bad("want the member's address")
					}
				case kind == "backend":
					if o.Kind != KindPool || o.ID != name {
						bad("want the pool")
					}
				default:
					bad("unexpected line")
				}
				if strings.HasPrefix(line, "frontend ") || strings.HasPrefix(line, "backend ") {
					if o.Field != "" && name != "prometheus" {
						bad("a section header stands for its object")
					}
				}
			}
			if o := r.Origin(0); o != (Origin{}) {
				t.Errorf("Origin(0) = %+v", o)
			}
			if o := r.Origin(len(lines) + 1); o != (Origin{}) {
				t.Errorf("Origin past the end = %+v", o)
			}
		})
	}
}

// TestRenderOrigins maps lines of each kind of object back to the object and
// the API field they render.
func TestRenderOrigins(t *testing.T) {
	lsn := func(id, field string) Origin { return Origin{Kind: KindListener, ID: id, Field: field} }
	pool := func(id, field string) Origin { return Origin{Kind: KindPool, ID: id, Field: field} }
	rule := func(id, field string, i int) Origin { return Origin{Kind: KindRule, ID: id, Field: field, Index: i} }
	tests := []struct {
		golden string
		line   string // the start of exactly one line, after its indentation
		want   Origin
		path   string
	}{
		// Load balancer.
		{"http_listener", "# load balancer lb_http", Origin{Kind: KindLoadBalancer, ID: "lb_http"}, ""},
		// Listener.
		{"http_listener", "frontend lsn_http", lsn("lsn_http", ""), ""},
		{"http_listener", "mode http", lsn("lsn_http", "protocol"), "protocol"},
		{"http_listener", "bind 127.77.0.10:80", lsn("lsn_http", "port"), "port"},
		{"http_listener", "maxconn 10000", lsn("lsn_http", "connection_limit"), "connection_limit"},
		{"http_listener", "timeout client 30000ms", lsn("lsn_http", "timeouts.client_ms"), "timeouts.client_ms"},
		{"http_listener", "timeout http-request", lsn("lsn_http", "timeouts.http_request_ms"), "timeouts.http_request_ms"},
		{"http_listener", "timeout http-keep-alive", lsn("lsn_http", "timeouts.http_keep_alive_ms"), "timeouts.http_keep_alive_ms"},
		{"http_listener", "option forwardfor", lsn("lsn_http", "insert_headers.x_forwarded_for"), "insert_headers.x_forwarded_for"},
		{"http_listener", "unique-id-format", lsn("lsn_http", "insert_headers.x_request_id"), "insert_headers.x_request_id"},
		{"http_listener", "compression algo", lsn("lsn_http", "compression"), "compression"},
		{"http_listener", "compression type", lsn("lsn_http", "compression"), "compression"},
		{"http_listener", "stick-table", lsn("lsn_http", "rate_limit"), "rate_limit"},
		{"http_listener", "acl allowed_src src -- 10.16.0.0/16", lsn("lsn_http", "allowed_cidrs"), "allowed_cidrs"},
		{"http_listener", "acl denied_src", lsn("lsn_http", "denied_cidrs"), "denied_cidrs"},
		{"http_listener", "tcp-request connection reject if !allowed_src", lsn("lsn_http", "allowed_cidrs"), "allowed_cidrs"},
		{"http_listener", "tcp-request connection reject if denied_src", lsn("lsn_http", "denied_cidrs"), "denied_cidrs"},
		{"http_listener", "http-request track-sc0 src", lsn("lsn_http", "rate_limit"), "rate_limit"},
		{"http_listener", "http-request deny deny_status 429", lsn("lsn_http", "rate_limit"), "rate_limit"},
		{"http_listener", "http-request redirect location https://", lsn("lsn_http", "redirect_http_to_https"), "redirect_http_to_https"},
		{"http_listener", "http-request set-header X-Forwarded-Proto", lsn("lsn_http", "insert_headers.x_forwarded_proto"), "insert_headers.x_forwarded_proto"},
		{"http_listener", "http-request set-header X-Forwarded-Port", lsn("lsn_http", "insert_headers.x_forwarded_port"), "insert_headers.x_forwarded_port"},
		{"http_listener", "http-request set-header X-Request-ID", lsn("lsn_http", "insert_headers.x_request_id"), "insert_headers.x_request_id"},
		{"http_listener", "default_backend pool_web", lsn("lsn_http", "default_pool_id"), "default_pool_id"},
		{"tcp_basic", "tcp-request connection track-sc0 src", lsn("lsn_tcp", "rate_limit"), "rate_limit"},
		// Certificates: an https listener's bind line loads them.
		{"https_hsts", "bind 127.77.0.10:443 ssl", lsn("lsn_https", "certificate_ids"), "certificate_ids"},
		{"https_hsts", "bind 127.77.0.10:8443 ssl", lsn("lsn_https_alt", "certificate_ids"), "certificate_ids"},
		{"https_hsts", "http-response set-header Strict-Transport-Security", lsn("lsn_https_alt", "hsts"), "hsts"},
		// Routing rules.
		{"rules", "acl rule_deny_c0", rule("rule_deny", "conditions[].values", 0), "conditions[0].values"},
		{"rules", "acl rule_api_c1 method", rule("rule_api", "conditions[].values", 1), "conditions[1].values"},
		{"rules", "acl rule_canary_c1", rule("rule_canary", "conditions[].values", 1), "conditions[1].values"},
		{"rules", "acl fulcrum_routed", lsn("lsn_rules", ""), ""},
		{"rules", "http-request deny deny_status 403 if !fulcrum_routed rule_deny_c0", rule("rule_deny", "action", 0), "action"},
		{"rules", "http-request set-var(txn.fulcrum_rule) str(rule_api)", rule("rule_api", "action", 0), "action"},
		{"rules", "http-request set-var(txn.fulcrum_rnd)", rule("rule_canary", "action.forward.pools", 0), "action.forward.pools"},
		{"rules", "http-request redirect location https://www.example.com", rule("rule_old", "action.redirect", 0), "action.redirect"},
		{"rules", "http-request return status 418", rule("rule_teapot", "action.fixed_response", 0), "action.fixed_response"},
		{"rules", "use_backend pool_api", rule("rule_api", "action.forward.pools[].pool_id", 0), "action.forward.pools[0].pool_id"},
		{"rules", "use_backend pool_stable", rule("rule_canary", "action.forward.pools[].pool_id", 0), "action.forward.pools[0].pool_id"},
		{"rules", "use_backend pool_canary", rule("rule_canary", "action.forward.pools[].pool_id", 1), "action.forward.pools[1].pool_id"},
		// Pools.
		{"tcp_basic", "backend pool_db", pool("pool_db", ""), ""},
		{"tcp_basic", "balance leastconn", pool("pool_db", "algorithm"), "algorithm"},
		{"tcp_basic", "retries 2", pool("pool_db", "retries"), "retries"},
		{"tcp_basic", "option redispatch", pool("pool_db", "redispatch"), "redispatch"},
		{"tcp_basic", "timeout connect 2000ms", pool("pool_db", ""), ""},
		{"tcp_basic", "timeout check 3000ms", pool("pool_db", "health_monitor.timeout_ms"), "health_monitor.timeout_ms"},
		{"algorithms", "balance url_param", pool("pool_url_param", "hash_key"), "hash_key"},
		{"algorithms", "balance hdr(X-Tenant)", pool("pool_header", "hash_key"), "hash_key"},
		{"persistence", "cookie SRV insert", pool("pool_pd_cookie_insert", "session_persistence"), "session_persistence"},
		{"persistence", "stick-table type ip size 1m expire 600s", pool("pool_pc_source_ip", "session_persistence"), "session_persistence"},
		{"monitors", "http-check send meth GET uri /healthz", pool("pool_http_check", "health_monitor"), "health_monitor"},
		{"monitors", "http-check expect status 200,204", pool("pool_http_check", "health_monitor.expected_codes"), "health_monitor.expected_codes"},
		// Members.
		{"monitors", "server mbr_e app-backend", Origin{Kind: KindMember, ID: "mbr_e", Field: "address"}, "address"},
		{"tcp_basic", "server mbr_db2", Origin{Kind: KindMember, ID: "mbr_db2", Field: "address"}, "address"},
	}
	rendered := map[string]Rendered{}
	for _, tc := range tests {
		r, ok := rendered[tc.golden]
		if !ok {
			var err error
			if r, err = RenderWithOrigins(goldenCase(tc.golden)); err != nil {
				t.Fatal(err)
			}
			rendered[tc.golden] = r
		}
		// A listener's or pool's line is looked for in its section.
		var in string
		switch tc.want.Kind {
		case KindListener:
			in = "frontend " + tc.want.ID
		case KindPool:
			in = "backend " + tc.want.ID
		}
		n, section := 0, ""
		for i, line := range strings.Split(string(r.Text), "\n") {
			if line != "" && !strings.HasPrefix(line, " ") {
				section = line
			}
			if in != "" && section != in {
				continue
			}
			if strings.HasPrefix(strings.TrimSpace(line), tc.line) {
				if n != 0 {
					t.Fatalf("%s: %q starts lines %d and %d", tc.golden, tc.line, n, i+1)
				}
				n = i + 1
			}
		}
		if n == 0 {
			t.Fatalf("%s: no line starts with %q", tc.golden, tc.line)
		}
		got := r.Origin(n)
		if got != tc.want {
			t.Errorf("%s line %d %q: origin %+v, want %+v", tc.golden, n, tc.line, got, tc.want)
		}
		if got.Path() != tc.path {
			t.Errorf("%s line %d %q: path %q, want %q", tc.golden, n, tc.line, got.Path(), tc.path)
		}
	}
}

// TestRenderOriginsCheap checks that recording origins costs no allocation
// per line: beyond Render's allocations, only the growth of the table.
func TestRenderOriginsCheap(t *testing.T) {
	cfg := goldenCase("rules")
	plain := testing.AllocsPerRun(20, func() { _, _ = Render(cfg) })
	traced := testing.AllocsPerRun(20, func() { _, _ = RenderWithOrigins(cfg) })
	r, _ := RenderWithOrigins(cfg)
	// Appending to a slice grows it about log2(n) times; twice that leaves
	// room for the run-to-run noise of AllocsPerRun (a GC, the race
	// detector) while still failing an allocation per line.
	limit := 2.0
	for n := len(r.Origins); n > 1; n /= 2 {
		limit++
	}
	limit *= 2
	t.Logf("%d lines: %.0f allocations without origins, %.0f with", len(r.Origins), plain, traced)
	if traced-plain > limit {
		t.Errorf("origins cost %.0f allocations for %d lines, want at most %.0f", traced-plain, len(r.Origins), limit)
	}
}
