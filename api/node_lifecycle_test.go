package api_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// The node lifecycle through the real API: per-group timing, node states,
// cordon/drain/uncordon, deregistration, node-bound tokens and the cleanup
// of down nodes.

// silence makes a node's last report ago seconds old.
func (b *bundle) silence(node string, ago float64) {
	b.t.Helper()
	if _, err := b.Store.PoolForTests().Exec(context.Background(), "UPDATE nodes SET last_seen_at = now() - make_interval(secs => $2) WHERE name = $1", node, ago); err != nil {
		b.t.Fatal(err)
	}
}

// nodeStatus reads a node's status through the admin API.
func (b *bundle) nodeStatus(node string) string {
	b.t.Helper()
	return b.field(b.Admin, "/v1/nodes/"+node, "status")
}

// twoNodes registers n1 and n2 in the default group, both serving the current revision.
func (b *bundle) twoNodes() {
	b.t.Helper()
	b.register("n1")
	b.register("n2")
	rev := b.revision()
	b.report("n1", rev, nil)
	b.report("n2", rev, nil)
}

func TestNodeLifecycleGroupSettings(t *testing.T) {
	b := setup(t)
	g := b.must(http.StatusOK, b.Admin, http.MethodGet, "/v1/node-groups/"+b.GroupID, nil)
	for field, want := range map[string]float64{"heartbeat_interval_ms": 2000, "down_timeout_ms": 10000,
		"down_node_cleanup_after_ms": 86400000, "apply_grace_ms": 30000} {
		if g[field] != want {
			t.Errorf("default %s = %v, want %v", field, g[field], want)
		}
	}
	created := b.must(http.StatusCreated, b.Admin, http.MethodPost, "/v1/node-groups", map[string]any{"name": "fast", "vip_range": "127.78.0.0/16",
		"heartbeat_interval_ms": 500, "down_timeout_ms": 2000, "down_node_cleanup_after_ms": 60000, "apply_grace_ms": 5000})
	if created["heartbeat_interval_ms"] != 500.0 || created["down_timeout_ms"] != 2000.0 || created["apply_grace_ms"] != 5000.0 ||
		created["down_node_cleanup_after_ms"] != 60000.0 {
		t.Fatalf("created group: %v", created)
	}
	// A down-timeout shorter than two heartbeats would flap: 422 naming it.
	res := b.do(b.Admin, http.MethodPatch, "/v1/node-groups/"+created["id"].(string), map[string]any{"down_timeout_ms": 900})
	if _, ok := res.FieldMessage("down_timeout_ms"); res.Status != http.StatusUnprocessableEntity || !ok {
		t.Fatalf("down_timeout_ms below two heartbeats: %d %s", res.Status, res.Raw)
	}
	res = b.do(b.Admin, http.MethodPatch, "/v1/node-groups/"+created["id"].(string), map[string]any{"heartbeat_interval_ms": 10})
	if _, ok := res.FieldMessage("heartbeat_interval_ms"); res.Status != http.StatusUnprocessableEntity || !ok {
		t.Fatalf("heartbeat_interval_ms 10: %d %s", res.Status, res.Raw)
	}
	up := b.must(http.StatusOK, b.Admin, http.MethodPatch, "/v1/node-groups/"+b.GroupID, map[string]any{"heartbeat_interval_ms": 250, "down_timeout_ms": 1000})
	if up["heartbeat_interval_ms"] != 250.0 || up["down_timeout_ms"] != 1000.0 {
		t.Fatalf("updated group: %v", up)
	}
	// The agent learns the interval from registration and its snapshot.
	reg := b.must(http.StatusOK, b.Node, http.MethodPut, "/v1/nodes/n1", map[string]any{"node_group_id": b.GroupID, "agent_version": "9.9.9"})
	if reg["heartbeat_interval_ms"] != 250.0 || reg["admin_state"] != "in_service" {
		t.Fatalf("registration response: %v", reg)
	}
	snap := b.must(http.StatusOK, b.Node, http.MethodGet, "/v1/nodes/n1/snapshot?after=0&wait=0s", nil)
	node, _ := snap["node"].(map[string]any)
	if snap["heartbeat_interval_ms"] != 250.0 || node == nil || node["admin_state"] != "in_service" || node["name"] != "n1" {
		t.Fatalf("snapshot: heartbeat %v node %v", snap["heartbeat_interval_ms"], snap["node"])
	}
	// Tenants read groups (to pick one) but never change them.
	b.must(http.StatusForbidden, b.TokenA, http.MethodPatch, "/v1/node-groups/"+b.GroupID, map[string]any{"down_timeout_ms": 5000})
}

func TestNodeLifecycleDownNodeDoesNotBlockActive(t *testing.T) {
	b := setup(t)
	tr := b.buildTree(b.TokenA)
	b.twoNodes()
	if got := b.nodeStatus("n2"); got != "online" {
		t.Fatalf("n2: %s", got)
	}

	// n2 stops reporting: while it is within the down-timeout a change waits for it.
	b.must(http.StatusOK, b.TokenA, http.MethodPatch, "/v1/members/"+tr.Member, map[string]any{"weight": 3})
	rev := b.revision()
	b.report("n1", rev, nil)
	if got := b.field(b.TokenA, "/v1/members/"+tr.Member, "provisioning_status"); got != "pending_update" {
		t.Fatalf("member with n2 within the down-timeout: %s", got)
	}
	// Past the group's down-timeout (10 s by default) n2 is down and no longer counts.
	b.silence("n2", 11)
	if got := b.nodeStatus("n2"); got != "down" {
		t.Fatalf("n2 silent 11 s: %s", got)
	}
	b.report("n1", rev, nil)
	if got := b.field(b.TokenA, "/v1/members/"+tr.Member, "provisioning_status"); got != "active" {
		t.Fatalf("member with n2 down: %s, want active", got)
	}
	tree := b.statusTree(b.TokenA, tr.LB)
	n2 := treeNodes(tree)["n2"]
	if n2 == nil || n2["status"] != "down" || !strings.Contains(fmt.Sprint(n2["status_message"]), "no heartbeat") {
		t.Fatalf("tree nodes with n2 down: %v", tree["nodes"])
	}
	if got := b.field(b.TokenA, "/v1/load-balancers/"+tr.LB, "operating_status"); got != "degraded" {
		t.Fatalf("LB with n2 down: %s", got)
	}
	// A delete finishes without n2 too.
	b.must(http.StatusAccepted, b.TokenA, http.MethodDelete, "/v1/members/"+tr.Member, nil)
	b.report("n1", b.revision(), nil)
	b.must(http.StatusNotFound, b.TokenA, http.MethodGet, "/v1/members/"+tr.Member, nil)

	// n2 comes back: it counts again, and the LB no longer names it once it applied.
	b.report("n2", b.revision(), nil)
	if got := b.nodeStatus("n2"); got != "online" {
		t.Fatalf("n2 back: %s", got)
	}
	if nodes := treeNodes(b.statusTree(b.TokenA, tr.LB)); len(nodes) != 0 {
		t.Fatalf("tree lists %v after n2 came back", nodes)
	}

	// A shorter down-timeout of the group applies at once.
	b.must(http.StatusOK, b.Admin, http.MethodPatch, "/v1/node-groups/"+b.GroupID, map[string]any{"heartbeat_interval_ms": 500, "down_timeout_ms": 2000})
	b.silence("n2", 3)
	if got := b.nodeStatus("n2"); got != "down" {
		t.Fatalf("n2 silent 3 s with a 2 s down-timeout: %s", got)
	}
}

func TestCordonDrainUncordon(t *testing.T) {
	b := setup(t)
	tr := b.buildTree(b.TokenA)
	b.twoNodes()
	rev0 := b.revision()

	// Cordon: n2 reads cordoned, stops counting, and is named in the tree.
	n := b.must(http.StatusOK, b.Admin, http.MethodPost, "/v1/nodes/n2/cordon", nil)
	if n["status"] != "cordoned" || n["admin_state"] != "cordoned" {
		t.Fatalf("cordoned node: %v", n)
	}
	version := n["version"]
	// Idempotent: cordoning again changes nothing.
	if again := b.must(http.StatusOK, b.Admin, http.MethodPost, "/v1/nodes/n2/cordon", nil); again["version"] != version {
		t.Fatalf("second cordon changed the version: %v → %v", version, again["version"])
	}
	// The agent learns it from a new snapshot at once.
	snap := b.must(http.StatusOK, b.Node, http.MethodGet, fmt.Sprintf("/v1/nodes/n2/snapshot?after=%d&wait=0s", rev0), nil)
	if node, _ := snap["node"].(map[string]any); node == nil || node["admin_state"] != "cordoned" {
		t.Fatalf("snapshot of a cordoned node: %v", snap["node"])
	}
	// n1's snapshot says in_service.
	snap1 := b.must(http.StatusOK, b.Node, http.MethodGet, "/v1/nodes/n1/snapshot?after=0&wait=0s", nil)
	if node, _ := snap1["node"].(map[string]any); node == nil || node["admin_state"] != "in_service" {
		t.Fatalf("snapshot of n1: %v", snap1["node"])
	}

	b.must(http.StatusOK, b.TokenA, http.MethodPatch, "/v1/members/"+tr.Member, map[string]any{"weight": 4})
	rev := b.revision()
	b.report("n1", rev, nil)
	b.report("n2", rev0, nil) // a cordoned node keeps reporting, but is not waited for
	if got := b.field(b.TokenA, "/v1/members/"+tr.Member, "provisioning_status"); got != "active" {
		t.Fatalf("member with n2 cordoned: %s, want active", got)
	}
	tree := b.statusTree(b.TokenA, tr.LB)
	if n2 := treeNodes(tree)["n2"]; n2 == nil || n2["status"] != "cordoned" {
		t.Fatalf("tree with n2 cordoned: %v", tree["nodes"])
	}
	if got := b.field(b.TokenA, "/v1/load-balancers/"+tr.LB, "operating_status"); got != "degraded" {
		t.Fatalf("LB with n2 cordoned: %s", got)
	}

	// Drain: same counting, its own state.
	n = b.must(http.StatusOK, b.Admin, http.MethodPost, "/v1/nodes/n2/drain", nil)
	if n["status"] != "draining" || n["admin_state"] != "draining" {
		t.Fatalf("draining node: %v", n)
	}
	snap = b.must(http.StatusOK, b.Node, http.MethodGet, fmt.Sprintf("/v1/nodes/n2/snapshot?after=%d&wait=0s", rev), nil)
	if node, _ := snap["node"].(map[string]any); node == nil || node["admin_state"] != "draining" {
		t.Fatalf("snapshot of a draining node: %v", snap["node"])
	}
	if n2 := treeNodes(b.statusTree(b.TokenA, tr.LB))["n2"]; n2 == nil || n2["status"] != "draining" {
		t.Fatalf("tree with n2 draining: %v", n2)
	}
	b.must(http.StatusOK, b.TokenA, http.MethodPatch, "/v1/members/"+tr.Member, map[string]any{"weight": 5})
	b.report("n1", b.revision(), nil)
	if got := b.field(b.TokenA, "/v1/members/"+tr.Member, "provisioning_status"); got != "active" {
		t.Fatalf("member with n2 draining: %s, want active", got)
	}

	// If-Match guards the transitions; heartbeats do not change the ETag.
	res := b.do(b.Admin, http.MethodPost, "/v1/nodes/n2/uncordon", nil, "If-Match", `"1"`)
	if res.Status != http.StatusPreconditionFailed {
		t.Fatalf("uncordon with a stale If-Match: %d %s", res.Status, res.Raw)
	}
	tag := b.do(b.Admin, http.MethodGet, "/v1/nodes/n2", nil).Header.Get("ETag")
	b.register("n2")
	b.report("n2", rev0, nil)
	if got := b.do(b.Admin, http.MethodGet, "/v1/nodes/n2", nil).Header.Get("ETag"); got != tag || tag == "" {
		t.Fatalf("ETag %q changed to %q by heartbeats", tag, got)
	}
	b.must(http.StatusNotFound, b.Admin, http.MethodPost, "/v1/nodes/nope/cordon", nil)

	// Uncordon: back in service, counted again (a change waits for it).
	n = b.must(http.StatusOK, b.Admin, http.MethodPost, "/v1/nodes/n2/uncordon", nil, "If-Match", tag)
	if n["status"] != "online" || n["admin_state"] != "in_service" {
		t.Fatalf("uncordoned node: %v", n)
	}
	b.must(http.StatusOK, b.TokenA, http.MethodPatch, "/v1/members/"+tr.Member, map[string]any{"weight": 6})
	rev = b.revision()
	b.report("n1", rev, nil)
	if got := b.field(b.TokenA, "/v1/members/"+tr.Member, "provisioning_status"); got != "pending_update" {
		t.Fatalf("member with n2 back in service but behind: %s", got)
	}
	b.report("n2", rev, nil)
	if got := b.field(b.TokenA, "/v1/members/"+tr.Member, "provisioning_status"); got != "active" {
		t.Fatalf("member once both applied: %s", got)
	}
	if nodes := treeNodes(b.statusTree(b.TokenA, tr.LB)); len(nodes) != 0 {
		t.Fatalf("tree after uncordon: %v", nodes)
	}
}

func TestNodeLifecycleApplyGrace(t *testing.T) {
	b := setup(t)
	tr := b.buildTree(b.TokenA)
	b.twoNodes()

	// n2 nacks every revision: within the grace (30 s) it blocks active.
	b.must(http.StatusOK, b.TokenA, http.MethodPatch, "/v1/members/"+tr.Member, map[string]any{"weight": 2})
	rev := b.revision()
	b.report("n1", rev, nil)
	b.must(http.StatusNoContent, b.Node, http.MethodPost, "/v1/nodes/n2/reports", map[string]any{"revision": rev, "status": "nack", "message": "cannot bind 127.77.0.1:80"})
	if got := b.nodeStatus("n2"); got != "error" {
		t.Fatalf("nacking n2: %s", got)
	}
	// Its periodic ack of the old revision it still serves does not end the failure.
	b.report("n2", rev-1, nil)
	if got := b.nodeStatus("n2"); got != "error" {
		t.Fatalf("n2 acking an older revision: %s", got)
	}
	if got := b.field(b.TokenA, "/v1/members/"+tr.Member, "provisioning_status"); got != "pending_update" {
		t.Fatalf("member within the apply grace: %s", got)
	}
	// Past the grace it no longer counts: the write goes active on n1.
	if _, err := b.Store.PoolForTests().Exec(context.Background(), "UPDATE nodes SET apply_failing_since = now() - interval '31 seconds' WHERE name = 'n2'"); err != nil {
		t.Fatal(err)
	}
	b.report("n1", rev, nil)
	if got := b.field(b.TokenA, "/v1/members/"+tr.Member, "provisioning_status"); got != "active" {
		t.Fatalf("member with n2 failing past the grace: %s, want active", got)
	}
	n2 := treeNodes(b.statusTree(b.TokenA, tr.LB))["n2"]
	if n2 == nil || n2["status"] != "error" || !strings.Contains(fmt.Sprint(n2["status_message"]), "apply grace") {
		t.Fatalf("tree with n2 failing: %v", n2)
	}
	node := b.must(http.StatusOK, b.Admin, http.MethodGet, "/v1/nodes/n2", nil)
	if node["apply_failing_since"] == nil || node["status_message"] != "cannot bind 127.77.0.1:80" {
		t.Fatalf("failing node: %v", node)
	}
	// An ack of the failed revision ends it.
	b.report("n2", rev, map[string]any{"message": ""})
	node = b.must(http.StatusOK, b.Admin, http.MethodGet, "/v1/nodes/n2", nil)
	if node["status"] != "online" || node["apply_failing_since"] != nil {
		t.Fatalf("n2 applying again: %v", node)
	}

	// With a zero grace a failing node never holds a change back.
	b.must(http.StatusOK, b.Admin, http.MethodPatch, "/v1/node-groups/"+b.GroupID, map[string]any{"apply_grace_ms": 0})
	b.must(http.StatusOK, b.TokenA, http.MethodPatch, "/v1/members/"+tr.Member, map[string]any{"weight": 9})
	rev = b.revision()
	b.must(http.StatusNoContent, b.Node, http.MethodPost, "/v1/nodes/n2/reports", map[string]any{"revision": rev, "status": "nack", "message": "no"})
	b.report("n1", rev, nil)
	if got := b.field(b.TokenA, "/v1/members/"+tr.Member, "provisioning_status"); got != "active" {
		t.Fatalf("member with a zero grace: %s", got)
	}
}

func TestNodeLifecycleReportedFields(t *testing.T) {
	b := setup(t)
	b.register("n1")
	b.report("n1", b.revision(), map[string]any{"vips": []string{"127.77.0.1", "::1"}})
	n := b.must(http.StatusOK, b.Admin, http.MethodGet, "/v1/nodes/n1", nil)
	if fmt.Sprint(n["vips"]) != "[127.77.0.1 ::1]" || n["agent_version"] != "1.2.3-test" || n["applied_revision"] != float64(b.revision()) {
		t.Fatalf("node: %v", n)
	}
	// Absent vips leave them; an empty list clears.
	b.report("n1", b.revision(), nil)
	if n := b.must(http.StatusOK, b.Admin, http.MethodGet, "/v1/nodes/n1", nil); fmt.Sprint(n["vips"]) != "[127.77.0.1 ::1]" {
		t.Fatalf("vips after a report without them: %v", n["vips"])
	}
	b.report("n1", b.revision(), map[string]any{"vips": []string{}})
	if n := b.must(http.StatusOK, b.Admin, http.MethodGet, "/v1/nodes/n1", nil); fmt.Sprint(n["vips"]) != "[]" {
		t.Fatalf("vips after an empty list: %v", n["vips"])
	}
	res := b.do(b.Node, http.MethodPost, "/v1/nodes/n1/reports", map[string]any{"revision": 1, "status": "ack", "vips": []string{"not-an-ip"}})
	if _, ok := res.FieldMessage("vips[0]"); res.Status != http.StatusUnprocessableEntity || !ok {
		t.Fatalf("bad vip: %d %s", res.Status, res.Raw)
	}
}

func TestDeregisterNode(t *testing.T) {
	b := setup(t)
	tr := b.buildTree(b.TokenA)
	b.twoNodes()
	b.must(http.StatusOK, b.TokenA, http.MethodPatch, "/v1/members/"+tr.Member, map[string]any{"weight": 8})
	rev := b.revision()
	b.report("n1", rev, nil)

	// Deleting n2 (which had not applied) lets the change go active.
	b.must(http.StatusNoContent, b.Admin, http.MethodDelete, "/v1/nodes/n2", nil)
	if got := b.field(b.TokenA, "/v1/members/"+tr.Member, "provisioning_status"); got != "active" {
		t.Fatalf("member after n2 was deleted: %s", got)
	}
	// Its agent, with the group's token, cannot bring it back.
	res := b.do(b.Node, http.MethodPut, "/v1/nodes/n2", map[string]any{"node_group_id": b.GroupID})
	if res.Status != http.StatusConflict || res.ProblemType() != "node-deleted" {
		t.Fatalf("re-registering a deleted node: %d %s", res.Status, res.Raw)
	}
	b.must(http.StatusNotFound, b.Node, http.MethodPost, "/v1/nodes/n2/reports", map[string]any{"revision": rev, "status": "ack"})
	b.must(http.StatusNotFound, b.Node, http.MethodGet, "/v1/nodes/n2/snapshot?wait=0s", nil)
	if got := b.count(b.Admin, "/v1/nodes"); got != 1 {
		t.Fatalf("nodes after the delete: %d", got)
	}
	// An admin creating it again lets it register.
	b.create(b.Admin, "/v1/nodes", map[string]any{"name": "n2", "node_group_id": b.GroupID})
	b.register("n2")

	// A token bound to a node acts as that node only, and goes with it.
	tok := b.must(http.StatusCreated, b.Admin, http.MethodPost, "/v1/tokens", map[string]any{"kind": "node", "node_id": "n1", "name": "n1-token"})
	bound := tok["secret"].(string)
	if tok["node_id"] == nil || tok["node_group_id"] != b.GroupID {
		t.Fatalf("node-bound token: %v", tok)
	}
	b.must(http.StatusOK, bound, http.MethodPut, "/v1/nodes/n1", map[string]any{})
	b.must(http.StatusNoContent, bound, http.MethodPost, "/v1/nodes/n1/reports", map[string]any{"revision": b.revision(), "status": "ack"})
	b.must(http.StatusNotFound, bound, http.MethodPost, "/v1/nodes/n2/reports", map[string]any{"revision": b.revision(), "status": "ack"})
	b.must(http.StatusNotFound, bound, http.MethodPut, "/v1/nodes/n3", map[string]any{})
	res = b.do(b.Admin, http.MethodPost, "/v1/tokens", map[string]any{"kind": "tenant", "tenant_id": b.TenantA, "node_id": "n1"})
	if _, ok := res.FieldMessage("node_id"); res.Status != http.StatusUnprocessableEntity || !ok {
		t.Fatalf("tenant token with a node_id: %d %s", res.Status, res.Raw)
	}
	b.must(http.StatusNoContent, b.Admin, http.MethodDelete, "/v1/nodes/n1", nil)
	for _, r := range []struct{ method, path string }{{http.MethodPut, "/v1/nodes/n1"}, {http.MethodPost, "/v1/nodes/n1/reports"}} {
		if res := b.do(bound, r.method, r.path, map[string]any{"revision": 1, "status": "ack"}); res.Status != http.StatusUnauthorized {
			t.Fatalf("%s %s with the revoked token: %d %s", r.method, r.path, res.Status, res.Raw)
		}
	}
	b.must(http.StatusNotFound, b.Admin, http.MethodGet, "/v1/tokens/"+tok["id"].(string), nil)
}

func TestNodeLifecycleCleanup(t *testing.T) {
	b := setup(t)
	b.twoNodes()
	// Times far apart from each other and from how long the test takes (a
	// loaded machine once made 1 s pass between two steps).
	b.must(http.StatusOK, b.Admin, http.MethodPatch, "/v1/node-groups/"+b.GroupID,
		map[string]any{"heartbeat_interval_ms": 100, "down_timeout_ms": 200, "down_node_cleanup_after_ms": 60000})
	b.silence("n2", 30)
	ctx := context.Background()
	// Down, but not down long enough.
	if names, err := b.Store.CleanupDownNodes(ctx); err != nil || len(names) != 0 {
		t.Fatalf("cleanup before the time: %v %v", names, err)
	}
	if got := b.nodeStatus("n2"); got != "down" {
		t.Fatalf("n2: %s", got)
	}
	b.silence("n2", 120)
	names, err := b.Store.CleanupDownNodes(ctx)
	if err != nil || len(names) != 1 || names[0] != "n2" {
		t.Fatalf("cleanup: %v %v", names, err)
	}
	b.must(http.StatusNotFound, b.Admin, http.MethodGet, "/v1/nodes/n2", nil)
	b.must(http.StatusOK, b.Admin, http.MethodGet, "/v1/nodes/n1", nil)
	// Cleaned up is not deleted by an admin: the node registers again if it returns.
	b.register("n2")
}

func TestNodeLifecycleTenantsNeverReachNodes(t *testing.T) {
	b := setup(t)
	b.register("n1")
	for _, tok := range []string{b.TokenA, b.TokenB} {
		for _, r := range []struct{ method, path string }{
			{http.MethodGet, "/v1/nodes"}, {http.MethodGet, "/v1/nodes/n1"}, {http.MethodDelete, "/v1/nodes/n1"},
			{http.MethodPost, "/v1/nodes/n1/cordon"}, {http.MethodPost, "/v1/nodes/n1/drain"}, {http.MethodPost, "/v1/nodes/n1/uncordon"},
			{http.MethodGet, "/v1/nodes/n1/snapshot?wait=0s"}, {http.MethodPut, "/v1/nodes/n1"},
		} {
			var body any
			if r.method == http.MethodPut {
				body = map[string]any{}
			}
			if res := b.do(tok, r.method, r.path, body); res.Status != http.StatusForbidden {
				t.Errorf("tenant %s %s: %d %s", r.method, r.path, res.Status, res.Raw)
			}
		}
		res := b.do(tok, http.MethodPost, "/v1/tokens", map[string]any{"kind": "node", "node_id": "n1"})
		if res.Status != http.StatusForbidden {
			t.Errorf("tenant issuing a node token: %d %s", res.Status, res.Raw)
		}
	}
	// Node tokens do not administer nodes either.
	for _, op := range []string{"cordon", "drain", "uncordon"} {
		if res := b.do(b.Node, http.MethodPost, "/v1/nodes/n1/"+op, nil); res.Status != http.StatusForbidden {
			t.Errorf("node token %s: %d %s", op, res.Status, res.Raw)
		}
	}
	if got := b.nodeStatus("n1"); got != "online" {
		t.Fatalf("n1 after refused calls: %s", got)
	}
}

// TestNodeLifecycleJanitor: the API's own janitor removes a node down past
// its group's cleanup time, and concurrent cleanups (several replicas) never
// fail or remove a node twice.
func TestNodeLifecycleJanitor(t *testing.T) {
	b := setup(t, withNodeJanitor(100*time.Millisecond))
	b.twoNodes()
	// n2 (and n3–n5 below) went silent 2 minutes ago, past the cleanup
	// time; n1, which reported just now, must outlive the test however
	// slowly a loaded machine runs it (a 1 s cleanup time once removed it).
	b.must(http.StatusOK, b.Admin, http.MethodPatch, "/v1/node-groups/"+b.GroupID,
		map[string]any{"heartbeat_interval_ms": 100, "down_timeout_ms": 200, "down_node_cleanup_after_ms": 60000})
	b.silence("n2", 120)
	deadline := time.Now().Add(20 * time.Second)
	for b.do(b.Admin, http.MethodGet, "/v1/nodes/n2", nil).Status != http.StatusNotFound {
		if time.Now().After(deadline) {
			t.Fatalf("n2, down 2 minutes with a 1 minute cleanup time, was not removed")
		}
		time.Sleep(50 * time.Millisecond)
	}
	b.report("n1", b.revision(), nil)
	b.must(http.StatusOK, b.Admin, http.MethodGet, "/v1/nodes/n1", nil)

	// Several replicas at once: each node is removed once, by one of them.
	for _, name := range []string{"n3", "n4", "n5"} {
		b.register(name)
		b.silence(name, 120)
	}
	var (
		mu      sync.Mutex
		removed []string
		wg      sync.WaitGroup
	)
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			names, err := b.Store.CleanupDownNodes(context.Background())
			if err != nil {
				t.Errorf("cleanup: %v", err)
			}
			mu.Lock()
			removed = append(removed, names...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	// The API's janitor may have taken some; whatever the replicas removed, each once.
	seen := map[string]bool{}
	for _, n := range removed {
		if seen[n] {
			t.Fatalf("%s removed twice: %v", n, removed)
		}
		seen[n] = true
	}
	deadline = time.Now().Add(20 * time.Second)
	for b.count(b.Admin, "/v1/nodes") != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("nodes left: %v", b.ids(b.Admin, "/v1/nodes"))
		}
		time.Sleep(50 * time.Millisecond)
	}
}
