package agent

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"

	snapconv "github.com/fulcrumlb/fulcrum/dataplane/snapshot"
	"github.com/fulcrumlb/fulcrum/openapi"
)

// BenchmarkMemberChangeDelta is a member change as the agent takes it from
// its stream at 1,000 load balancers of 10 members (HAProxy faked): the
// delta's JSON decoded, merged into the snapshot held (receive), applied
// through the runtime API, and haproxy.cfg written as configLoop writes it
// afterwards. Its B/op and allocs/op are the agent's garbage per change.
func BenchmarkMemberChangeDelta(b *testing.B) {
	t := &testing.T{}
	a, _, _ := unitAgent(t)
	a.persistAsync = true // snapshot.json by persistLoop, as under Run (not here)
	ctx := context.Background()
	snap := manyLBs(1, 1000, 10)
	slices.SortFunc(snap.LoadBalancers, func(x, y openapi.SnapshotLoadBalancer) int {
		return strings.Compare(x.LoadBalancer.Id, y.LoadBalancer.Id) // as the API sends them
	})
	snap.FormatVersion = snapconv.FormatDelta
	for i := range snap.LoadBalancers {
		snap.LoadBalancers[i].Revision = 1
	}
	if full := a.receive(ctx, snap); full == nil || a.Apply(ctx, full) != nil {
		b.Fatal("first apply")
	}
	a.flushConfig()
	changed := clone(snap.LoadBalancers[500])
	rev := int64(1)
	for b.Loop() {
		b.StopTimer()
		rev++
		changed.Members = slices.Clone(changed.Members)
		changed.Members[0].Enabled = rev%2 == 1
		changed.Revision = rev
		base, yes := rev-1, true
		d := openapi.Snapshot{Revision: rev, FormatVersion: snapconv.FormatDelta, NodeGroupId: snap.NodeGroupId, Delta: &yes,
			BaseRevision: &base, LoadBalancers: []openapi.SnapshotLoadBalancer{changed}}
		raw, _ := json.Marshal(&d)
		b.StartTimer()
		var in openapi.Snapshot
		if err := json.Unmarshal(raw, &in); err != nil {
			b.Fatal(err)
		}
		full := a.receive(ctx, &in)
		if full == nil {
			b.Fatal("delta not merged")
		}
		if err := a.Apply(ctx, full); err != nil {
			b.Fatal(err)
		}
		a.flushConfig()
	}
	if a.AppliedRevision() != rev {
		b.Fatalf("applied %d, want %d", a.AppliedRevision(), rev)
	}
}
