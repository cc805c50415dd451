package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/fulcrumlb/fulcrum/api"
	"github.com/fulcrumlb/fulcrum/api/snapshot"
	"github.com/fulcrumlb/fulcrum/api/store"
	"github.com/fulcrumlb/fulcrum/openapi"
)

// The long-poll fan-out (api/snapshot/view.go, api/auth/cache.go): a write
// woken to every poller of a group costs the database a bounded number of
// statements, whatever the number of pollers; a node's own changes still
// reach it; a revoked node token stops working within the cache's bound.

// groupNodeToken issues a node token bound to the bundle's group.
func (b *bundle) groupNodeToken() (id, bearer string) {
	b.t.Helper()
	ctx := context.Background()
	err := b.Store.Write(ctx, false, func(tx *store.Tx) error {
		t, s, err := api.IssueToken(ctx, tx, store.TokenNode, "", b.GroupID, "group", "", nil)
		if err == nil {
			id, bearer = t.ID, s
		}
		return err
	})
	if err != nil {
		b.t.Fatal(err)
	}
	return id, bearer
}

// pollResult is one long-poll's answer.
type pollResult struct {
	node   string
	status int
	rev    int64
	admin  string
	err    error
}

// longPoll polls node's snapshot after after (format 2, deltas) for up to
// wait.
func (b *bundle) longPoll(token, node string, after int64, wait string) pollResult {
	path := fmt.Sprintf("/v1/nodes/%s/snapshot?after=%d&wait=%s&delta=true", node, after, wait)
	res, err := b.send(token, http.MethodGet, path, nil, "Fulcrum-Agent-Format", "2")
	if err != nil {
		return pollResult{node: node, err: err}
	}
	out := pollResult{node: node, status: res.Status}
	if res.Status == http.StatusOK {
		var s struct {
			Revision int64 `json:"revision"`
			Node     struct {
				AdminState string `json:"admin_state"`
			} `json:"node"`
		}
		if err := json.Unmarshal(res.Raw, &s); err != nil {
			out.err = err
		}
		out.rev, out.admin = s.Revision, s.Node.AdminState
	}
	return out
}

// pollers starts a long-poll of each node after the revision it holds and
// returns their answers' channel.
func (b *bundle) pollers(token string, held map[string]int64, wait string) <-chan pollResult {
	out := make(chan pollResult, len(held))
	for n, after := range held {
		go func() { out <- b.longPoll(token, n, after, wait) }()
	}
	return out
}

// fanoutFleet registers n nodes with a group token and has each fetch its
// snapshot once (which also puts the token in the replica's cache): the
// revision each holds.
func fanoutFleet(t *testing.T, b *bundle, token string, n int) map[string]int64 {
	t.Helper()
	held := map[string]int64{}
	for i := range n {
		name := fmt.Sprintf("f%03d", i)
		b.must(http.StatusOK, token, http.MethodPut, "/v1/nodes/"+name, map[string]any{"node_group_id": b.GroupID})
	}
	for i := range n {
		name := fmt.Sprintf("f%03d", i)
		r := b.longPoll(token, name, 0, "0s")
		if r.status != http.StatusOK {
			t.Fatalf("first snapshot of %s: %+v, want 200", name, r)
		}
		held[name] = r.rev
	}
	return held
}

func TestFanoutQueriesIndependentOfPollers(t *testing.T) {
	b := setup(t, withConfig(func(c *api.Config) {
		c.RateLimits = noRateLimits
		c.NodeTokenTTL = 10 * time.Minute // no token lookups in the measure
	}))
	tr := b.buildTree(b.TokenA)
	_, token := b.groupNodeToken()
	const pollers = 60
	held := fanoutFleet(t, b, token, pollers)

	results := b.pollers(token, held, "30s")
	// Let every long-poll park (their first turn reads memory only).
	time.Sleep(time.Second)
	before := b.Store.Queries()
	b.must(http.StatusOK, b.TokenA, http.MethodPatch, "/v1/members/"+tr.Member, map[string]any{"weight": 7})
	afterWrite := b.Store.Queries()
	want := b.revision()
	for range held {
		r := <-results
		if r.err != nil || r.status != http.StatusOK || r.rev < want {
			t.Fatalf("poller %s after the write: %+v, want 200 at revision %d", r.node, r, want)
		}
	}
	fanout := b.Store.Queries() - afterWrite
	t.Logf("one write woken to %d pollers: %d statements for the write, %d for the fan-out (every statement of the replica, BEGIN/COMMIT included)",
		pollers, afterWrite-before, fanout)
	// One poll view and one snapshot build (each a few statements), twice
	// at most if a read raced the notification, plus the replica's
	// background work; before the views, every poller cost about 6.
	if fanout > 50 {
		t.Fatalf("fan-out of one write to %d pollers took %d statements, want a bound independent of the pollers (≤ 50)", pollers, fanout)
	}
}

func TestFanoutCordonDrainReachTheirNode(t *testing.T) {
	b := setup(t)
	b.buildTree(b.TokenA)
	_, token := b.groupNodeToken()
	held := fanoutFleet(t, b, token, 5)

	for _, step := range []struct{ action, want string }{{"cordon", "cordoned"}, {"drain", "draining"}, {"uncordon", "in_service"}} {
		results := b.pollers(token, held, "3s")
		time.Sleep(300 * time.Millisecond) // parked on the views
		b.must(http.StatusOK, b.Admin, http.MethodPost, "/v1/nodes/f002/"+step.action, nil)
		got := map[string]pollResult{}
		for range held {
			r := <-results
			got[r.node] = r
		}
		r := got["f002"]
		if r.err != nil || r.status != http.StatusOK || r.admin != step.want {
			t.Fatalf("%s: f002's long-poll answered %+v, want 200 with admin_state %s", step.action, r, step.want)
		}
		for n := range held {
			if n != "f002" && got[n].status != http.StatusNotModified {
				t.Fatalf("%s of f002: %s's long-poll answered %+v, want 304 (nothing of it changed)", step.action, n, got[n])
			}
		}
		held["f002"] = r.rev
		if again := b.longPoll(token, "f002", r.rev, "0s"); again.status != http.StatusNotModified {
			t.Fatalf("%s: f002 polled again at %d: %+v, want 304", step.action, r.rev, again)
		}
	}
}

func TestFanoutRevokedNodeTokenRefusedWithinBound(t *testing.T) {
	const ttl = 2 * time.Second
	b := setup(t, withConfig(func(c *api.Config) {
		c.RateLimits = noRateLimits
		c.NodeTokenTTL = ttl
	}))
	ctx := context.Background()

	// refusedWithin polls until the token is refused, within ttl and a
	// margin for a loaded machine.
	refusedWithin := func(what, token string) {
		t.Helper()
		start := time.Now()
		for {
			res, err := b.send(token, http.MethodGet, "/v1/nodes/n1/snapshot?wait=0s", nil)
			if err != nil {
				t.Fatal(err)
			}
			if res.Status == http.StatusUnauthorized {
				t.Logf("%s: refused %s after the change (cache bound %s from the last check, polled every 100 ms)", what, time.Since(start).Round(time.Millisecond), ttl)
				return
			}
			if res.Status != http.StatusOK {
				t.Fatalf("%s: %d %s", what, res.Status, res.Raw)
			}
			if time.Since(start) > ttl+5*time.Second {
				t.Fatalf("%s: still accepted %s later (bound %s)", what, time.Since(start), ttl)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	// Deleted in the database (as by another replica): refused within ttl.
	id, token := b.groupNodeToken()
	b.must(http.StatusOK, token, http.MethodPut, "/v1/nodes/n1", map[string]any{"node_group_id": b.GroupID})
	b.must(http.StatusOK, token, http.MethodGet, "/v1/nodes/n1/snapshot?wait=0s", nil) // cached now
	if _, err := b.Store.PoolForTests().Exec(ctx, "DELETE FROM tokens WHERE id = $1", id); err != nil {
		t.Fatal(err)
	}
	refusedWithin("deleted in the database", token)

	// Expired in the database: refused within ttl.
	id, token = b.groupNodeToken()
	b.must(http.StatusOK, token, http.MethodGet, "/v1/nodes/n1/snapshot?wait=0s", nil)
	if _, err := b.Store.PoolForTests().Exec(ctx, "UPDATE tokens SET expires_at = now() - interval '1 second' WHERE id = $1", id); err != nil {
		t.Fatal(err)
	}
	refusedWithin("expired in the database", token)

	// Revoked through this replica: refused at once.
	id, token = b.groupNodeToken()
	b.must(http.StatusOK, token, http.MethodGet, "/v1/nodes/n1/snapshot?wait=0s", nil)
	b.must(http.StatusNoContent, b.Admin, http.MethodDelete, "/v1/tokens/"+id, nil)
	b.must(http.StatusUnauthorized, token, http.MethodGet, "/v1/nodes/n1/snapshot?wait=0s", nil)

	// A cached token still checks its secret.
	_, token = b.groupNodeToken()
	b.must(http.StatusOK, token, http.MethodGet, "/v1/nodes/n1/snapshot?wait=0s", nil)
	b.must(http.StatusUnauthorized, token+"x", http.MethodGet, "/v1/nodes/n1/snapshot?wait=0s", nil)
	b.must(http.StatusOK, token, http.MethodGet, "/v1/nodes/n1/snapshot?wait=0s", nil)
}

// versionShapes show each object by its id, load balancer and version (every
// change of an object bumps its version), so a stale object shows.
var versionShapes = snapshot.Shapes{
	LoadBalancer: func(lb *store.LoadBalancer) openapi.LoadBalancer {
		return openapi.LoadBalancer{Id: lb.ID, Name: lb.Name, Version: lb.Version, Enabled: lb.Enabled}
	},
	Listener: func(l *store.Listener) openapi.Listener {
		return openapi.Listener{Id: l.ID, LoadBalancerId: l.LoadBalancerID, Version: l.Version}
	},
	Pool: func(p *store.Pool) openapi.Pool {
		return openapi.Pool{Id: p.ID, LoadBalancerId: p.LoadBalancerID, Version: p.Version}
	},
	Member: func(m *store.Member) openapi.Member {
		return openapi.Member{Id: m.ID, LoadBalancerId: m.LoadBalancerID, Version: m.Version, Port: m.Port}
	},
	RoutingRule: func(r *store.RoutingRule) openapi.RoutingRule {
		return openapi.RoutingRule{Id: r.ID, LoadBalancerId: r.LoadBalancerID, Version: r.Version}
	},
}

// A group's part built from the previous one (only the load balancers
// changed since read again) is exactly what a build from nothing gives,
// after every kind of write.
func TestSnapshotCacheIncrementalBuild(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.register("n1")
	builder := snapshot.NewBuilder(versionShapes, testKey)
	c := snapshot.NewCache(builder, b.Store, 10*time.Second)
	check := func(what string) {
		t.Helper()
		s := pollNode(t, b, c, "n1", 0)
		if s == nil {
			t.Fatalf("%s: no snapshot", what)
		}
		sameAsBuilt(t, b, builder, s, "n1", 0)
	}
	trees := []tree{b.buildTree(b.TokenA), b.buildTree(b.TokenB)}
	check("two trees")
	other := b.create(b.TokenA, "/v1/load-balancers", map[string]any{"name": "other"})
	check("a new load balancer")
	for i, step := range []func(){
		func() {
			b.must(http.StatusOK, b.TokenA, http.MethodPatch, "/v1/members/"+trees[0].Member, map[string]any{"weight": 3})
		},
		func() {
			b.must(http.StatusOK, b.TokenB, http.MethodPatch, "/v1/load-balancers/"+trees[1].LB, map[string]any{"name": "renamed"})
		},
		func() {
			b.create(b.TokenA, "/v1/members", map[string]any{"pool_id": trees[0].Pool, "address": "127.0.0.2", "port": 9002})
		},
		func() { b.must(http.StatusAccepted, b.TokenA, http.MethodDelete, "/v1/members/"+trees[0].Member, nil) },
		func() {
			b.must(http.StatusOK, b.TokenB, http.MethodPatch, "/v1/listeners/"+trees[1].Listener, map[string]any{"port": 8080})
		},
		func() { b.must(http.StatusAccepted, b.TokenA, http.MethodDelete, "/v1/load-balancers/"+other, nil) },
	} {
		builds := c.Builds()
		step()
		check(fmt.Sprintf("step %d", i))
		if c.Builds() != builds+1 {
			t.Fatalf("step %d: %d builds, want one more than %d", i, c.Builds(), builds)
		}
	}
}
