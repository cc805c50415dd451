package api_test

import (
	"encoding/json"
	"maps"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/fulcrumlb/fulcrum/openapi"
)

// limitsDoc is the API document, parsed.
func limitsDoc(t *testing.T) *openapi3.T {
	t.Helper()
	doc, err := openapi3.NewLoader().LoadFromData(openapi.Document)
	if err != nil {
		t.Fatal(err)
	}
	return doc
}

// docChildren returns the properties of s, through allOf, $ref and array items.
func docChildren(s *openapi3.Schema) openapi3.Schemas {
	if s.Items != nil && s.Items.Value != nil && len(s.Items.Value.Properties) > 0 {
		return s.Items.Value.Properties
	}
	if len(s.Properties) > 0 {
		return s.Properties
	}
	for _, a := range s.AllOf {
		if a.Value != nil && len(a.Value.Properties) > 0 {
			return a.Value.Properties
		}
	}
	return nil
}

// docWalk calls f for every property under the create schema name, with its
// path from the schema ("timeouts.client_ms", "action.forward.pools.weight").
func docWalk(doc *openapi3.T, name string, f func(path string, s *openapi3.Schema)) {
	var walk func(prefix string, s *openapi3.Schema, depth int)
	walk = func(prefix string, s *openapi3.Schema, depth int) {
		if depth > 4 {
			return
		}
		for pname, p := range docChildren(s) {
			if p.Value != nil {
				f(prefix+pname, p.Value)
				walk(prefix+pname+".", p.Value, depth+1)
			}
		}
	}
	walk("", doc.Components.Schemas[name].Value, 0)
}

// integerBounds returns the bounds of an integer property, or of the
// integers of an array.
func integerBounds(s *openapi3.Schema) (lo, hi *float64) {
	if s.Type.Is("array") && s.Items != nil && s.Items.Value != nil {
		s = s.Items.Value
	}
	if !s.Type.Is("integer") {
		return nil, nil
	}
	return s.Min, s.Max
}

// TestValidationLimits is table-driven over the document: for every bounded
// integer of every create request, a value at each bound the document states
// is accepted (a dry run answers 200) and one past it is refused with a 422
// naming the field. A bounded integer the table has no row for fails the test.
func TestValidationLimits(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tr := b.buildTree(b.TokenA)
	pool2 := b.create(b.TokenA, "/v1/pools", map[string]any{"load_balancer_id": tr.LB, "protocol": "http", "name": "second"})
	doc := limitsDoc(t)

	with := func(base map[string]any, kv ...any) map[string]any {
		m := maps.Clone(base)
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i].(string)] = kv[i+1]
		}
		return m
	}
	listener := map[string]any{"load_balancer_id": tr.LB, "protocol": "http", "port": 8080}
	pool := map[string]any{"load_balancer_id": tr.LB, "protocol": "http"}
	member := map[string]any{"pool_id": tr.Pool, "address": "10.0.0.1", "port": 8080}
	rule := map[string]any{"listener_id": tr.Listener, "priority": 50, "action": map[string]any{"type": "deny"}}
	group := map[string]any{"name": "limits", "vip_range": "127.99.0.0/24"}
	obj := func(kv ...any) map[string]any { return with(map[string]any{}, kv...) }

	type row struct {
		path  string // POST path
		admin bool
		body  func(v any) any
		field string // the field the 422 names
	}
	rows := map[string]row{ // by schema and property path
		"ListenerCreate.port":             {"/v1/listeners", false, func(v any) any { return with(listener, "port", v) }, "port"},
		"ListenerCreate.connection_limit": {"/v1/listeners", false, func(v any) any { return with(listener, "connection_limit", v) }, "connection_limit"},
		"ListenerCreate.rate_limit.per_second": {"/v1/listeners", false, func(v any) any {
			return with(listener, "rate_limit", obj("type", "requests", "per_second", v))
		}, "rate_limit.per_second"},
		"ListenerCreate.hsts.max_age_seconds": {"/v1/listeners", false, func(v any) any {
			return with(listener, "protocol", "https", "port", 8443, "certificate_ids", []string{tr.Cert}, "hsts", obj("max_age_seconds", v))
		}, "hsts.max_age_seconds"},
		"PoolCreate.retries":          {"/v1/pools", false, func(v any) any { return with(pool, "retries", v) }, "retries"},
		"PoolCreate.drain_timeout_ms": {"/v1/pools", false, func(v any) any { return with(pool, "drain_timeout_ms", v) }, "drain_timeout_ms"},
		"PoolCreate.session_persistence.cookie_ttl_seconds": {"/v1/pools", false, func(v any) any {
			return with(pool, "session_persistence", obj("type", "cookie_insert", "cookie_ttl_seconds", v))
		}, "session_persistence.cookie_ttl_seconds"},
		"PoolCreate.health_monitor.interval_ms": {"/v1/pools", false, func(v any) any {
			return with(pool, "health_monitor", obj("type", "tcp", "interval_ms", v))
		}, "health_monitor.interval_ms"},
		"PoolCreate.health_monitor.timeout_ms": {"/v1/pools", false, func(v any) any {
			return with(pool, "health_monitor", obj("type", "tcp", "interval_ms", openapi.HealthMonitorIntervalMsMax, "timeout_ms", v))
		}, "health_monitor.timeout_ms"},
		"PoolCreate.health_monitor.rise": {"/v1/pools", false, func(v any) any {
			return with(pool, "health_monitor", obj("type", "tcp", "rise", v))
		}, "health_monitor.rise"},
		"PoolCreate.health_monitor.fall": {"/v1/pools", false, func(v any) any {
			return with(pool, "health_monitor", obj("type", "tcp", "fall", v))
		}, "health_monitor.fall"},
		"MemberCreate.port":            {"/v1/members", false, func(v any) any { return with(member, "port", v) }, "port"},
		"MemberCreate.weight":          {"/v1/members", false, func(v any) any { return with(member, "weight", v) }, "weight"},
		"MemberCreate.max_connections": {"/v1/members", false, func(v any) any { return with(member, "max_connections", v) }, "max_connections"},
		"RoutingRuleCreate.priority":   {"/v1/routing-rules", false, func(v any) any { return with(rule, "priority", v) }, "priority"},
		"RoutingRuleCreate.action.redirect.port": {"/v1/routing-rules", false, func(v any) any {
			return with(rule, "action", obj("type", "redirect", "redirect", obj("port", v)))
		}, "action.redirect.port"},
		"RoutingRuleCreate.action.fixed_response.status_code": {"/v1/routing-rules", false, func(v any) any {
			return with(rule, "action", obj("type", "fixed_response", "fixed_response", obj("status_code", v)))
		}, "action.fixed_response.status_code"},
		"RoutingRuleCreate.action.forward.pools.weight": {"/v1/routing-rules", false, func(v any) any {
			return with(rule, "action", obj("type", "forward", "forward", obj("pools", []any{obj("pool_id", tr.Pool, "weight", v), obj("pool_id", pool2, "weight", 1)})))
		}, "action.forward.pools[0].weight"},
		"NodeGroupCreate.reserved_ports": {"/v1/node-groups", true, func(v any) any { return with(group, "reserved_ports", []any{v}) }, "reserved_ports[0]"},
		"NodeGroupCreate.heartbeat_interval_ms": {"/v1/node-groups", true, func(v any) any {
			return with(group, "heartbeat_interval_ms", v, "down_timeout_ms", openapi.NodeGroupDownTimeoutMsMax)
		}, "heartbeat_interval_ms"},
		"NodeGroupCreate.down_timeout_ms": {"/v1/node-groups", true, func(v any) any {
			return with(group, "down_timeout_ms", v, "heartbeat_interval_ms", openapi.NodeGroupHeartbeatIntervalMsMin)
		}, "down_timeout_ms"},
		"NodeGroupCreate.down_node_cleanup_after_ms": {"/v1/node-groups", true, func(v any) any {
			return with(group, "down_node_cleanup_after_ms", v, "heartbeat_interval_ms", openapi.NodeGroupHeartbeatIntervalMsMin,
				"down_timeout_ms", openapi.NodeGroupDownTimeoutMsMin)
		}, "down_node_cleanup_after_ms"},
		"NodeGroupCreate.apply_grace_ms":          {"/v1/node-groups", true, func(v any) any { return with(group, "apply_grace_ms", v) }, "apply_grace_ms"},
		"NodeGroupCreate.vrrp_router_id_min":      {"/v1/node-groups", true, func(v any) any { return with(group, "vrrp_router_id_min", v) }, "vrrp_router_id_min"},
		"NodeGroupCreate.vrrp_router_id_max":      {"/v1/node-groups", true, func(v any) any { return with(group, "vrrp_router_id_max", v) }, "vrrp_router_id_max"},
		"NodeGroupCreate.vrrp_advert_interval_ms": {"/v1/node-groups", true, func(v any) any { return with(group, "vrrp_advert_interval_ms", v) }, "vrrp_advert_interval_ms"},
	}
	for _, k := range []string{"client_ms", "connect_ms", "server_ms", "http_request_ms", "http_keep_alive_ms", "tunnel_ms"} {
		rows["ListenerCreate.timeouts."+k] = row{"/v1/listeners", false, func(v any) any { return with(listener, "timeouts", obj(k, v)) }, "timeouts." + k}
	}
	for _, k := range []string{"load_balancers", "listeners", "pools", "members", "routing_rules", "certificates"} {
		rows["TenantCreate.quotas."+k] = row{"/v1/tenants", true, func(v any) any { return obj("name", "limits", "quotas", obj(k, v)) }, "quotas." + k}
	}

	checked := 0
	for _, schema := range []string{"ListenerCreate", "PoolCreate", "MemberCreate", "RoutingRuleCreate", "TenantCreate", "NodeGroupCreate"} {
		docWalk(doc, schema, func(path string, s *openapi3.Schema) {
			lo, hi := integerBounds(s)
			if lo == nil && hi == nil {
				return
			}
			name := schema + "." + path
			r, ok := rows[name]
			if !ok {
				t.Errorf("%s: the document bounds it, the table has no row for it", name)
				return
			}
			token := b.TokenA
			if r.admin {
				token = b.Admin
			}
			try := func(v int64, ok bool) {
				t.Helper()
				res := b.do(token, http.MethodPost, r.path+"?dry_run=true", r.body(v))
				switch {
				case ok && res.Status != http.StatusOK:
					t.Errorf("%s = %d (the document's bound): status %d, want 200: %s", name, v, res.Status, res.Raw)
				case !ok && (res.Status != http.StatusUnprocessableEntity || !hasField(res, r.field)):
					t.Errorf("%s = %d (past the document's bound): status %d fields %v, want 422 naming %s: %s", name, v, res.Status, res.Fields(), r.field, res.Raw)
				}
				checked++
			}
			if lo != nil {
				try(int64(*lo), true)
				try(int64(*lo)-1, false)
			}
			if hi != nil {
				try(int64(*hi), true)
				try(int64(*hi)+1, false)
			}
			delete(rows, name)
		})
	}
	for name := range rows {
		t.Errorf("%s: a row for a field the document does not bound", name)
	}
	t.Logf("%d requests at and past the document's bounds", checked)
}

// TestValidationDefaults is table-driven over the document: every `default`
// a create request states is what the API stores when the field is left out
// (read back from a dry run's answer).
func TestValidationDefaults(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tr := b.buildTree(b.TokenA)
	doc := limitsDoc(t)

	// The smallest valid create request of each schema, with the parent
	// objects the defaults live in.
	type req struct {
		path  string
		admin bool
		body  map[string]any
	}
	reqs := map[string][]req{
		"ListenerCreate": {
			{"/v1/listeners", false, map[string]any{"load_balancer_id": tr.LB, "protocol": "http", "port": 8080, "rate_limit": map[string]any{"per_second": 10}}},
			{"/v1/listeners", false, map[string]any{"load_balancer_id": tr.LB, "protocol": "https", "port": 8443, "certificate_ids": []string{tr.Cert}, "hsts": map[string]any{}}},
		},
		"PoolCreate":   {{"/v1/pools", false, map[string]any{"load_balancer_id": tr.LB, "protocol": "http", "health_monitor": map[string]any{"type": "http"}}}},
		"MemberCreate": {{"/v1/members", false, map[string]any{"pool_id": tr.Pool, "address": "10.0.0.1", "port": 8080}}},
		"RoutingRuleCreate": {
			{"/v1/routing-rules", false, map[string]any{"listener_id": tr.Listener, "priority": 50,
				"conditions": []any{map[string]any{"field": "path", "values": []string{"/x"}}},
				"action":     map[string]any{"type": "forward", "forward": map[string]any{"pools": []any{map[string]any{"pool_id": tr.Pool}}}}}},
			{"/v1/routing-rules", false, map[string]any{"listener_id": tr.Listener, "priority": 51, "action": map[string]any{"type": "redirect", "redirect": map[string]any{"host": "example.com"}}}},
			{"/v1/routing-rules", false, map[string]any{"listener_id": tr.Listener, "priority": 52, "action": map[string]any{"type": "fixed_response", "fixed_response": map[string]any{"status_code": 200}}}},
		},
		"TenantCreate":       {{"/v1/tenants", true, map[string]any{"name": "defaults"}}},
		"NodeGroupCreate":    {{"/v1/node-groups", true, map[string]any{"name": "defaults", "vip_range": "127.99.0.0/24"}}},
		"LoadBalancerCreate": {{"/v1/load-balancers", false, map[string]any{}}},
	}
	checked := 0
	for _, schema := range slices.Sorted(maps.Keys(reqs)) {
		var answers []map[string]any
		for _, r := range reqs[schema] {
			token := b.TokenA
			if r.admin {
				token = b.Admin
			}
			answers = append(answers, b.must(http.StatusOK, token, http.MethodPost, r.path+"?dry_run=true", r.body))
		}
		docWalk(doc, schema, func(path string, s *openapi3.Schema) {
			if s.Default == nil {
				return
			}
			want, _ := json.Marshal(s.Default)
			for _, a := range answers {
				if got, ok := lookup(a, path); ok {
					checked++
					if g, _ := json.Marshal(got); string(g) != string(want) {
						t.Errorf("%s.%s: the API stored %s, the document's default is %s", schema, path, g, want)
					}
					return
				}
			}
			t.Errorf("%s.%s: no answer shows the field (default %s)", schema, path, want)
		})
	}
	if checked < 30 {
		t.Errorf("checked only %d defaults", checked)
	}
	t.Logf("checked %d defaults", checked)
}

// lookup reads a dotted path from a decoded JSON object, taking the first
// element of arrays on the way.
func lookup(v any, path string) (any, bool) {
	for _, k := range strings.Split(path, ".") {
		if a, ok := v.([]any); ok {
			if len(a) == 0 {
				return nil, false
			}
			v = a[0]
		}
		m, ok := v.(map[string]any)
		if !ok {
			return nil, false
		}
		if v, ok = m[k]; !ok || v == nil {
			return nil, false
		}
	}
	return v, true
}
