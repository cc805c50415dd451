package agent

import (
	"context"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/fulcrumlb/fulcrum/openapi"
)

// peerSnapshot is snapshot(rev, lbs...) for node-1 of a group whose peers
// are names (each at 10.0.0.<i+1>:10000), with VRRP on eth0.
func peerSnapshot(rev int64, names []string, lbs ...openapi.SnapshotLoadBalancer) *openapi.Snapshot {
	s := snapshot(rev, lbs...)
	s.Node = &openapi.SnapshotNode{Id: "node_1", Name: "node-1", AdminState: "in_service"}
	s.Vrrp = &openapi.SnapshotVRRP{Interface: "eth0", RouterIdMin: 1, RouterIdMax: 255, AdvertIntervalMs: 100}
	if names != nil {
		ps := make([]openapi.SnapshotPeer, 0, len(names))
		for i, n := range names {
			ps = append(ps, openapi.SnapshotPeer{Name: n, Address: "10.0.0." + itoa(i+1) + ":10000"})
		}
		s.Peers = &ps
	}
	return s
}

// A change of the group's peers alone (a node joined or left: a snapshot
// whose load balancers did not change) reloads HAProxy onto the new peers
// section, checked first; the same peers in a later snapshot change nothing,
// so member changes still go through the runtime API without a reload. The
// keepalived settings and VIPs do not depend on the peers (VRRP adverts are
// multicast): a peer change leaves keepalived's configuration as it was.
func TestApplyPeersChange(t *testing.T) {
	a, f, c := unitAgent(t)
	ctx := context.Background()
	base := lbPool("lb_a", "127.0.0.2", member("mbr_1", "10.0.1.1", 1))
	two := []string{"node-1", "node-2"}
	if err := a.Apply(ctx, peerSnapshot(1, two, base)); err != nil {
		t.Fatal(err)
	}
	cfg := func() string {
		b, err := os.ReadFile(a.path("haproxy.cfg"))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	if !strings.Contains(cfg(), "peer node-2 10.0.0.2:10000") {
		t.Fatalf("no peers section:\n%s", cfg())
	}
	f.runtime.take()

	// The same peers (a snapshot decoded anew) and a weight: runtime only.
	r0, _, c0 := counts(f, c)
	w := clone(base)
	w.Members[0].Weight = 7
	if err := a.Apply(ctx, peerSnapshot(2, two, w)); err != nil {
		t.Fatal(err)
	}
	if r1, _, c1 := counts(f, c); r1 != r0 || c1 != c0 {
		t.Fatalf("a weight change with the same peers: %d reloads, %d checks; want none (runtime calls %q)", r1-r0, c1-c0, f.runtime.take())
	}
	if calls := f.runtime.take(); !slices.Equal(calls, []string{"weight pool_a/mbr_1 7"}) {
		t.Fatalf("runtime calls %q", calls)
	}

	// node-3 joins: one checked reload, nothing else changes.
	three := []string{"node-1", "node-2", "node-3"}
	settings, vips := vrrpOf(peerSnapshot(2, two, w))
	r0, _, c0 = counts(f, c)
	if err := a.Apply(ctx, peerSnapshot(3, three, w)); err != nil {
		t.Fatal(err)
	}
	if r1, _, c1 := counts(f, c); r1-r0 != 1 || c1 == c0 {
		t.Fatalf("node-3 joining: %d reloads, %d checks; want one checked reload", r1-r0, c1-c0)
	}
	if !strings.Contains(cfg(), "peer node-3 10.0.0.3:10000") || a.AppliedRevision() != 3 {
		t.Fatalf("revision %d, config:\n%s", a.AppliedRevision(), cfg())
	}
	if s, v := vrrpOf(peerSnapshot(3, three, w)); !reflect.DeepEqual(s, settings) || !slices.Equal(v, vips) {
		t.Fatalf("keepalived's settings changed with the peers: %+v %v, was %+v %v", s, v, settings, vips)
	}
	if calls := f.runtime.take(); len(calls) != 0 {
		t.Fatalf("runtime calls %q", calls)
	}

	// A newer snapshot with the same peers and load balancers: nothing to do.
	r0, _, c0 = counts(f, c)
	if err := a.Apply(ctx, peerSnapshot(4, three, w)); err != nil {
		t.Fatal(err)
	}
	if r1, _, c1 := counts(f, c); r1 != r0 || c1 != c0 {
		t.Fatalf("the same peers again: %d reloads, %d checks; want none", r1-r0, c1-c0)
	}

	// node-3 leaves: one reload, the section without it.
	if err := a.Apply(ctx, peerSnapshot(5, two, w)); err != nil {
		t.Fatal(err)
	}
	if r1, _, _ := counts(f, c); r1-r0 != 1 || strings.Contains(cfg(), "node-3") {
		t.Fatalf("node-3 leaving: %d reloads, config:\n%s", r1-r0, cfg())
	}
	// The last but one peer leaving takes the section away.
	if err := a.Apply(ctx, peerSnapshot(6, nil, w)); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(cfg(), "peers ") {
		t.Fatalf("a peers section without peers:\n%s", cfg())
	}
}
