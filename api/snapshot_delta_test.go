package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand"
	"net/http"
	"os"
	"reflect"
	"slices"
	"strconv"
	"testing"

	"github.com/fulcrumlb/fulcrum/api/store"
	"github.com/fulcrumlb/fulcrum/dataplane/haproxy"
	snapconv "github.com/fulcrumlb/fulcrum/dataplane/snapshot"
	"github.com/fulcrumlb/fulcrum/internal/testcerts"
	"github.com/fulcrumlb/fulcrum/openapi"
)

// Incremental snapshots (api/snapshot/delta.go) and the versioned protocol
// (api/node_delta.go), through the node protocol on real Postgres.

// getSnapshot fetches node n1's snapshot after after, in format 2, as a delta
// when delta; nil on 304.
func (b *bundle) getSnapshot(after int64, delta bool) *openapi.Snapshot {
	b.t.Helper()
	path := fmt.Sprintf("/v1/nodes/n1/snapshot?after=%d&wait=0s", after)
	if delta {
		path += "&delta=true"
	}
	res := b.do(b.Node, http.MethodGet, path, nil, "Fulcrum-Agent-Format", "2")
	switch res.Status {
	case http.StatusNotModified:
		return nil
	case http.StatusOK:
	default:
		b.t.Fatalf("GET %s: %d %s", path, res.Status, res.Raw)
	}
	var s openapi.Snapshot
	if err := json.Unmarshal(res.Raw, &s); err != nil {
		b.t.Fatal(err)
	}
	return &s
}

// canonicalSnapshot is what a node serves from a snapshot: the HAProxy model
// it converts to, each load balancer's revision and the certificates (the
// objects' statuses, which reports change without a revision, left out).
type canonicalSnapshot struct {
	Revision  int64
	Config    haproxy.Config
	LBs       map[string]int64
	Certs     []openapi.SnapshotCertificate
	Node      *openapi.SnapshotNode
	Heartbeat *int
}

func canonical(t *testing.T, s *openapi.Snapshot) canonicalSnapshot {
	t.Helper()
	cfg, err := snapconv.ToConfig(s, haproxy.Global{}, func(id string) string { return "/certs/" + id + ".pem" })
	if err != nil {
		t.Fatalf("convert snapshot %d: %v", s.Revision, err)
	}
	c := canonicalSnapshot{Revision: s.Revision, Config: cfg, LBs: map[string]int64{}, Certs: s.Certificates, Node: s.Node, Heartbeat: s.HeartbeatIntervalMs}
	for _, lb := range s.LoadBalancers {
		c.LBs[lb.LoadBalancer.Id] = lb.Revision
	}
	return c
}

// deltaModel tracks the live objects of a random write sequence.
type deltaModel struct {
	b     *bundle
	rng   *rand.Rand
	lbs   map[string]*modelLB // by id
	certs map[string][]string // tenant token → certificate ids
	port  int
}

type modelLB struct {
	token              string
	pools, listeners   []string
	members            map[string][]string // pool → members
	httpsListenerCerts []string
}

func pick[T any](rng *rand.Rand, s []T) T { return s[rng.Intn(len(s))] }

// anyLB picks a live load balancer, one with a pool holding members when
// there is one and withMembers.
func (m *deltaModel) anyLB(withMembers bool) (string, *modelLB) {
	if len(m.lbs) == 0 {
		return "", nil
	}
	ids := make([]string, 0, len(m.lbs))
	for id, lb := range m.lbs {
		if !withMembers || (len(lb.pools) > 0 && len(lb.members[lb.pools[0]]) > 0) {
			ids = append(ids, id)
		}
	}
	if len(ids) == 0 {
		return m.anyLB(false)
	}
	slices.Sort(ids)
	id := pick(m.rng, ids)
	return id, m.lbs[id]
}

// try sends a write; a 4xx (a conflict the model did not foresee) is no
// failure, a 5xx is.
func (m *deltaModel) try(token, method, path string, body any) (map[string]any, bool) {
	m.b.t.Helper()
	res := m.b.do(token, method, path, body)
	if res.Status >= 500 {
		m.b.t.Fatalf("%s %s: %d %s", method, path, res.Status, res.Raw)
	}
	return res.Body, res.Status < 300
}

// step makes one random write and says what it was.
func (m *deltaModel) step() string {
	rng := m.rng
	tokens := []string{m.b.TokenA, m.b.TokenB}
	op := rng.Intn(14)
	id, lb := m.anyLB(op >= 6 && op <= 9)
	m.port++
	switch {
	case op == 0 || lb == nil:
		tok := pick(rng, tokens)
		if body, ok := m.try(tok, http.MethodPost, "/v1/load-balancers", map[string]any{"name": fmt.Sprintf("lb%d", m.port)}); ok {
			m.lbs[body["id"].(string)] = &modelLB{token: tok, members: map[string][]string{}}
		}
		return "create lb"
	case op == 1:
		m.try(lb.token, http.MethodPatch, "/v1/load-balancers/"+id, map[string]any{"description": fmt.Sprintf("d%d", m.port), "enabled": rng.Intn(4) > 0})
		return "patch lb"
	case op == 2:
		if _, ok := m.try(lb.token, http.MethodDelete, "/v1/load-balancers/"+id+"?cascade=true", nil); ok {
			delete(m.lbs, id)
		}
		return "delete lb"
	case op == 3:
		if body, ok := m.try(lb.token, http.MethodPost, "/v1/pools", map[string]any{"load_balancer_id": id, "protocol": "http", "name": "p"}); ok {
			lb.pools = append(lb.pools, body["id"].(string))
		}
		return "create pool"
	case op == 4 && len(lb.pools) > 0:
		algs := []string{"round_robin", "least_connections", "source_ip", "random"}
		m.try(lb.token, http.MethodPatch, "/v1/pools/"+pick(rng, lb.pools), map[string]any{"algorithm": pick(rng, algs)})
		return "patch pool"
	case op == 5 && len(lb.pools) > 0:
		p := pick(rng, lb.pools)
		if _, ok := m.try(lb.token, http.MethodDelete, "/v1/pools/"+p+"?cascade=true", nil); ok {
			lb.pools = slices.DeleteFunc(lb.pools, func(s string) bool { return s == p })
			delete(lb.members, p)
		}
		return "delete pool"
	case (op == 6 || op == 7) && len(lb.pools) > 0:
		p := pick(rng, lb.pools)
		if body, ok := m.try(lb.token, http.MethodPost, "/v1/members", map[string]any{"pool_id": p, "address": "127.0.0.1", "port": 9000 + m.port}); ok {
			lb.members[p] = append(lb.members[p], body["id"].(string))
		}
		return "create member"
	case op == 8 && len(lb.pools) > 0 && len(lb.members[lb.pools[0]]) > 0:
		m.try(lb.token, http.MethodPatch, "/v1/members/"+pick(rng, lb.members[lb.pools[0]]), map[string]any{"weight": rng.Intn(200), "enabled": rng.Intn(3) > 0})
		return "patch member"
	case op == 9 && len(lb.pools) > 0 && len(lb.members[lb.pools[0]]) > 0:
		p := lb.pools[0]
		mem := pick(rng, lb.members[p])
		if _, ok := m.try(lb.token, http.MethodDelete, "/v1/members/"+mem, nil); ok {
			lb.members[p] = slices.DeleteFunc(lb.members[p], func(s string) bool { return s == mem })
		}
		return "delete member"
	case op == 10:
		body := map[string]any{"load_balancer_id": id, "protocol": "http", "port": 1000 + m.port}
		if len(lb.pools) > 0 {
			body["default_pool_id"] = pick(rng, lb.pools)
		}
		if res, ok := m.try(lb.token, http.MethodPost, "/v1/listeners", body); ok {
			lb.listeners = append(lb.listeners, res["id"].(string))
		}
		return "create listener"
	case op == 11 && len(lb.listeners) > 0:
		l := pick(rng, lb.listeners)
		if _, ok := m.try(lb.token, http.MethodDelete, "/v1/listeners/"+l+"?cascade=true", nil); ok {
			lb.listeners = slices.DeleteFunc(lb.listeners, func(s string) bool { return s == l })
		}
		return "delete listener"
	case op == 12:
		certs := m.certs[lb.token]
		if len(certs) == 0 || rng.Intn(3) == 0 {
			certPEM, keyPEM := testcerts.SelfSigned(m.b.t, fmt.Sprintf("c%d.example.test", m.port))
			if res, ok := m.try(lb.token, http.MethodPost, "/v1/certificates", map[string]any{"name": "c", "certificate": certPEM, "private_key": keyPEM}); ok {
				m.certs[lb.token] = append(m.certs[lb.token], res["id"].(string))
			}
			return "create certificate"
		}
		body := map[string]any{"load_balancer_id": id, "protocol": "https", "port": 1000 + m.port, "certificate_ids": []string{pick(rng, certs)}}
		if res, ok := m.try(lb.token, http.MethodPost, "/v1/listeners", body); ok {
			lb.listeners = append(lb.listeners, res["id"].(string))
		}
		return "create https listener"
	case op == 13 && len(m.certs[lb.token]) > 0:
		certPEM, keyPEM := testcerts.SelfSigned(m.b.t, fmt.Sprintf("r%d.example.test", m.port))
		m.try(lb.token, http.MethodPatch, "/v1/certificates/"+pick(rng, m.certs[lb.token]), map[string]any{"certificate": certPEM, "private_key": keyPEM})
		return "rotate certificate"
	}
	return "nothing"
}

// TestSnapshotDeltaProperty: over a random sequence of writes (load
// balancers, listeners, pools, members, certificates: created, changed,
// deleted) with purges of deleted objects interleaved (the node acks an
// earlier or the newest revision at random steps, then Purge runs), the delta
// from any earlier revision merged into the snapshot at that revision is the
// complete snapshot now (same HAProxy model, load balancer revisions and
// certificates); no delete is lost; once deletes after a revision are purged,
// a node asking after it gets a complete snapshot; no revision falls (the
// group's, a load balancer's) and one load balancer revision never names two
// contents (agents cache conversions by it). The seed is printed
// (FULCRUM_DELTA_SEED replays one); FULCRUM_DELTA_SEEDS=n runs n seeds from
// it.
func TestSnapshotDeltaProperty(t *testing.T) {
	t.Parallel()
	seed := int64(20261127)
	if s := os.Getenv("FULCRUM_DELTA_SEED"); s != "" {
		seed, _ = strconv.ParseInt(s, 10, 64)
	}
	seeds := 1
	if s := os.Getenv("FULCRUM_DELTA_SEEDS"); s != "" {
		seeds, _ = strconv.Atoi(s)
	}
	if seeds <= 1 {
		deltaProperty(t, seed)
		return
	}
	for k := range int64(seeds) {
		t.Run(fmt.Sprintf("seed%d", seed+k), func(t *testing.T) {
			t.Parallel()
			deltaProperty(t, seed+k)
		})
	}
}

func deltaProperty(t *testing.T, seed int64) {
	t.Logf("seed %d (FULCRUM_DELTA_SEED=%d replays it)", seed, seed)
	b := setup(t, withQuotas(store.Quotas{LoadBalancers: 100, Listeners: 500, Pools: 500, Members: 2000, RoutingRules: 500, Certificates: 100}))
	// A serving node that acks nothing yet holds every delete back from Purge.
	b.must(http.StatusOK, b.Node, http.MethodPut, "/v1/nodes/n1", map[string]any{"node_group_id": b.GroupID})
	m := &deltaModel{b: b, rng: rand.New(rand.NewSource(seed)), lbs: map[string]*modelLB{}, certs: map[string][]string{}}
	purgedRevision := func() int64 {
		var rev int64
		if err := b.Store.PoolForTests().QueryRow(context.Background(),
			"SELECT COALESCE(max(purged_revision), 0) FROM snapshot_purges").Scan(&rev); err != nil {
			t.Fatal(err)
		}
		return rev
	}

	// Some load balancers to begin with, so most writes change a few of many.
	for i := range 6 {
		tok := []string{b.TokenA, b.TokenB}[i%2]
		m.lbs[b.create(tok, "/v1/load-balancers", map[string]any{"name": fmt.Sprintf("base%d", i)})] = &modelLB{token: tok, members: map[string][]string{}}
	}
	type point struct {
		rev  int64
		snap *openapi.Snapshot
	}
	var points []point
	tally := map[string]int{}
	seen := lbContents{}
	const steps = 120
	var deltas, fulls, purgedFulls, checks, purges int
	// purged is how far deletes were purged before the write the newest
	// point is at: the group's part at that point, built after the write,
	// can prove no delta after an older revision (a part built before a
	// purge can, and may answer one).
	purged := int64(0)
	ackPurge := func(i int) {
		// The node acks a revision some way back, or the newest: deletes
		// up to it are purged (bundle.do runs Purge after a report).
		ack := points[m.rng.Intn(len(points))].rev
		if m.rng.Intn(3) == 0 {
			ack = points[len(points)-1].rev
		}
		b.must(http.StatusNoContent, b.Node, http.MethodPost, "/v1/nodes/n1/reports", map[string]any{"revision": ack, "status": "ack"})
		purges++
		t.Logf("step %d: acked %d, purged up to %d", i, ack, purgedRevision())
	}
	for i := 1; i <= steps; i++ {
		if len(points) > 0 && m.rng.Intn(12) == 0 {
			ackPurge(i)
		}
		purgedBefore := purgedRevision()
		what := m.step()
		for tries := 0; what == "nothing" && tries < 10; tries++ {
			what = m.step()
		}
		tally[what]++
		cur := b.getSnapshot(0, false)
		seen.check(t, fmt.Sprintf("step %d (%s): full snapshot %d", i, what, cur.Revision), cur)
		if len(points) > 0 {
			last := points[len(points)-1]
			if cur.Revision < last.rev {
				t.Fatalf("step %d (%s): the group's revision fell from %d to %d", i, what, last.rev, cur.Revision)
			}
			for id, r := range lbRevisions(last.snap) {
				if r2, ok := lbRevisions(cur)[id]; ok && r2 < r {
					t.Fatalf("step %d (%s): load balancer %s fell from revision %d to %d", i, what, id, r, r2)
				}
			}
		}
		if len(points) == 0 || cur.Revision > points[len(points)-1].rev {
			points = append(points, point{cur.Revision, cur})
			purged = purgedBefore
		} else {
			points[len(points)-1].snap = cur
		}
		if m.rng.Intn(12) == 0 {
			ackPurge(i) // the group's part at cur was read before this purge
		}
		if i%6 != 0 {
			continue
		}
		want := canonical(t, cur)
		// Every earlier point would do; a few random ones, the first and
		// the last keep the test short.
		idx := []int{0, len(points) - 2}
		for range 4 {
			idx = append(idx, m.rng.Intn(len(points)))
		}
		for _, k := range idx {
			if k < 0 || points[k].rev >= cur.Revision {
				continue
			}
			p := points[k]
			d := b.getSnapshot(p.rev, true)
			if d == nil {
				t.Fatalf("step %d (%s): nothing after %d, want revision %d", i, what, p.rev, cur.Revision)
			}
			checks++
			seen.check(t, fmt.Sprintf("step %d (%s): the answer after %d", i, what, p.rev), d)
			if d.FormatVersion != 2 {
				t.Fatalf("format_version %d, want 2", d.FormatVersion)
			}
			if !snapconv.IsDelta(d) {
				if p.rev < purged {
					purgedFulls++
				} else {
					fulls++
				}
			} else {
				deltas++
				if p.rev < purged {
					t.Fatalf("step %d: a delta after %d though deletes up to %d are purged", i, p.rev, purged)
				}
				// No delete lost: every load balancer gone since is named.
				gone := map[string]bool{}
				for _, id := range *d.DeletedLoadBalancers {
					gone[id] = true
				}
				for _, lb := range p.snap.LoadBalancers {
					if _, live := want.LBs[lb.LoadBalancer.Id]; !live && !gone[lb.LoadBalancer.Id] {
						t.Fatalf("step %d: load balancer %s deleted after %d is not in the delta's deleted_load_balancers %v", i, lb.LoadBalancer.Id, p.rev, *d.DeletedLoadBalancers)
					}
				}
			}
			merged, err := snapconv.Merge(p.snap, d)
			if err != nil {
				t.Fatalf("step %d: merge the delta after %d: %v", i, p.rev, err)
			}
			if got := canonical(t, merged); !reflect.DeepEqual(got, want) {
				gj, _ := json.MarshalIndent(got, "", " ")
				wj, _ := json.MarshalIndent(want, "", " ")
				t.Fatalf("step %d (%s): snapshot %d merged with the delta after it differs from the full snapshot %d\nmerged: %s\nfull: %s",
					i, what, p.rev, cur.Revision, gj, wj)
			}
		}
	}
	t.Logf("writes tried: %v", tally)
	t.Logf("%d writes, %d revisions, %d purges, %d checks: %d deltas, %d full (delta not smaller), %d full (purged past after)",
		steps, len(points), purges, checks, deltas, fulls, purgedFulls)
	if deltas == 0 || purgedFulls == 0 {
		t.Errorf("the sequence exercised %d deltas and %d purge-forced full snapshots: want both", deltas, purgedFulls)
	}
}

// TestSnapshotFormatNegotiation: an agent that announces no format (format
// 1, an agent from before formats) gets complete snapshots as before; format
// 2 gets deltas when it asks; a format the API does not serve, or a delta in
// format 1, is a 400 naming the field.
func TestSnapshotFormatNegotiation(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tr := b.buildTree(b.TokenA)
	other := b.create(b.TokenB, "/v1/load-balancers", map[string]any{"name": "other"})
	b.must(http.StatusOK, b.Node, http.MethodPut, "/v1/nodes/n1", map[string]any{"node_group_id": b.GroupID})

	old := b.must(http.StatusOK, b.Node, http.MethodGet, "/v1/nodes/n1/snapshot?after=0&wait=0s", nil)
	if old["format_version"] != float64(1) || old["delta"] != nil || len(old["load_balancers"].([]any)) != 2 {
		t.Errorf("no format announced: format_version %v, delta %v, %d load balancers; want 1, none, 2", old["format_version"], old["delta"], len(old["load_balancers"].([]any)))
	}
	full := b.getSnapshot(0, false)
	if full.FormatVersion != 2 || snapconv.IsDelta(full) || len(full.LoadBalancers) != 2 {
		t.Fatalf("format 2, no delta asked: format %d, delta %v, %d load balancers", full.FormatVersion, full.Delta, len(full.LoadBalancers))
	}
	for _, lb := range full.LoadBalancers {
		if lb.Revision <= 0 || lb.Revision > full.Revision {
			t.Errorf("load balancer %s revision %d, want in (0, %d]", lb.LoadBalancer.Id, lb.Revision, full.Revision)
		}
	}

	// One member changes: the delta holds its load balancer only, with
	// the certificate it uses.
	b.must(http.StatusOK, b.TokenA, http.MethodPatch, "/v1/members/"+tr.Member, map[string]any{"weight": 7})
	d := b.getSnapshot(full.Revision, true)
	if !snapconv.IsDelta(d) || *d.BaseRevision != full.Revision || len(d.LoadBalancers) != 1 || d.LoadBalancers[0].LoadBalancer.Id != tr.LB ||
		len(d.Certificates) != 1 || d.Certificates[0].Id != tr.Cert || len(*d.DeletedLoadBalancers) != 0 {
		t.Fatalf("delta after a member change: %+v", d)
	}
	// A format-1 agent asking the same gets the complete snapshot.
	old = b.must(http.StatusOK, b.Node, http.MethodGet, fmt.Sprintf("/v1/nodes/n1/snapshot?after=%d&wait=0s", full.Revision), nil)
	if old["delta"] != nil || len(old["load_balancers"].([]any)) != 2 {
		t.Errorf("format 1 after a change: delta %v, %d load balancers; want a complete snapshot", old["delta"], len(old["load_balancers"].([]any)))
	}
	// A delete shows in deleted_load_balancers.
	b.must(http.StatusAccepted, b.TokenB, http.MethodDelete, "/v1/load-balancers/"+other, nil)
	d = b.getSnapshot(d.Revision, true)
	if !snapconv.IsDelta(d) || len(d.LoadBalancers) != 0 || !reflect.DeepEqual(*d.DeletedLoadBalancers, []string{other}) || len(d.Certificates) != 0 {
		t.Fatalf("delta after a delete: %+v", d)
	}

	for _, c := range []struct{ format, query, field string }{
		{"3", "", "Fulcrum-Agent-Format"},
		{"0", "", "Fulcrum-Agent-Format"},
		{"two", "", "Fulcrum-Agent-Format"},
		{"", "&delta=true", "delta"},
	} {
		var headers []string
		if c.format != "" {
			headers = []string{"Fulcrum-Agent-Format", c.format}
		}
		res := b.do(b.Node, http.MethodGet, "/v1/nodes/n1/snapshot?after=0&wait=0s"+c.query, nil, headers...)
		if msg, ok := res.FieldMessage(c.field); res.Status != http.StatusBadRequest || !ok {
			t.Errorf("format %q%s: %d %s, want 400 naming %s", c.format, c.query, res.Status, res.Raw, c.field)
		} else {
			t.Logf("format %q%s: %s: %s", c.format, c.query, c.field, msg)
		}
	}
}

// TestSnapshotDeltaBytes: a change to one load balancer of many sends that
// load balancer only (the figure for a group of n load balancers is logged).
func TestSnapshotDeltaBytes(t *testing.T) {
	t.Parallel()
	const n = 40
	b := setup(t, withQuotas(store.Quotas{LoadBalancers: n, Listeners: n, Pools: n, Members: n, RoutingRules: 10, Certificates: 10}))
	b.must(http.StatusOK, b.Node, http.MethodPut, "/v1/nodes/n1", map[string]any{"node_group_id": b.GroupID})
	var member string
	for i := range n {
		lb := b.create(b.TokenA, "/v1/load-balancers", map[string]any{"name": fmt.Sprintf("lb%d", i)})
		pool := b.create(b.TokenA, "/v1/pools", map[string]any{"load_balancer_id": lb, "protocol": "http", "name": "p"})
		member = b.create(b.TokenA, "/v1/members", map[string]any{"pool_id": pool, "address": "127.0.0.1", "port": 9000 + i})
		b.create(b.TokenA, "/v1/listeners", map[string]any{"load_balancer_id": lb, "protocol": "http", "port": 80, "default_pool_id": pool})
	}
	full := b.getSnapshot(0, false)
	b.must(http.StatusOK, b.TokenA, http.MethodPatch, "/v1/members/"+member, map[string]any{"weight": 3})
	path := fmt.Sprintf("/v1/nodes/n1/snapshot?after=%d&wait=0s", full.Revision)
	fullBytes := len(b.do(b.Node, http.MethodGet, path, nil, "Fulcrum-Agent-Format", "2").Raw)
	deltaRes := b.do(b.Node, http.MethodGet, path+"&delta=true", nil, "Fulcrum-Agent-Format", "2")
	var d openapi.Snapshot
	if err := json.Unmarshal(deltaRes.Raw, &d); err != nil {
		t.Fatal(err)
	}
	if !snapconv.IsDelta(&d) || len(d.LoadBalancers) != 1 {
		t.Fatalf("a member change in a group of %d load balancers: delta %v with %d load balancers, want 1", n, d.Delta, len(d.LoadBalancers))
	}
	t.Logf("a member change in a group of %d load balancers: full snapshot %d bytes, delta %d bytes", n, fullBytes, len(deltaRes.Raw))
	if len(deltaRes.Raw)*4 > fullBytes {
		t.Errorf("delta %d bytes is not much smaller than the full %d", len(deltaRes.Raw), fullBytes)
	}
}
