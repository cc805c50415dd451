package snapshot

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/fulcrumlb/fulcrum/openapi"
)

func mlb(id string, rev int64, certs ...string) openapi.SnapshotLoadBalancer {
	lb := openapi.SnapshotLoadBalancer{LoadBalancer: openapi.LoadBalancer{Id: id}, Revision: rev}
	if len(certs) > 0 {
		lb.Listeners = []openapi.Listener{{Id: "lsn_" + id, CertificateIds: certs}}
	}
	return lb
}

func mdelta(base, rev int64, group string, deleted []string, certs []openapi.SnapshotCertificate, lbs ...openapi.SnapshotLoadBalancer) *openapi.Snapshot {
	t := true
	return &openapi.Snapshot{FormatVersion: 2, Delta: &t, BaseRevision: &base, Revision: rev, NodeGroupId: group,
		DeletedLoadBalancers: &deleted, Certificates: certs, LoadBalancers: lbs}
}

func lbIDs(s *openapi.Snapshot) []string {
	var out []string
	for _, lb := range s.LoadBalancers {
		out = append(out, lb.LoadBalancer.Id)
	}
	return out
}

// Merge replaces, adds and drops load balancers, keeps the certificates
// still used (the delta's version first) and refuses a delta that is not
// after the snapshot held.
func TestMerge(t *testing.T) {
	c1 := openapi.SnapshotCertificate{Id: "cert_1", Version: 1, PrivateKey: "k1"}
	c2 := openapi.SnapshotCertificate{Id: "cert_2", Version: 1, PrivateKey: "k2"}
	base := &openapi.Snapshot{FormatVersion: 2, Revision: 5, NodeGroupId: "ng_1",
		LoadBalancers: []openapi.SnapshotLoadBalancer{mlb("lb_a", 2, "cert_1"), mlb("lb_b", 3, "cert_2"), mlb("lb_c", 5)},
		Certificates:  []openapi.SnapshotCertificate{c1, c2}}
	c1v2 := openapi.SnapshotCertificate{Id: "cert_1", Version: 2, PrivateKey: "k1b"}
	got, err := Merge(base, mdelta(5, 9, "ng_1", []string{"lb_b", "lb_never_held"}, []openapi.SnapshotCertificate{c1v2},
		mlb("lb_d", 8), mlb("lb_a", 9, "cert_1")))
	if err != nil {
		t.Fatal(err)
	}
	if ids := lbIDs(got); !reflect.DeepEqual(ids, []string{"lb_a", "lb_c", "lb_d"}) || got.Revision != 9 || IsDelta(got) || got.BaseRevision != nil ||
		got.DeletedLoadBalancers != nil {
		t.Fatalf("merged: %v at %d, delta %v", ids, got.Revision, got.Delta)
	}
	if got.LoadBalancers[0].Revision != 9 {
		t.Errorf("lb_a kept the held version")
	}
	if !reflect.DeepEqual(got.Certificates, []openapi.SnapshotCertificate{c1v2}) {
		t.Errorf("certificates %+v, want cert_1's new version only (cert_2's user is gone)", got.Certificates)
	}
	if len(base.LoadBalancers) != 3 || len(base.Certificates) != 2 {
		t.Errorf("the base changed")
	}
	// A complete snapshot is its own merge.
	full := &openapi.Snapshot{Revision: 10}
	if got, err := Merge(nil, full); err != nil || got != full {
		t.Errorf("complete snapshot: %v %v", got, err)
	}
	for name, d := range map[string]*openapi.Snapshot{
		"another base revision": mdelta(4, 9, "ng_1", nil, nil),
		"another node group":    mdelta(5, 9, "ng_2", nil, nil),
		"a certificate missing": mdelta(5, 9, "ng_1", nil, nil, mlb("lb_e", 9, "cert_9")),
	} {
		if _, err := Merge(base, d); !errors.Is(err, ErrNoBase) {
			t.Errorf("%s: %v, want ErrNoBase", name, err)
		}
	}
	if _, err := Merge(nil, mdelta(5, 9, "ng_1", nil, nil)); !errors.Is(err, ErrNoBase) {
		t.Errorf("no base: %v, want ErrNoBase", err)
	}
}

// The one-pass merge of load balancers sorted by id (as the API sends them)
// is the map-and-sort one, over random bases, deltas and deletes, sorted or
// not.
func TestMergeLoadBalancersOnePass(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	pick := func(n int, rev int64) []openapi.SnapshotLoadBalancer {
		var out []openapi.SnapshotLoadBalancer
		for i := 0; i < 30; i++ {
			if rng.IntN(30) < n {
				out = append(out, mlb(fmt.Sprintf("lb_%02d", i), rev))
			}
		}
		return out
	}
	for round := 0; round < 500; round++ {
		base, changed := pick(rng.IntN(30), 1), pick(rng.IntN(6), 2)
		gone := map[string]bool{}
		for i := 0; i < rng.IntN(5); i++ {
			gone[fmt.Sprintf("lb_%02d", rng.IntN(30))] = true
		}
		if round%5 == 0 && len(changed) > 1 {
			changed[0], changed[len(changed)-1] = changed[len(changed)-1], changed[0] // not sorted: the map path
		}
		want := map[string]int64{}
		for _, lb := range base {
			if !gone[lb.LoadBalancer.Id] {
				want[lb.LoadBalancer.Id] = lb.Revision
			}
		}
		for _, lb := range changed {
			want[lb.LoadBalancer.Id] = lb.Revision
		}
		got := mergeLoadBalancers(base, changed, gone)
		if !sortedByID(got) || len(got) != len(want) {
			t.Fatalf("round %d: merged %v, want %v", round, got, want)
		}
		for _, lb := range got {
			if want[lb.LoadBalancer.Id] != lb.Revision {
				t.Fatalf("round %d: %s at %d, want %d", round, lb.LoadBalancer.Id, lb.Revision, want[lb.LoadBalancer.Id])
			}
		}
	}
}
