package api_test

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
)

// Failure containment as the API sees it: reserved ports, node errors,
// rejected objects, nodes not serving a load balancer, and the operating
// status rollup, all driven through the real API with a node token.

// register registers (or heartbeats) node name in the default group.
func (b *bundle) register(name string) {
	b.t.Helper()
	b.must(http.StatusOK, b.Node, http.MethodPut, "/v1/nodes/"+name, map[string]any{"node_group_id": b.GroupID, "agent_version": "1.2.3-test"})
}

// revision is the newest revision any write took.
func (b *bundle) revision() int64 {
	b.t.Helper()
	rev, err := b.Store.CurrentRevision(context.Background())
	if err != nil {
		b.t.Fatal(err)
	}
	return rev
}

// report posts a node report: an ack of revision with the extra fields given.
func (b *bundle) report(node string, revision int64, fields map[string]any) {
	b.t.Helper()
	body := map[string]any{"revision": revision, "status": "ack"}
	for k, v := range fields {
		body[k] = v
	}
	b.must(http.StatusNoContent, b.Node, http.MethodPost, "/v1/nodes/"+node+"/reports", body)
}

// field reads a top-level string field of the object at path.
func (b *bundle) field(token, path, name string) string {
	b.t.Helper()
	v, _ := b.must(http.StatusOK, token, http.MethodGet, path, nil)[name].(string)
	return v
}

// statusTree reads a load balancer's status tree.
func (b *bundle) statusTree(token, lbID string) map[string]any {
	b.t.Helper()
	return b.must(http.StatusOK, token, http.MethodGet, "/v1/load-balancers/"+lbID+"/status", nil)
}

// treeNodes returns the nodes listed by a status tree, by name.
func treeNodes(tree map[string]any) map[string]map[string]any {
	out := map[string]map[string]any{}
	list, _ := tree["nodes"].([]any)
	for _, n := range list {
		m := n.(map[string]any)
		out[m["name"].(string)] = m
	}
	return out
}

func ints(v any) []int {
	var out []int
	list, _ := v.([]any)
	for _, x := range list {
		out = append(out, int(x.(float64)))
	}
	return out
}

func TestReservedPorts(t *testing.T) {
	b := setup(t)
	group := "/v1/node-groups/" + b.GroupID
	g := b.must(http.StatusOK, b.Admin, http.MethodGet, group, nil)
	if got := ints(g["effective_reserved_ports"]); !slices.Equal(got, []int{22, 8404, 8405, 8406}) {
		t.Fatalf("effective_reserved_ports = %v, want [22 8404 8405 8406]", got)
	}
	if got := ints(g["reserved_ports"]); len(got) != 0 {
		t.Fatalf("reserved_ports = %v, want []", got)
	}

	// The operator's list: ports, each once.
	for _, bad := range [][]int{{9000, 9000}, {0}, {65536}} {
		res := b.do(b.Admin, http.MethodPatch, group, map[string]any{"reserved_ports": bad})
		if res.Status != http.StatusUnprocessableEntity && res.Status != http.StatusBadRequest {
			t.Fatalf("reserved_ports %v: status %d: %s", bad, res.Status, res.Raw)
		}
		if !slices.ContainsFunc(res.Fields(), func(f string) bool { return strings.HasPrefix(f, "reserved_ports") }) {
			t.Fatalf("reserved_ports %v: fields %v, want reserved_ports…: %s", bad, res.Fields(), res.Raw)
		}
	}
	g = b.must(http.StatusOK, b.Admin, http.MethodPatch, group, map[string]any{"reserved_ports": []int{9100, 9000}})
	if got := ints(g["reserved_ports"]); !slices.Equal(got, []int{9000, 9100}) {
		t.Fatalf("reserved_ports = %v, want [9000 9100]", got)
	}
	if got := ints(g["effective_reserved_ports"]); !slices.Equal(got, []int{22, 8404, 8405, 8406, 9000, 9100}) {
		t.Fatalf("effective_reserved_ports = %v", got)
	}

	// Listeners on a reserved port: 422 naming port, dry runs included.
	lb := b.create(b.TokenA, "/v1/load-balancers", map[string]any{"name": "web"})
	for _, port := range []int{22, 8404, 8405, 8406, 9000, 9100} {
		for _, q := range []string{"", "?dry_run=true"} {
			res := b.do(b.TokenA, http.MethodPost, "/v1/listeners"+q, map[string]any{"load_balancer_id": lb, "protocol": "tcp", "port": port})
			if res.Status != http.StatusUnprocessableEntity {
				t.Fatalf("listener on %d%s: status %d, want 422: %s", port, q, res.Status, res.Raw)
			}
			if msg, ok := res.FieldMessage("port"); !ok || !strings.Contains(msg, "reserved") {
				t.Fatalf("listener on %d%s: no reserved error on port: %s", port, q, res.Raw)
			}
		}
	}
	lsn := b.create(b.TokenA, "/v1/listeners", map[string]any{"load_balancer_id": lb, "protocol": "tcp", "port": 9200})
	res := b.do(b.TokenA, http.MethodPatch, "/v1/listeners/"+lsn, map[string]any{"port": 9000})
	if _, ok := res.FieldMessage("port"); res.Status != http.StatusUnprocessableEntity || !ok {
		t.Fatalf("moving a listener to a reserved port: status %d: %s", res.Status, res.Raw)
	}
	b.must(http.StatusOK, b.TokenA, http.MethodPatch, "/v1/listeners/"+lsn, map[string]any{"port": 9201})

	// A listener that sits on a port reserved after it was created (as after
	// an upgrade reserving the agent's ports) can still change otherwise.
	legacy := b.create(b.TokenA, "/v1/listeners", map[string]any{"load_balancer_id": lb, "protocol": "tcp", "port": 9300})
	if _, err := b.Store.PoolForTests().Exec(context.Background(), "UPDATE listeners SET port = 8404 WHERE id = $1", legacy); err != nil {
		t.Fatal(err)
	}
	b.must(http.StatusOK, b.TokenA, http.MethodPatch, "/v1/listeners/"+legacy, map[string]any{"description": "still here"})
	if res := b.do(b.TokenA, http.MethodPatch, "/v1/listeners/"+legacy, map[string]any{"port": 8405}); res.Status != http.StatusUnprocessableEntity {
		t.Fatalf("moving to another reserved port: status %d: %s", res.Status, res.Raw)
	}
	b.must(http.StatusAccepted, b.TokenA, http.MethodDelete, "/v1/listeners/"+legacy, nil)

	// Reserving a port a listener uses: 409 naming the listener.
	res = b.do(b.Admin, http.MethodPatch, group, map[string]any{"reserved_ports": []int{9000, 9201}})
	if res.Status != http.StatusConflict {
		t.Fatalf("reserving a used port: status %d, want 409: %s", res.Status, res.Raw)
	}
	if msg, ok := res.FieldMessage("reserved_ports"); !ok || !strings.Contains(msg, lsn) {
		t.Fatalf("reserving a used port: the conflict does not name %s: %s", lsn, res.Raw)
	}
	if got := ints(b.must(http.StatusOK, b.Admin, http.MethodGet, group, nil)["reserved_ports"]); !slices.Equal(got, []int{9000, 9100}) {
		t.Fatalf("a refused update changed reserved_ports to %v", got)
	}
	// Once the listener is gone the port can be reserved.
	b.must(http.StatusAccepted, b.TokenA, http.MethodDelete, "/v1/listeners/"+lsn, nil)
	res = b.do(b.Admin, http.MethodPatch, group, map[string]any{"reserved_ports": []int{9000, 9201}})
	// A deleted listener still pending_delete on nodes does not hold the port.
	if res.Status != http.StatusOK {
		t.Fatalf("reserving a freed port: status %d: %s", res.Status, res.Raw)
	}

	// Create takes the list too; tenants read the effective set.
	ng := b.must(http.StatusCreated, b.Admin, http.MethodPost, "/v1/node-groups", map[string]any{"name": "edge", "vip_range": "127.78.0.0/16", "reserved_ports": []int{7000}})
	if got := ints(ng["effective_reserved_ports"]); !slices.Equal(got, []int{22, 7000, 8404, 8405, 8406}) {
		t.Fatalf("created group: effective_reserved_ports = %v", got)
	}
	if got := ints(b.must(http.StatusOK, b.TokenA, http.MethodGet, group, nil)["effective_reserved_ports"]); !slices.Contains(got, 9201) {
		t.Fatalf("tenant view: effective_reserved_ports = %v", got)
	}
}

func TestNodeErrors(t *testing.T) {
	b := setup(t)
	tr := b.buildTree(b.TokenA)
	b.register("n1")
	rev := b.revision()
	b.report("n1", rev, nil)
	node := b.must(http.StatusOK, b.Admin, http.MethodGet, "/v1/nodes/n1", nil)
	if node["status"] != "online" || node["agent_version"] != "1.2.3-test" {
		t.Fatalf("node after a clean report: %v", node)
	}
	if got := b.field(b.TokenA, "/v1/load-balancers/"+tr.LB, "provisioning_status"); got != "active" {
		t.Fatalf("LB provisioning_status = %s, want active", got)
	}

	b.report("n1", rev, map[string]any{"node_errors": []any{map[string]any{"kind": "disk", "message": "state dir is read-only"}}})
	node = b.must(http.StatusOK, b.Admin, http.MethodGet, "/v1/nodes/n1", nil)
	errs, _ := node["errors"].([]any)
	if node["status"] != "error" || len(errs) != 1 {
		t.Fatalf("node with a disk error: %v", node)
	}
	first := errs[0].(map[string]any)
	if first["kind"] != "disk" || first["message"] != "state dir is read-only" || first["since"] == nil {
		t.Fatalf("node error: %v", first)
	}
	since := first["since"]

	// Same kind again, and a new one: since kept for the old kind.
	b.report("n1", rev, map[string]any{"node_errors": []any{
		map[string]any{"kind": "disk", "message": "state dir is still read-only"},
		map[string]any{"kind": "bind", "message": "cannot bind 127.77.0.1:39777"}}})
	// An ack without node_errors leaves them.
	b.report("n1", rev, nil)
	items := b.listAll(b.Admin, "/v1/nodes?node_group_id="+b.GroupID)
	if len(items) != 1 || items[0]["status"] != "error" {
		t.Fatalf("node list: %v", items)
	}
	errs, _ = items[0]["errors"].([]any)
	if len(errs) != 2 {
		t.Fatalf("node errors after the second report: %v", errs)
	}
	for _, e := range errs {
		m := e.(map[string]any)
		if m["kind"] == "disk" && (m["since"] != since || m["message"] != "state dir is still read-only") {
			t.Fatalf("disk error: since %v (want %v), message %v", m["since"], since, m["message"])
		}
	}

	// The LB names the node and reads degraded; the tenant sees the kinds,
	// not the messages (they may name another tenant's VIP).
	tree := b.statusTree(b.TokenA, tr.LB)
	n1, ok := treeNodes(tree)["n1"]
	if !ok || n1["status"] != "error" {
		t.Fatalf("status tree nodes: %v", tree["nodes"])
	}
	if msg, _ := n1["status_message"].(string); !strings.Contains(msg, "disk") || strings.Contains(msg, "127.77.0.1") {
		t.Fatalf("status tree node message: %q", msg)
	}
	if lb := tree["load_balancer"].(map[string]any); lb["operating_status"] != "degraded" {
		t.Fatalf("LB with a node error: operating_status %v, want degraded", lb["operating_status"])
	}
	if got := b.field(b.TokenA, "/v1/load-balancers/"+tr.LB, "operating_status"); got != "degraded" {
		t.Fatalf("GET LB with a node error: operating_status %s, want degraded", got)
	}

	// An empty list resolves them.
	b.report("n1", rev, map[string]any{"node_errors": []any{}})
	node = b.must(http.StatusOK, b.Admin, http.MethodGet, "/v1/nodes/n1", nil)
	if errs, _ := node["errors"].([]any); node["status"] != "online" || len(errs) != 0 {
		t.Fatalf("node after its errors resolved: %v", node)
	}
	if nodes := treeNodes(b.statusTree(b.TokenA, tr.LB)); len(nodes) != 0 {
		t.Fatalf("status tree still lists %v", nodes)
	}
	if got := b.field(b.TokenA, "/v1/load-balancers/"+tr.LB, "operating_status"); got == "degraded" {
		t.Fatalf("LB still degraded after the node recovered")
	}
}

func TestRejectedObjectStatus(t *testing.T) {
	b := setup(t)
	tr := b.buildTree(b.TokenA)
	trB := b.buildTree(b.TokenB)
	b.register("n1")
	b.report("n1", b.revision(), map[string]any{"load_balancer_errors": []any{}})

	// The node rejects a changed listener: it goes error with the field
	// and message, the LB (serving its last good version) reads degraded.
	b.must(http.StatusOK, b.TokenA, http.MethodPatch, "/v1/listeners/"+tr.Listener, map[string]any{"description": "changed"})
	rev := b.revision()
	b.report("n1", rev, map[string]any{"load_balancer_errors": []any{
		map[string]any{"load_balancer_id": tr.LB, "object_id": tr.Listener, "field": "port", "message": "cannot bind socket [127.77.0.1:80]"}}})
	l := b.must(http.StatusOK, b.TokenA, http.MethodGet, "/v1/listeners/"+tr.Listener, nil)
	if l["provisioning_status"] != "error" || l["status_message"] != "port: cannot bind socket [127.77.0.1:80]" {
		t.Fatalf("rejected listener: %s / %v", l["provisioning_status"], l["status_message"])
	}
	lb := b.must(http.StatusOK, b.TokenA, http.MethodGet, "/v1/load-balancers/"+tr.LB, nil)
	if lb["operating_status"] != "degraded" || lb["provisioning_status"] == "error" {
		t.Fatalf("LB of a rejected listener: %s / %s", lb["provisioning_status"], lb["operating_status"])
	}
	tree := b.statusTree(b.TokenA, tr.LB)
	if n1 := treeNodes(tree)["n1"]; n1 == nil || n1["status"] != "error" || !strings.Contains(n1["status_message"].(string), "cannot bind") {
		t.Fatalf("status tree nodes: %v", tree["nodes"])
	}
	// The other tenant's LB is untouched, and its tree does not show A's error.
	if got := b.field(b.TokenB, "/v1/load-balancers/"+trB.LB, "provisioning_status"); got != "active" {
		t.Fatalf("tenant B's LB: %s", got)
	}
	if nodes := treeNodes(b.statusTree(b.TokenB, trB.LB)); len(nodes) != 0 {
		t.Fatalf("tenant B's status tree lists %v", nodes)
	}
	if res := b.do(b.TokenB, http.MethodGet, "/v1/load-balancers/"+tr.LB+"/status", nil); res.Status != http.StatusNotFound {
		t.Fatalf("cross-tenant status tree: %d", res.Status)
	}

	// A later report without it clears it.
	b.report("n1", rev, map[string]any{"load_balancer_errors": []any{}})
	l = b.must(http.StatusOK, b.TokenA, http.MethodGet, "/v1/listeners/"+tr.Listener, nil)
	if l["provisioning_status"] != "active" || l["status_message"] != nil {
		t.Fatalf("listener after the error cleared: %s / %v", l["provisioning_status"], l["status_message"])
	}
	if got := b.field(b.TokenA, "/v1/load-balancers/"+tr.LB, "operating_status"); got == "degraded" || got == "error" {
		t.Fatalf("LB after the error cleared: %s", got)
	}

	// A certificate (tenant-scoped) maps to the listeners using it.
	b.report("n1", rev, map[string]any{"load_balancer_errors": []any{
		map[string]any{"load_balancer_id": tr.LB, "object_id": tr.Cert, "message": "unable to load SSL certificate"}}})
	l = b.must(http.StatusOK, b.TokenA, http.MethodGet, "/v1/listeners/"+tr.HTTPSListener, nil)
	if l["provisioning_status"] != "error" || !strings.Contains(fmt.Sprint(l["status_message"]), "unable to load SSL certificate") {
		t.Fatalf("listener of a rejected certificate: %s / %v", l["provisioning_status"], l["status_message"])
	}
	if got := b.field(b.TokenA, "/v1/listeners/"+tr.Listener, "provisioning_status"); got != "active" {
		t.Fatalf("listener not using the certificate: %s", got)
	}

	// Without an object the LB itself is error; a pending child goes along.
	b.must(http.StatusOK, b.TokenA, http.MethodPatch, "/v1/pools/"+tr.Pool, map[string]any{"description": "changed"})
	rev = b.revision()
	b.report("n1", rev, map[string]any{"load_balancer_errors": []any{
		map[string]any{"load_balancer_id": tr.LB, "message": "proxy 'lb_x' has no bind"}}})
	lb = b.must(http.StatusOK, b.TokenA, http.MethodGet, "/v1/load-balancers/"+tr.LB, nil)
	if lb["provisioning_status"] != "error" || lb["operating_status"] != "error" || lb["status_message"] != "proxy 'lb_x' has no bind" {
		t.Fatalf("rejected LB: %v", lb)
	}
	if got := b.field(b.TokenA, "/v1/pools/"+tr.Pool, "provisioning_status"); got != "error" {
		t.Fatalf("changed pool of a rejected LB: %s", got)
	}
	if got := b.field(b.TokenA, "/v1/listeners/"+tr.HTTPSListener, "provisioning_status"); got != "error" {
		t.Fatalf("https listener of a rejected LB: %s", got)
	}
	// Absent load_balancer_errors (a nack) leave them.
	b.must(http.StatusNoContent, b.Node, http.MethodPost, "/v1/nodes/n1/reports", map[string]any{"revision": rev, "status": "nack", "message": "x"})
	if got := b.field(b.TokenA, "/v1/load-balancers/"+tr.LB, "provisioning_status"); got != "error" {
		t.Fatalf("LB after a nack: %s", got)
	}
	b.report("n1", rev, map[string]any{"load_balancer_errors": []any{}})
	for _, p := range tr.paths() {
		if got := b.field(b.TokenA, p, "provisioning_status"); got != "active" && !strings.HasPrefix(p, "/v1/certificates/") {
			t.Fatalf("%s after every error cleared: %s", p, got)
		}
	}
}

func TestLaggingNodeStatus(t *testing.T) {
	b := setup(t)
	tr := b.buildTree(b.TokenA)
	b.register("n1")
	b.register("n2")
	old := b.revision()
	b.report("n1", old, nil)
	b.report("n2", old, nil)
	if nodes := treeNodes(b.statusTree(b.TokenA, tr.LB)); len(nodes) != 0 {
		t.Fatalf("every node applied, the tree lists %v", nodes)
	}

	// n1 applies a change, n2 does not.
	b.must(http.StatusOK, b.TokenA, http.MethodPatch, "/v1/members/"+tr.Member, map[string]any{"weight": 7})
	rev := b.revision()
	b.report("n1", rev, nil)
	b.report("n2", old, nil)
	if got := b.field(b.TokenA, "/v1/members/"+tr.Member, "provisioning_status"); got != "pending_update" {
		t.Fatalf("member n2 has not applied: %s, want pending_update", got)
	}
	// Within the grace after a change a node still applying is not listed.
	if nodes := treeNodes(b.statusTree(b.TokenA, tr.LB)); len(nodes) != 0 {
		t.Fatalf("a node still within the grace is listed: %v", nodes)
	}
	// Past it, n2 is named and the LB reads degraded.
	if _, err := b.Store.PoolForTests().Exec(context.Background(), "UPDATE revisions SET created_at = now() - interval '1 minute' WHERE revision = $1", rev); err != nil {
		t.Fatal(err)
	}
	b.report("n1", rev, nil)
	tree := b.statusTree(b.TokenA, tr.LB)
	nodes := treeNodes(tree)
	if len(nodes) != 1 || nodes["n2"] == nil || nodes["n2"]["status"] != "applying" {
		t.Fatalf("tree nodes: %v", tree["nodes"])
	}
	if lb := tree["load_balancer"].(map[string]any); lb["operating_status"] != "degraded" {
		t.Fatalf("LB with a node behind: %v", lb)
	}
	if got := b.field(b.TokenA, "/v1/load-balancers/"+tr.LB, "operating_status"); got != "degraded" {
		t.Fatalf("GET LB with a node behind: %s", got)
	}
	if got := b.field(b.TokenA, "/v1/members/"+tr.Member, "provisioning_status"); got == "active" {
		t.Fatalf("member active over a node that did not apply it")
	}

	// n2 catches up.
	b.report("n2", rev, nil)
	if nodes := treeNodes(b.statusTree(b.TokenA, tr.LB)); len(nodes) != 0 {
		t.Fatalf("tree still lists %v", nodes)
	}
	if got := b.field(b.TokenA, "/v1/members/"+tr.Member, "provisioning_status"); got != "active" {
		t.Fatalf("member after every node applied: %s", got)
	}
	if got := b.field(b.TokenA, "/v1/load-balancers/"+tr.LB, "operating_status"); got == "degraded" {
		t.Fatalf("LB still degraded")
	}

	// A node silent past its group's down-timeout is named down.
	if _, err := b.Store.PoolForTests().Exec(context.Background(), "UPDATE nodes SET last_seen_at = now() - interval '3 minutes' WHERE name = 'n2'"); err != nil {
		t.Fatal(err)
	}
	tree = b.statusTree(b.TokenA, tr.LB)
	if n2 := treeNodes(tree)["n2"]; n2 == nil || n2["status"] != "down" {
		t.Fatalf("tree nodes with n2 silent: %v", tree["nodes"])
	}
	if lb := tree["load_balancer"].(map[string]any); lb["operating_status"] != "degraded" {
		t.Fatalf("LB with a node offline: %v", lb["operating_status"])
	}
}

func TestStatusRollup(t *testing.T) {
	b := setup(t)
	tr := b.buildTree(b.TokenA)
	m2 := b.create(b.TokenA, "/v1/members", map[string]any{"pool_id": tr.Pool, "address": "127.0.0.1", "port": 9002})
	b.register("n1")
	rev := b.revision()
	report := func(s1, s2 string) {
		t.Helper()
		b.report("n1", rev, map[string]any{"members": []any{
			map[string]any{"id": tr.Member, "status": s1}, map[string]any{"id": m2, "status": s2}}})
	}
	want := func(pool, listener, lb string) {
		t.Helper()
		tree := b.statusTree(b.TokenA, tr.LB)
		p := tree["pools"].([]any)[0].(map[string]any)["operating_status"]
		var ls []any
		for _, l := range tree["listeners"].([]any) {
			ls = append(ls, l.(map[string]any)["operating_status"])
		}
		got := tree["load_balancer"].(map[string]any)["operating_status"]
		if p != pool || got != lb || ls[0] != listener || ls[1] != listener {
			t.Fatalf("pool %v listeners %v LB %v, want pool %s listeners %s LB %s", p, ls, got, pool, listener, lb)
		}
		if g := b.field(b.TokenA, "/v1/load-balancers/"+tr.LB, "operating_status"); g != lb {
			t.Fatalf("GET LB: operating_status %s, want %s", g, lb)
		}
	}
	report("online", "online")
	want("online", "online", "online")
	// One member down: the pool and its listeners degraded, the LB degraded,
	// never offline while it serves.
	report("online", "offline")
	want("degraded", "degraded", "degraded")
	report("offline", "offline")
	want("offline", "offline", "offline")
	report("draining", "offline")
	want("degraded", "degraded", "degraded")
	report("online", "online")
	want("online", "online", "online")
}
