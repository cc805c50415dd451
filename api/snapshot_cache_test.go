package api_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/fulcrumlb/fulcrum/api"
	"github.com/fulcrumlb/fulcrum/api/snapshot"
	"github.com/fulcrumlb/fulcrum/api/store"
	"github.com/fulcrumlb/fulcrum/internal/testcerts"
	"github.com/fulcrumlb/fulcrum/openapi"
)

// pollNode is one turn of a node's long-poll through cache c: the node and
// its group's revision read in a transaction, the group's part from c.
func pollNode(t *testing.T, b *bundle, c *snapshot.Cache, name string, after int64) *snapshot.NodeSnapshot {
	t.Helper()
	ctx := context.Background()
	var p snapshot.Poll
	err := b.Store.ReadSnapshot(ctx, func(tx *store.Tx) error {
		n, err := store.NodeGetByName(ctx, tx, name, false)
		if err != nil {
			return err
		}
		p, err = snapshot.ReadPoll(ctx, tx, n)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	s, err := c.ForNode(ctx, p, after)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// built is node name's snapshot as Builder.ForNode builds it, uncached.
func built(t *testing.T, b *bundle, builder *snapshot.Builder, name string, after int64) *openapi.Snapshot {
	t.Helper()
	ctx := context.Background()
	var snap *openapi.Snapshot
	err := b.Store.ReadSnapshot(ctx, func(tx *store.Tx) error {
		n, err := store.NodeGetByName(ctx, tx, name, false)
		if err != nil {
			return err
		}
		snap, err = builder.ForNode(ctx, tx, n, after)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return snap
}

// decoded is a snapshot's JSON as generic values, without generated_at
// (the time of a build).
func decoded(t *testing.T, raw []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("decode %.200q: %v", raw, err)
	}
	delete(m, "generated_at")
	return m
}

// encoded returns a cached snapshot's bytes as sent, uncompressed or gunzipped.
func encoded(t *testing.T, s *snapshot.NodeSnapshot, gz bool) []byte {
	t.Helper()
	head, body, err := s.Encode(0, gz) // format 0: as Builder.ForNode leaves it
	if err != nil {
		t.Fatal(err)
	}
	raw := append(append([]byte{}, head...), body...)
	if !gz {
		return raw
	}
	zr, err := gzip.NewReader(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	out, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// sameAsBuilt checks that a cached snapshot, decoded and encoded both ways,
// is what Builder.ForNode builds for the node.
func sameAsBuilt(t *testing.T, b *bundle, builder *snapshot.Builder, s *snapshot.NodeSnapshot, name string, after int64) {
	t.Helper()
	want := built(t, b, builder, name, after)
	if want == nil {
		t.Fatalf("%s after %d: the builder has no snapshot, the cache has one at %d", name, after, s.Revision())
	}
	wantJSON, _ := json.Marshal(want)
	gotJSON, _ := json.Marshal(s.Snapshot())
	if w, g := decoded(t, wantJSON), decoded(t, gotJSON); !reflect.DeepEqual(w, g) {
		t.Fatalf("%s after %d: cached snapshot\n%s\nwant\n%s", name, after, gotJSON, wantJSON)
	}
	for _, gz := range []bool{false, true} {
		if w, g := decoded(t, gotJSON), decoded(t, encoded(t, s, gz)); !reflect.DeepEqual(w, g) {
			t.Fatalf("%s after %d: encoded (gzip %v) %s, want %s", name, after, gz, encoded(t, s, gz), gotJSON)
		}
	}
}

// The group's part is built once per revision and shared by the group's
// nodes; each node's snapshot is still exactly what the builder makes for
// it: a write is seen at the next poll, a node's drain by that node only.
func TestSnapshotCache(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tr := b.buildTree(b.TokenA)
	b.register("n1")
	b.register("n2")
	builder := snapshot.NewBuilder(idShapes, testKey)
	c := snapshot.NewCache(builder, b.Store, 10*time.Second)

	s1 := pollNode(t, b, c, "n1", 0)
	s2 := pollNode(t, b, c, "n2", 0)
	if s1 == nil || s2 == nil {
		t.Fatalf("no snapshot for new nodes: %v %v", s1, s2)
	}
	if s1.Group != s2.Group || c.Builds() != 1 {
		t.Fatalf("two nodes of a group: parts %p and %p, %d builds, want one shared", s1.Group, s2.Group, c.Builds())
	}
	n1, n2 := s1.Snapshot(), s2.Snapshot()
	if n1.Node.Name != "n1" || n2.Node.Name != "n2" {
		t.Fatalf("node parts: %+v at %d, %+v at %d", n1.Node, n1.Revision, n2.Node, n2.Revision)
	}
	// Revisions may differ: a node's registration is a write of its own.
	g1, g2 := n1, n2
	g1.Node, g1.Revision, g1.Traceparent, g1.Traceparents = nil, 0, nil, nil
	g2.Node, g2.Revision, g2.Traceparent, g2.Traceparents = nil, 0, nil, nil
	if !reflect.DeepEqual(g1, g2) {
		t.Fatalf("group parts differ:\n%+v\n%+v", g1, g2)
	}
	sameAsBuilt(t, b, builder, s1, "n1", 0)
	sameAsBuilt(t, b, builder, s2, "n2", 0)
	rev := max(s1.Revision(), s2.Revision())
	if again := pollNode(t, b, c, "n1", rev); again != nil {
		t.Fatalf("snapshot for a node holding revision %d: %d", rev, again.Revision())
	}

	// A write: the next poll sees it, built once more.
	b.must(http.StatusOK, b.TokenA, http.MethodPatch, "/v1/members/"+tr.Member, map[string]any{"weight": 7})
	s1 = pollNode(t, b, c, "n1", rev)
	if s1 == nil || s1.Revision() <= rev || c.Builds() != 2 {
		t.Fatalf("after a write: %v, %d builds", s1, c.Builds())
	}
	sameAsBuilt(t, b, builder, s1, "n1", rev)
	if s2 = pollNode(t, b, c, "n2", rev); s2 == nil || s2.Group != s1.Group || c.Builds() != 2 {
		t.Fatalf("n2 after the write: %v, %d builds", s2, c.Builds())
	}
	rev = s1.Revision()

	// A drain: n2's snapshot says so at the node's new revision, from the
	// same group part; n1 has nothing new.
	b.must(http.StatusOK, b.Admin, http.MethodPost, "/v1/nodes/n2/drain", nil)
	s2 = pollNode(t, b, c, "n2", rev)
	if s2 == nil || s2.Revision() <= rev || s2.Snapshot().Node.AdminState != openapi.SnapshotNodeAdminStateDraining || c.Builds() != 2 {
		t.Fatalf("drained n2: %v, %d builds", s2, c.Builds())
	}
	sameAsBuilt(t, b, builder, s2, "n2", rev)
	if s1 = pollNode(t, b, c, "n1", rev); s1 != nil {
		t.Fatalf("n1 got a snapshot at %d for n2's drain", s1.Revision())
	}
	// A node starting from nothing gets its own admin state.
	if s1 = pollNode(t, b, c, "n1", 0); s1 == nil || s1.Snapshot().Node.AdminState != openapi.SnapshotNodeAdminStateInService {
		t.Fatalf("n1 from scratch: %v", s1)
	}
	sameAsBuilt(t, b, builder, s1, "n1", 0)
}

// Pollers needing a group's part at the same time wait for one build.
func TestSnapshotCacheSingleFlight(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for i := range 5 {
		b.create(b.TokenA, "/v1/load-balancers", map[string]any{"name": fmt.Sprintf("lb%d", i)})
	}
	rev := b.revision()
	c := snapshot.NewCache(snapshot.NewBuilder(idShapes, testKey), b.Store, 10*time.Second)
	var wg sync.WaitGroup
	groups := make([]*snapshot.Group, 20)
	for i := range groups {
		wg.Add(1)
		go func() {
			defer wg.Done()
			g, err := c.Group(context.Background(), b.GroupID, rev)
			if err != nil {
				t.Error(err)
			}
			groups[i] = g
		}()
	}
	wg.Wait()
	if c.Builds() != 1 {
		t.Fatalf("%d concurrent pollers: %d builds, want 1", len(groups), c.Builds())
	}
	for _, g := range groups {
		if g != groups[0] || g.Revision != rev || len(g.Snapshot.LoadBalancers) != 5 {
			t.Fatalf("shared part %p at %d with %d load balancers, want %p at %d with 5", g, g.Revision, len(g.Snapshot.LoadBalancers), groups[0], rev)
		}
	}
}

// The snapshot is gzip-compressed when, and only when, the request accepts
// gzip; both decode to the same snapshot. Go's client (the agent's) asks for
// gzip by itself and gets compressed bytes.
func TestSnapshotGzipNegotiated(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.buildTree(b.TokenA)
	b.register("n1")
	get := func(acceptEncoding string) (*http.Response, []byte) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, b.URL+"/v1/nodes/n1/snapshot?after=0&wait=0s", nil)
		req.Header.Set("Authorization", "Bearer "+b.Node)
		if acceptEncoding != "" {
			req.Header.Set("Accept-Encoding", acceptEncoding)
		}
		res, err := (&http.Client{Transport: &http.Transport{DisableCompression: true}}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		raw, err := io.ReadAll(res.Body)
		if err != nil || res.StatusCode != http.StatusOK {
			t.Fatalf("snapshot (Accept-Encoding %q): %d %v %.200q", acceptEncoding, res.StatusCode, err, raw)
		}
		if res.Header.Get("Vary") != "Accept-Encoding" {
			t.Errorf("Vary: %q", res.Header.Get("Vary"))
		}
		return res, raw
	}
	res, plain := get("")
	if res.Header.Get("Content-Encoding") != "" || !json.Valid(plain) {
		t.Fatalf("without Accept-Encoding: Content-Encoding %q, body %.200q", res.Header.Get("Content-Encoding"), plain)
	}
	want := decoded(t, plain)
	for _, ae := range []string{"gzip", "br;q=1.0, gzip;q=0.5", "*"} {
		res, raw := get(ae)
		if res.Header.Get("Content-Encoding") != "gzip" {
			t.Fatalf("Accept-Encoding %q: Content-Encoding %q", ae, res.Header.Get("Content-Encoding"))
		}
		zr, err := gzip.NewReader(bytes.NewReader(raw))
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(zr)
		if err != nil {
			t.Fatal(err)
		}
		if got := decoded(t, body); !reflect.DeepEqual(got, want) {
			t.Fatalf("Accept-Encoding %q: gunzipped %.300s, want %.300s", ae, body, plain)
		}
		if len(raw) >= len(plain) {
			t.Errorf("Accept-Encoding %q: %d compressed bytes for %d", ae, len(raw), len(plain))
		}
	}
	for _, ae := range []string{"identity", "gzip;q=0", "br", "gzip;q=0, *"} {
		if res, raw := get(ae); res.Header.Get("Content-Encoding") != "" || !json.Valid(raw) {
			t.Fatalf("Accept-Encoding %q: Content-Encoding %q", ae, res.Header.Get("Content-Encoding"))
		}
	}

	// The agent's client: Go's transport adds Accept-Encoding: gzip and
	// decompresses transparently.
	client, err := openapi.NewClientWithResponses(b.URL, openapi.WithRequestEditorFn(func(_ context.Context, req *http.Request) error {
		req.Header.Set("Authorization", "Bearer "+b.Node)
		return nil
	}))
	if err != nil {
		t.Fatal(err)
	}
	after, wait := int64(0), "0s"
	r, err := client.GetNodeSnapshotWithResponse(context.Background(), "n1", &openapi.GetNodeSnapshotParams{After: &after, Wait: &wait})
	if err != nil || r.JSON200 == nil {
		t.Fatalf("agent client: %v %d", err, r.StatusCode())
	}
	if !r.HTTPResponse.Uncompressed {
		t.Fatal("the agent's client did not get the snapshot compressed")
	}
	got, _ := json.Marshal(r.JSON200)
	if g := decoded(t, got); !reflect.DeepEqual(g, want) {
		t.Fatalf("agent client decoded %.300s, want %.300s", got, plain)
	}
}

// A write wakes the pollers of the node groups it changed and no other; a
// reconnect of the listener wakes every poller.
func TestNotifierTargetedWakeups(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tr := b.buildTree(b.TokenA)
	b.register("n1")
	groupA := b.GroupID
	groupB, _ := b.must(http.StatusCreated, b.Admin, http.MethodPost, "/v1/node-groups", map[string]any{"name": "b", "vip_range": "127.78.0.0/16"})["id"].(string)
	sentinel, _ := b.must(http.StatusCreated, b.Admin, http.MethodPost, "/v1/node-groups", map[string]any{"name": "s", "vip_range": "127.79.0.0/16"})["id"].(string)
	lbB := b.create(b.TokenB, "/v1/load-balancers", map[string]any{"name": "in-b", "node_group_id": groupB})

	n := api.NewNotifier()
	mark := n.Mark()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go n.Run(ctx, b.Store, slog.New(slog.NewTextHandler(io.Discard, nil)))
	waitClosed := func(ch <-chan struct{}, what string) {
		t.Helper()
		select {
		case <-ch:
		case <-time.After(20 * time.Second):
			t.Fatalf("%s: not woken in 20 s", what)
		}
	}
	waitClosed(n.ChangedSince(groupA, mark), "listener connected")

	isClosed := func(ch <-chan struct{}) bool {
		select {
		case <-ch:
			return true
		default:
			return false
		}
	}
	// woken runs write, then a write to the sentinel group; once the
	// sentinel is woken every notification of write was handled (they
	// arrive in commit order). It returns which of A and B were woken.
	woken := func(write func()) (a, bb bool) {
		t.Helper()
		mark := n.Mark()
		write()
		b.must(http.StatusOK, b.Admin, http.MethodPatch, "/v1/node-groups/"+sentinel, map[string]any{"description": fmt.Sprint(time.Now().UnixNano())})
		waitClosed(n.ChangedSince(sentinel, mark), "sentinel group")
		return isClosed(n.ChangedSince(groupA, mark)), isClosed(n.ChangedSince(groupB, mark))
	}
	certPEM, keyPEM := testcerts.SelfSigned(t, "www.example.test")
	for _, c := range []struct {
		what  string
		write func()
		wantA bool
		wantB bool
	}{
		{"member of A changed", func() {
			b.must(http.StatusOK, b.TokenA, http.MethodPatch, "/v1/members/"+tr.Member, map[string]any{"weight": 3})
		}, true, false},
		{"load balancer of B changed", func() {
			b.must(http.StatusOK, b.TokenB, http.MethodPatch, "/v1/load-balancers/"+lbB, map[string]any{"description": "x"})
		}, false, true},
		{"pool created in A", func() {
			b.create(b.TokenA, "/v1/pools", map[string]any{"load_balancer_id": tr.LB, "protocol": "http", "name": "more"})
		}, true, false},
		{"node of A drained", func() { b.must(http.StatusOK, b.Admin, http.MethodPost, "/v1/nodes/n1/drain", nil) }, true, false},
		{"node group B changed", func() {
			b.must(http.StatusOK, b.Admin, http.MethodPatch, "/v1/node-groups/"+groupB, map[string]any{"heartbeat_interval_ms": 3000})
		}, false, true},
		{"certificate used in A rotated", func() {
			b.must(http.StatusOK, b.TokenA, http.MethodPatch, "/v1/certificates/"+tr.Cert, map[string]any{"certificate": certPEM, "private_key": keyPEM})
		}, true, false},
		{"heartbeat and report", func() {
			b.register("n1")
			b.report("n1", b.revision(), nil)
		}, false, false},
		{"load balancer of A deleted", func() {
			b.must(http.StatusAccepted, b.TokenA, http.MethodDelete, "/v1/load-balancers/"+tr.LB+"?cascade=true", nil)
		}, true, false},
		{"node of A deleted (its poll answers 404)", func() {
			b.must(http.StatusNoContent, b.Admin, http.MethodDelete, "/v1/nodes/n1", nil)
		}, true, false},
		{"tenant created", func() {
			b.must(http.StatusCreated, b.Admin, http.MethodPost, "/v1/tenants", map[string]any{"name": "c"})
		}, false, false},
	} {
		if a, bb := woken(c.write); a != c.wantA || bb != c.wantB {
			t.Errorf("%s: woke A %v, B %v; want %v, %v", c.what, a, bb, c.wantA, c.wantB)
		}
	}

	// The listener's connection lost: its reconnect wakes everybody.
	mark = n.Mark()
	chA, chB := n.ChangedSince(groupA, mark), n.ChangedSince(groupB, mark)
	if _, err := b.Store.PoolForTests().Exec(context.Background(),
		"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'LISTEN%'"); err != nil {
		t.Fatal(err)
	}
	waitClosed(chA, "A after the listener reconnected")
	waitClosed(chB, "B after the listener reconnected")
}
