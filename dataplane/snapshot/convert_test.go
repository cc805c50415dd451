package snapshot

import (
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/fulcrumlb/fulcrum/dataplane/haproxy"
	"github.com/fulcrumlb/fulcrum/openapi"
)

// certPath is the certificate file namer of the tests.
func certPath(id string) string { return "/certs/" + id + ".pem" }

// decodeLB reads a snapshot load balancer as the agent receives it (JSON).
func decodeLB(t *testing.T, doc string) openapi.SnapshotLoadBalancer {
	t.Helper()
	var sl openapi.SnapshotLoadBalancer
	if err := json.Unmarshal([]byte(doc), &sl); err != nil {
		t.Fatalf("test snapshot: %v", err)
	}
	return sl
}

func prefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }

// none is the CIDR list of a listener that sets none.
var none = []netip.Prefix{}

// defaults are the backend timeouts of a pool no listener uses (the API's
// listener defaults); a used pool takes those of the first listener (by
// port) using it, and a tcp pool has no tunnel timeout.
var defaults = haproxy.Pool{ConnectTimeoutMS: 5000, ServerTimeoutMS: 50000, TunnelTimeoutMS: 3600000}

func TestToLoadBalancer(t *testing.T) {
	vip := netip.MustParseAddr("10.0.0.7")
	tests := []struct {
		name string
		lb   string // openapi.SnapshotLoadBalancer as JSON
		want haproxy.LoadBalancer
	}{{
		name: "tcp listener, members disabled and weighted, no tunnel timeout",
		lb: `{"load_balancer": {"id": "lb_1", "vip_address": "10.0.0.7", "enabled": true},
  "listeners": [{"id": "lsn_1", "protocol": "tcp", "port": 5432, "default_pool_id": "pool_1", "connection_limit": 100,
    "timeouts": {"client_ms": 1000, "connect_ms": 2000, "server_ms": 3000, "tunnel_ms": 4000}}],
  "pools": [{"id": "pool_1", "protocol": "tcp", "algorithm": "least_connections", "retries": 3, "redispatch": true,
    "proxy_protocol": "v2", "drain_timeout_ms": 7000, "session_persistence": {"type": "source_ip"}}],
  "members": [
    {"id": "mbr_b", "pool_id": "pool_1", "address": "10.1.0.2", "port": 5432, "weight": 0, "enabled": false},
    {"id": "mbr_a", "pool_id": "pool_1", "address": "db.internal", "port": 5433, "weight": 200, "enabled": true, "backup": true, "max_connections": 50},
    {"id": "mbr_other", "pool_id": "pool_2", "address": "10.1.0.9", "port": 1, "weight": 1, "enabled": true}]}`,
		want: haproxy.LoadBalancer{ID: "lb_1", VIP: vip, Enabled: true,
			Listeners: []haproxy.Listener{{ID: "lsn_1", Protocol: "tcp", Port: 5432, DefaultPoolID: "pool_1", ConnectionLimit: 100, AllowedCIDRs: none, DeniedCIDRs: none,
				Timeouts: haproxy.Timeouts{ClientMS: 1000, ConnectMS: 2000, ServerMS: 3000, TunnelMS: 4000}}},
			Pools: []haproxy.Pool{{ID: "pool_1", Protocol: "tcp", Algorithm: "least_connections", Retries: 3, Redispatch: true,
				ProxyProtocol: "v2", DrainTimeoutMS: 7000, Persistence: haproxy.Persistence{Type: "source_ip"},
				ConnectTimeoutMS: 2000, ServerTimeoutMS: 3000, TunnelTimeoutMS: 0,
				Members: []haproxy.Member{
					{ID: "mbr_a", Address: "db.internal", Port: 5433, Weight: 200, Backup: true, Enabled: true, MaxConnections: 50},
					{ID: "mbr_b", Address: "10.1.0.2", Port: 5432, Weight: 0, Enabled: false}}}}},
	}, {
		name: "http listener: ACL prefixes, headers, rate limit default type, routing rules by priority",
		lb: `{"load_balancer": {"id": "lb_2", "vip_address": "10.0.0.7", "enabled": true},
  "listeners": [{"id": "lsn_h", "protocol": "http", "port": 80, "default_pool_id": null,
    "allowed_cidrs": ["10.0.0.0/8", "2001:db8::/32"], "denied_cidrs": ["10.6.6.6/32"], "compression": true, "redirect_http_to_https": true,
    "insert_headers": {"x_forwarded_for": true, "x_request_id": true}, "rate_limit": {"per_second": 50}}],
  "pools": [{"id": "pool_web", "protocol": "http", "algorithm": "round_robin", "session_persistence": {"type": "cookie_insert", "cookie_name": "SRV", "cookie_ttl_seconds": 60},
    "health_monitor": {"type": "http", "interval_ms": 2000, "timeout_ms": 1000, "rise": 2, "fall": 3, "http_method": "HEAD", "path": "/health", "host": "web", "expected_codes": "200-399"}},
    {"id": "pool_api", "protocol": "http", "algorithm": "uri", "hash_key": "", "session_persistence": {"type": "none"}}],
  "routing_rules": [
    {"id": "rule_late", "listener_id": "lsn_h", "priority": 20,
      "conditions": [{"field": "header", "key": "X-Env", "values": ["test"], "invert": true}],
      "action": {"type": "redirect", "redirect": {"scheme": "https", "host": "example.com", "port": 8443}}},
    {"id": "rule_early", "listener_id": "lsn_h", "priority": 10,
      "conditions": [{"field": "path", "match": "prefix", "values": ["/api", "/v2"]}],
      "action": {"type": "forward", "forward": {"pools": [{"pool_id": "pool_api", "weight": 3}, {"pool_id": "pool_web"}]}}},
    {"id": "rule_fixed", "listener_id": "lsn_h", "priority": 30, "conditions": [{"field": "method", "values": ["DELETE"]}],
      "action": {"type": "fixed_response", "fixed_response": {"status_code": 403, "content_type": "text/plain", "body": "no"}}},
    {"id": "rule_elsewhere", "listener_id": "lsn_other", "priority": 1, "conditions": [], "action": {"type": "deny"}}]}`,
		want: haproxy.LoadBalancer{ID: "lb_2", VIP: vip, Enabled: true,
			Listeners: []haproxy.Listener{{ID: "lsn_h", Protocol: "http", Port: 80,
				AllowedCIDRs: []netip.Prefix{prefix("10.0.0.0/8"), prefix("2001:db8::/32")}, DeniedCIDRs: []netip.Prefix{prefix("10.6.6.6/32")},
				Compression: true, RedirectHTTPToHTTPS: true, InsertHeaders: haproxy.InsertHeaders{XForwardedFor: true, XRequestID: true},
				RateLimit: &haproxy.RateLimit{Type: "requests", PerSecond: 50},
				Rules: []haproxy.Rule{
					{ID: "rule_early", Priority: 10,
						Conditions: []haproxy.Condition{{Field: "path", Match: "prefix", Values: []string{"/api", "/v2"}}},
						Action:     haproxy.Action{Type: "forward", Pools: []haproxy.WeightedPool{{PoolID: "pool_api", Weight: 3}, {PoolID: "pool_web", Weight: 1}}}},
					{ID: "rule_late", Priority: 20,
						Conditions: []haproxy.Condition{{Field: "header", Match: "exact", Key: "X-Env", Values: []string{"test"}, Invert: true}},
						Action:     haproxy.Action{Type: "redirect", RedirectScheme: "https", RedirectHost: "example.com", RedirectPort: 8443, RedirectCode: 302}},
					{ID: "rule_fixed", Priority: 30,
						Conditions: []haproxy.Condition{{Field: "method", Match: "exact", Values: []string{"DELETE"}}},
						Action:     haproxy.Action{Type: "fixed_response", StatusCode: 403, ContentType: "text/plain", Body: "no"}}}}},
			Pools: []haproxy.Pool{
				// Both pools are used by lsn_h's rules only, whose timeouts
				// are all defaults (0: the renderer's defaults apply).
				{ID: "pool_api", Protocol: "http", Algorithm: "uri", Persistence: haproxy.Persistence{Type: "none"}},
				{ID: "pool_web", Protocol: "http", Algorithm: "round_robin",
					Persistence: haproxy.Persistence{Type: "cookie_insert", CookieName: "SRV", CookieTTLSeconds: 60},
					Monitor:     &haproxy.Monitor{Type: "http", IntervalMS: 2000, TimeoutMS: 1000, Rise: 2, Fall: 3, Method: "HEAD", Path: "/health", Host: "web", Expect: "200-399"}}}},
	}, {
		name: "https listener: certificate files in order, HSTS; first listener by port sets a shared pool's timeouts; an unused pool takes the defaults",
		lb: `{"load_balancer": {"id": "lb_3", "vip_address": "10.0.0.7", "enabled": false},
  "listeners": [
    {"id": "lsn_s", "protocol": "https", "port": 443, "default_pool_id": "pool_shared", "certificate_ids": ["cert_b", "cert_a"],
      "hsts": {"max_age_seconds": 31536000, "include_subdomains": true}, "rate_limit": {"type": "connections", "per_second": 9},
      "timeouts": {"connect_ms": 400, "server_ms": 900, "tunnel_ms": 1200}},
    {"id": "lsn_p", "protocol": "http", "port": 80, "default_pool_id": "pool_shared",
      "timeouts": {"connect_ms": 100, "server_ms": 200, "tunnel_ms": 300}}],
  "pools": [{"id": "pool_shared", "protocol": "http", "algorithm": "random", "tls_to_members": true, "session_persistence": {"type": "none"}},
    {"id": "pool_unused", "protocol": "http", "algorithm": "first", "session_persistence": {"type": "none"}}]}`,
		want: haproxy.LoadBalancer{ID: "lb_3", VIP: vip, Enabled: false,
			Listeners: []haproxy.Listener{
				{ID: "lsn_p", Protocol: "http", Port: 80, DefaultPoolID: "pool_shared", AllowedCIDRs: none, DeniedCIDRs: none,
					Timeouts: haproxy.Timeouts{ConnectMS: 100, ServerMS: 200, TunnelMS: 300}},
				{ID: "lsn_s", Protocol: "https", Port: 443, DefaultPoolID: "pool_shared", AllowedCIDRs: none, DeniedCIDRs: none,
					CertFiles: []string{"/certs/cert_b.pem", "/certs/cert_a.pem"},
					HSTS:      &haproxy.HSTS{MaxAgeSeconds: 31536000, IncludeSubdomains: true}, RateLimit: &haproxy.RateLimit{Type: "connections", PerSecond: 9},
					Timeouts: haproxy.Timeouts{ConnectMS: 400, ServerMS: 900, TunnelMS: 1200}}},
			Pools: []haproxy.Pool{
				{ID: "pool_shared", Protocol: "http", Algorithm: "random", TLSToMembers: true, Persistence: haproxy.Persistence{Type: "none"},
					ConnectTimeoutMS: 100, ServerTimeoutMS: 200, TunnelTimeoutMS: 300},
				{ID: "pool_unused", Protocol: "http", Algorithm: "first", Persistence: haproxy.Persistence{Type: "none"},
					ConnectTimeoutMS: defaults.ConnectTimeoutMS, ServerTimeoutMS: defaults.ServerTimeoutMS, TunnelTimeoutMS: defaults.TunnelTimeoutMS}}},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sl := decodeLB(t, tt.lb)
			got, err := ToLoadBalancer(&sl, certPath)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				gj, _ := json.MarshalIndent(got, "", " ")
				wj, _ := json.MarshalIndent(tt.want, "", " ")
				t.Errorf("got\n%s\nwant\n%s", gj, wj)
			}
		})
	}
}

// The first listener of an LB with all-default timeouts still gives its
// pool zero timeouts (the renderer then applies the defaults): only pools
// no listener uses take the API's defaults here.
func TestToLoadBalancerDefaultsOnlyForUnusedPools(t *testing.T) {
	sl := decodeLB(t, `{"load_balancer": {"id": "lb_1", "vip_address": "::1", "enabled": true},
  "pools": [{"id": "pool_1", "protocol": "tcp", "algorithm": "round_robin", "session_persistence": {"type": "none"}}]}`)
	got, err := ToLoadBalancer(&sl, certPath)
	if err != nil {
		t.Fatal(err)
	}
	p := got.Pools[0]
	if p.ConnectTimeoutMS != defaults.ConnectTimeoutMS || p.ServerTimeoutMS != defaults.ServerTimeoutMS || p.TunnelTimeoutMS != 0 {
		t.Errorf("unused tcp pool timeouts: connect %d server %d tunnel %d, want %d %d 0 (no tunnel timeout in tcp mode)",
			p.ConnectTimeoutMS, p.ServerTimeoutMS, p.TunnelTimeoutMS, defaults.ConnectTimeoutMS, defaults.ServerTimeoutMS)
	}
}

// A load balancer that cannot be converted is an error naming it and the
// object (by id) and field at fault; ToConfig fails with it.
func TestToConfigRejects(t *testing.T) {
	tests := []struct {
		name string
		lb   string
		want []string // substrings of the error
	}{
		{"VIP", `{"load_balancer": {"id": "lb_bad", "vip_address": "not-an-ip"}}`, []string{"load balancer lb_bad", "vip_address"}},
		{"allowed CIDR", `{"load_balancer": {"id": "lb_bad", "vip_address": "10.0.0.1"},
  "listeners": [{"id": "lsn_x", "protocol": "tcp", "port": 1, "allowed_cidrs": ["10.0.0.0/33"]}]}`, []string{"load balancer lb_bad", "listener lsn_x"}},
		{"denied CIDR", `{"load_balancer": {"id": "lb_bad", "vip_address": "10.0.0.1"},
  "listeners": [{"id": "lsn_y", "protocol": "tcp", "port": 1, "denied_cidrs": ["nope"]}]}`, []string{"load balancer lb_bad", "listener lsn_y"}},
	}
	good := decodeLB(t, `{"load_balancer": {"id": "lb_good", "vip_address": "10.0.0.2", "enabled": true}}`)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bad := decodeLB(t, tt.lb)
			_, err := ToConfig(&openapi.Snapshot{LoadBalancers: []openapi.SnapshotLoadBalancer{good, bad}}, haproxy.Global{}, certPath)
			if err == nil {
				t.Fatal("converted")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}

// ToConfig keeps the global settings and sorts load balancers by id.
func TestToConfigSortsLoadBalancers(t *testing.T) {
	snap := &openapi.Snapshot{LoadBalancers: []openapi.SnapshotLoadBalancer{
		decodeLB(t, `{"load_balancer": {"id": "lb_c", "vip_address": "10.0.0.3", "enabled": true}}`),
		decodeLB(t, `{"load_balancer": {"id": "lb_a", "vip_address": "10.0.0.1", "enabled": true}}`),
		decodeLB(t, `{"load_balancer": {"id": "lb_b", "vip_address": "10.0.0.2", "enabled": true}}`),
	}}
	g := haproxy.Global{MaxConn: 1000, StatsSocket: "/run/stats.sock"}
	cfg, err := ToConfig(snap, g, certPath)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Global != g {
		t.Errorf("global %+v, want %+v", cfg.Global, g)
	}
	var ids []string
	for _, lb := range cfg.LoadBalancers {
		ids = append(ids, lb.ID)
	}
	if strings.Join(ids, ",") != "lb_a,lb_b,lb_c" {
		t.Errorf("load balancers %v, want lb_a,lb_b,lb_c", ids)
	}
	if empty, err := ToConfig(&openapi.Snapshot{}, g, certPath); err != nil || len(empty.LoadBalancers) != 0 {
		t.Errorf("empty snapshot: %+v %v", empty, err)
	}
}

// WriteCertificates writes chain and key as one 0600 PEM bundle per
// certificate, a newline between them when the chain lacks one, and names
// the files as ToConfig's certFile.
func TestWriteCertificates(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	name, err := WriteCertificates(dir, []openapi.SnapshotCertificate{
		{Id: "cert_a", Certificate: "CHAIN-A", PrivateKey: "KEY-A\n"},
		{Id: "cert_b", Certificate: "CHAIN-B\n", PrivateKey: "KEY-B\n"},
	})
	if err != nil {
		t.Fatal(err)
	}
	for id, want := range map[string]string{"cert_a": "CHAIN-A\nKEY-A\n", "cert_b": "CHAIN-B\nKEY-B\n"} {
		path := name(id)
		if path != filepath.Join(dir, id+".pem") {
			t.Errorf("file of %s: %s", id, path)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if string(b) != want {
			t.Errorf("%s: %q, want %q", id, b, want)
		}
		if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v %v, want 0600", id, fi.Mode().Perm(), err)
		}
	}
	// The listener's certificate files are the ones written.
	sl := decodeLB(t, `{"load_balancer": {"id": "lb_1", "vip_address": "10.0.0.1", "enabled": true},
  "listeners": [{"id": "lsn_1", "protocol": "https", "port": 443, "certificate_ids": ["cert_a"]}]}`)
	lb, err := ToLoadBalancer(&sl, name)
	if err != nil {
		t.Fatal(err)
	}
	if got := lb.Listeners[0].CertFiles; len(got) != 1 || got[0] != name("cert_a") {
		t.Errorf("cert files %v, want [%s]", got, name("cert_a"))
	}
}
