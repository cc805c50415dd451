package api_test

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"
)

// Node protocol 2 (node_delta.go): a poll carries the acknowledgement of the
// revision the node applied cleanly (applied=), recorded as a report would
// be, without holding the poll back.

const protocolHeader = "Fulcrum-Agent-Protocol"

// waitFor derives statuses until ok holds, for up to 30 s (a poll's
// acknowledgement is written in the background).
func (b *bundle) waitFor(what string, ok func() bool) {
	b.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			b.t.Fatalf("30 s without %s", what)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := b.srv.DeriveNow(ctx)
		cancel()
		if err != nil {
			b.t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (b *bundle) appliedRevision(node string) int64 {
	b.t.Helper()
	n := b.must(http.StatusOK, b.Admin, http.MethodGet, "/v1/nodes/"+node, nil)
	v, _ := n["applied_revision"].(float64)
	return int64(v)
}

// An agent that acknowledges through its next poll gets its objects active,
// exactly as with a report; every answer to a poll names the newest protocol
// the API serves.
func TestPollAckMakesActive(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.register("n1")
	tr := b.buildTree(b.TokenA)
	res := b.do(b.Node, http.MethodGet, "/v1/nodes/n1/snapshot?after=0&wait=0s", nil, protocolHeader, "2")
	if res.Status != http.StatusOK || res.Header.Get(protocolHeader) != "3" {
		t.Fatalf("first poll: %d, %s %q: %s", res.Status, protocolHeader, res.Header.Get(protocolHeader), res.Raw)
	}
	rev := int64(res.Body["revision"].(float64))
	if got := b.field(b.TokenA, "/v1/members/"+tr.Member, "provisioning_status"); got != "pending_create" {
		t.Fatalf("member before any acknowledgement: %s", got)
	}
	// The next poll carries the acknowledgement; nothing newer: 304.
	res = b.do(b.Node, http.MethodGet, fmt.Sprintf("/v1/nodes/n1/snapshot?after=%d&wait=0s&applied=%d", rev, rev), nil, protocolHeader, "2")
	if res.Status != http.StatusNotModified || res.Header.Get(protocolHeader) != "3" {
		t.Fatalf("poll carrying the acknowledgement: %d, %s %q: %s", res.Status, protocolHeader, res.Header.Get(protocolHeader), res.Raw)
	}
	b.waitFor("the member active after the poll's acknowledgement", func() bool {
		return b.field(b.TokenA, "/v1/members/"+tr.Member, "provisioning_status") == "active" &&
			b.field(b.TokenA, "/v1/load-balancers/"+tr.LB, "provisioning_status") == "active"
	})
	if got := b.appliedRevision("n1"); got != rev {
		t.Fatalf("applied_revision %d, want %d", got, rev)
	}

	// A change: the poll that carries the acknowledgement of the revision
	// before gets the new one at once (it is not held back by the
	// acknowledgement's write), and the poll after it acknowledges that.
	b.must(http.StatusOK, b.TokenA, http.MethodPatch, "/v1/members/"+tr.Member, map[string]any{"weight": 7})
	res = b.do(b.Node, http.MethodGet, fmt.Sprintf("/v1/nodes/n1/snapshot?after=%d&wait=5s&applied=%d&delta=true", rev, rev), nil,
		protocolHeader, "2", "Fulcrum-Agent-Format", "2")
	if res.Status != http.StatusOK {
		t.Fatalf("poll after the change: %d: %s", res.Status, res.Raw)
	}
	rev2 := int64(res.Body["revision"].(float64))
	if got := b.field(b.TokenA, "/v1/members/"+tr.Member, "provisioning_status"); got != "pending_update" {
		t.Fatalf("changed member before its acknowledgement: %s", got)
	}
	res = b.do(b.Node, http.MethodGet, fmt.Sprintf("/v1/nodes/n1/snapshot?after=%d&wait=0s&applied=%d", rev2, rev2), nil, protocolHeader, "2")
	if res.Status != http.StatusNotModified {
		t.Fatalf("poll acknowledging %d: %d: %s", rev2, res.Status, res.Raw)
	}
	b.waitFor("the changed member active", func() bool {
		return b.field(b.TokenA, "/v1/members/"+tr.Member, "provisioning_status") == "active"
	})

	// An acknowledgement of an older revision (late, or repeated) does not
	// lower the applied revision.
	res = b.do(b.Node, http.MethodGet, fmt.Sprintf("/v1/nodes/n1/snapshot?after=%d&wait=0s&applied=%d", rev2, rev), nil, protocolHeader, "2")
	if res.Status != http.StatusNotModified {
		t.Fatalf("poll with an old acknowledgement: %d: %s", res.Status, res.Raw)
	}
	time.Sleep(100 * time.Millisecond)
	b.waitFor("the applied revision kept", func() bool { return b.appliedRevision("n1") == rev2 })
}

// A poll's acknowledgement says the apply was clean: it clears the load
// balancer errors a report of the same revision set, as a report with none
// would.
func TestPollAckClearsLoadBalancerErrors(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tr := b.buildTree(b.TokenA)
	b.register("n1")
	rev := b.revision()
	b.report("n1", rev, map[string]any{"load_balancer_errors": []any{
		map[string]any{"load_balancer_id": tr.LB, "object_id": tr.Listener, "field": "port", "message": "cannot bind socket [127.77.0.1:80]"}}})
	if got := b.field(b.TokenA, "/v1/listeners/"+tr.Listener, "provisioning_status"); got != "error" {
		t.Fatalf("rejected listener: %s", got)
	}
	res := b.do(b.Node, http.MethodGet, fmt.Sprintf("/v1/nodes/n1/snapshot?after=%d&wait=0s&applied=%d", rev, rev), nil, protocolHeader, "2")
	if res.Status != http.StatusNotModified {
		t.Fatalf("poll: %d: %s", res.Status, res.Raw)
	}
	b.waitFor("the listener active after a clean acknowledgement", func() bool {
		return b.field(b.TokenA, "/v1/listeners/"+tr.Listener, "provisioning_status") == "active"
	})
}

// An agent of protocol 1 (no header) still acknowledges by report, and its
// polls are answered as before.
func TestOldStyleAckStillWorks(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.register("n1")
	tr := b.buildTree(b.TokenA)
	snap := b.must(http.StatusOK, b.Node, http.MethodGet, "/v1/nodes/n1/snapshot?after=0&wait=0s", nil)
	rev := int64(snap["revision"].(float64))
	b.must(http.StatusNotModified, b.Node, http.MethodGet, fmt.Sprintf("/v1/nodes/n1/snapshot?after=%d&wait=0s", rev), nil)
	if got := b.field(b.TokenA, "/v1/members/"+tr.Member, "provisioning_status"); got != "pending_create" {
		t.Fatalf("member after a poll without acknowledgement: %s", got)
	}
	b.report("n1", rev, map[string]any{"load_balancer_errors": []any{}})
	if got := b.field(b.TokenA, "/v1/members/"+tr.Member, "provisioning_status"); got != "active" {
		t.Fatalf("member after the report: %s", got)
	}
	if got := b.appliedRevision("n1"); got != rev {
		t.Fatalf("applied_revision %d, want %d", got, rev)
	}
}

// A protocol the API does not serve, or an acknowledgement without
// protocol 2, is a 400 naming the header or parameter, and records nothing.
func TestPollAckRefused(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.register("n1")
	b.buildTree(b.TokenA)
	rev := b.revision()
	for _, c := range []struct {
		what, query, proto, field string
	}{
		{"a newer protocol", "", "4", protocolHeader},
		{"a protocol that is not a number", "", "two", protocolHeader},
		{"protocol 0", "", "0", protocolHeader},
		{"an acknowledgement in protocol 1", fmt.Sprintf("&applied=%d", rev), "1", "applied"},
		{"an acknowledgement without a protocol", fmt.Sprintf("&applied=%d", rev), "", "applied"},
		{"a negative acknowledgement", "&applied=-1", "2", "applied"},
		{"an acknowledgement that is not a number", "&applied=x", "2", "applied"},
	} {
		res := b.do(b.Node, http.MethodGet, "/v1/nodes/n1/snapshot?after=0&wait=0s"+c.query, nil, protocolHeader, c.proto)
		if res.Status/100 != 4 {
			t.Errorf("%s: %d, want 4xx: %s", c.what, res.Status, res.Raw)
			continue
		}
		if _, ok := res.FieldMessage(c.field); !ok {
			t.Errorf("%s: %d does not name %s: %s", c.what, res.Status, c.field, res.Raw)
		}
	}
	time.Sleep(200 * time.Millisecond)
	if got := b.appliedRevision("n1"); got != 0 {
		t.Fatalf("applied_revision %d after refused polls, want 0", got)
	}
}

// Polls take a fast path when their parameters are plainly valid
// (pollcheck.go), the generic check otherwise: both answer alike.
func TestPollParametersFastAndGeneric(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.register("n1")
	b.buildTree(b.TokenA)
	rev := b.revision()
	for _, c := range []struct {
		query   string
		headers []string
		status  int
		field   string
	}{
		{"after=0&wait=0s", nil, http.StatusOK, ""},
		{"after=0&wait=0s&delta=false", []string{"Fulcrum-Agent-Format", "2"}, http.StatusOK, ""},
		{fmt.Sprintf("after=%d&wait=0s", rev), nil, http.StatusNotModified, ""},
		{fmt.Sprintf("after=%d&wait=0s&foo=bar", rev), nil, http.StatusNotModified, ""},     // unknown: generic, ignored
		{fmt.Sprintf("after=%d&after=1&wait=0s", rev), nil, http.StatusBadRequest, "after"}, // twice: generic
		{fmt.Sprintf("after=%d&wait=0s&delta=1", rev), nil, http.StatusBadRequest, "delta"}, // generic: needs format 2
		{"after=-1&wait=0s", nil, http.StatusUnprocessableEntity, "after"},
		{"after=x&wait=0s", nil, http.StatusUnprocessableEntity, "after"},
		{"after=0&wait=forever", nil, http.StatusBadRequest, "wait"},
		{"after=0&wait=0s&delta=maybe", nil, http.StatusUnprocessableEntity, "delta"},
		{"after=0&wait=0s", []string{"Fulcrum-Agent-Format", "9"}, http.StatusBadRequest, "Fulcrum-Agent-Format"},
		{"after=0&wait=0s", []string{"Fulcrum-Agent-Format", "x"}, http.StatusBadRequest, "Fulcrum-Agent-Format"},
	} {
		res := b.do(b.Node, http.MethodGet, "/v1/nodes/n1/snapshot?"+c.query, nil, c.headers...)
		if res.Status != c.status {
			t.Errorf("%s %v: %d, want %d: %s", c.query, c.headers, res.Status, c.status, res.Raw)
			continue
		}
		if c.field != "" {
			if _, ok := res.FieldMessage(c.field); !ok {
				t.Errorf("%s %v: %d does not name %s: %s", c.query, c.headers, res.Status, c.field, res.Raw)
			}
		}
		if res.Status < 400 && res.Header.Get(protocolHeader) != "3" {
			t.Errorf("%s: %s %q, want 3", c.query, protocolHeader, res.Header.Get(protocolHeader))
		}
	}
}
