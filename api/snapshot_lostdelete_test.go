package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"

	"github.com/fulcrumlb/fulcrum/api"
	"github.com/fulcrumlb/fulcrum/api/store"
	"github.com/fulcrumlb/fulcrum/openapi"
)

// pollNode long-polls node name's snapshot after after (format 2, complete)
// with token, through the group's poll view as agents' long-polls do; nil
// (and the test failed) on an answer other than 200.
func (b *bundle) pollNode(token, name string, after int64) *openapi.Snapshot {
	b.t.Helper()
	path := fmt.Sprintf("/v1/nodes/%s/snapshot?after=%d&wait=5s", name, after)
	res := b.do(token, http.MethodGet, path, nil, "Fulcrum-Agent-Format", "2")
	if res.Status != http.StatusOK {
		b.t.Errorf("GET %s: %d %s", path, res.Status, res.Raw)
		return nil
	}
	var s openapi.Snapshot
	if err := json.Unmarshal(res.Raw, &s); err != nil {
		b.t.Fatal(err)
	}
	return &s
}

// TestSnapshotDeletePurgedBeforeAnyRead: a load balancer deleted while no
// node of its group serves is purged in the delete's own transaction, so
// nothing in the database carries its delete's revision but the group's
// purged revision (snapshot_purges). A node that registers next, by poll or
// by stream, and the cordoned node coming back must not get the group's part
// cached from before the delete labelled with their own newer revision: they
// would keep the load balancer for good (later deltas never name a purged
// delete). This is node-2's failure in TestSnapshotDeltaAgentConverges
// (acceptance): the poll view and the cache read the group's revision with
// store.GroupRevisionSince, which did not count purged deletes.
func TestSnapshotDeletePurgedBeforeAnyRead(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t)
	url := h2cServer(t, b)
	var token string // bound to the group, as agents' tokens (teststack)
	if err := b.Store.Write(ctx, false, func(tx *store.Tx) error {
		var err error
		_, token, err = api.IssueToken(ctx, tx, store.TokenNode, "", b.GroupID, "group", "", nil)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	register := func(name string) {
		b.must(http.StatusOK, token, http.MethodPut, "/v1/nodes/"+name, map[string]any{"node_group_id": b.GroupID})
	}
	register("n1")
	gone := b.create(b.TokenA, "/v1/load-balancers", map[string]any{"name": "gone", "node_group_id": b.GroupID})
	kept := b.create(b.TokenA, "/v1/load-balancers", map[string]any{"name": "kept", "node_group_id": b.GroupID})
	// n1 reads the group: the poll view and the group's part are cached
	// with gone.
	s0 := b.pollNode(token, "n1", 0)
	if s0 == nil || len(lbRevisions(s0)) != 2 {
		t.Fatalf("first snapshot: %v, want %s and %s", s0, gone, kept)
	}
	b.must(http.StatusNoContent, token, http.MethodPost, "/v1/nodes/n1/reports", map[string]any{"revision": s0.Revision, "status": "ack"})

	// n1 cordoned, then the delete: no node serves the group, so the delete
	// purges the load balancer at once, before any poll reads the group.
	b.must(http.StatusOK, b.Admin, http.MethodPost, "/v1/nodes/n1/cordon", nil)
	b.must(http.StatusAccepted, b.TokenA, http.MethodDelete, "/v1/load-balancers/"+gone+"?cascade=true", nil)
	del := b.revision()
	var purged int64
	if err := b.Store.PoolForTests().QueryRow(ctx, "SELECT COALESCE(max(purged_revision), 0) FROM snapshot_purges").Scan(&purged); err != nil {
		t.Fatal(err)
	}
	if purged < del {
		t.Fatalf("purged up to %d, want the delete at %d purged by itself", purged, del)
	}
	// The incremental read of the group's revision (poll views, the cache)
	// agrees with the whole one.
	if err := b.Store.ReadSnapshot(ctx, func(tx *store.Tx) error {
		whole, err := store.GroupRevision(ctx, tx, b.GroupID)
		if err != nil {
			return err
		}
		since, err := store.GroupRevisionSince(ctx, tx, b.GroupID, s0.Revision)
		if err != nil {
			return err
		}
		if whole < del || since != whole {
			t.Errorf("group revision %d, since %d: %d; want both at least the purged delete's %d", whole, s0.Revision, since, del)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	check := func(what string, s *openapi.Snapshot) {
		t.Helper()
		if s == nil {
			return
		}
		revs := lbRevisions(s)
		if _, ok := revs[gone]; ok || s.Revision < del {
			t.Errorf("%s: revision %d with load balancers %v: the load balancer deleted (and purged) at %d is back", what, s.Revision, revs, del)
		}
		if _, ok := revs[kept]; !ok {
			t.Errorf("%s: load balancers %v, want %s", what, revs, kept)
		}
	}
	// Nodes registering now, by poll and by stream.
	register("n2")
	check("n2's first poll", b.pollNode(token, "n2", 0))
	register("n3")
	st, res := openStream(t, h2cClient(), url, token, "n3", "?after=0")
	if st == nil {
		t.Fatalf("open n3's stream: %d", res.StatusCode)
	}
	raw, err := json.Marshal(st.snapshot("n3's first frame"))
	if err != nil {
		t.Fatal(err)
	}
	var s3 openapi.Snapshot
	if err := json.Unmarshal(raw, &s3); err != nil {
		t.Fatal(err)
	}
	check("n3's first frame", &s3)
	// n1 back in service, asking after what it held: the delete was purged
	// since, so a complete snapshot, without gone.
	b.must(http.StatusOK, b.Admin, http.MethodPost, "/v1/nodes/n1/uncordon", nil)
	check("n1 after its uncordon", b.pollNode(token, "n1", s0.Revision))
}
