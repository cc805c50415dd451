package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/fulcrumlb/fulcrum/openapi"
)

// BenchmarkApplyLoadBalancerWithoutListener measures Apply of a snapshot
// that adds a load balancer without listeners (a create's first three
// writes: load balancer, pool, member) with 1,000 load balancers of 10
// members on the node (HAProxy faked; snapshot.json written in the
// background, as under Run). Nothing changes in HAProxy; the apply is on
// the stream's path (the listener's frame is read after it).
func BenchmarkApplyLoadBalancerWithoutListener(b *testing.B) {
	a, _, _ := unitAgent(&testing.T{})
	ctx := context.Background()
	snap := manyLBs(1, 1000, 10)
	for i := range snap.LoadBalancers {
		snap.LoadBalancers[i].Revision = 1
	}
	// By id, as the API sends them (and Merge keeps them).
	slices.SortFunc(snap.LoadBalancers, func(x, y openapi.SnapshotLoadBalancer) int {
		return cmpString(x.LoadBalancer.Id, y.LoadBalancer.Id)
	})
	if err := a.Apply(ctx, snap); err != nil {
		b.Fatal(err)
	}
	a.persistAsync = true
	rev := int64(1)
	var took time.Duration
	for b.Loop() {
		rev++
		next := *snap
		next.Revision = rev
		sl := lbPool(fmt.Sprintf("lb_z%06d", rev), "127.9.0.1", member(fmt.Sprintf("mbr_z%06d", rev), "10.0.0.1", 1))
		sl.Listeners, sl.Revision = nil, rev
		next.LoadBalancers = append(slices.Clone(snap.LoadBalancers), sl)
		raw, _ := json.Marshal(&next) // fresh values, as decoding a frame gives
		var fresh openapi.Snapshot
		if err := json.Unmarshal(raw, &fresh); err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		if err := a.Apply(ctx, &fresh); err != nil {
			b.Fatal(err)
		}
		took += time.Since(start)
	}
	b.ReportMetric(float64(took.Microseconds())/1000/float64(b.N), "ms/apply")
}

func cmpString(x, y string) int {
	switch {
	case x < y:
		return -1
	case x > y:
		return 1
	}
	return 0
}
