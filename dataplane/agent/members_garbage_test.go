package agent

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/fulcrumlb/fulcrum/dataplane/haproxy"
	"github.com/fulcrumlb/fulcrum/openapi"
)

// The member path reuses its buffers and walks sorted configurations
// instead of building maps (members_bench_test.go measures it); these tests
// hold it to what the maps and fresh buffers gave.

// TestChangedLBsMatchesMaps: on random pairs of configurations (load
// balancers kept by identity, replaced, added, removed; sorted by id or
// not, ids repeated), the one-pass walk finds the same load balancers as the
// map it replaces.
func TestChangedLBsMatchesMaps(t *testing.T) {
	byMaps := func(old, new []haproxy.LoadBalancer) (was, is []string) {
		prev := map[string]haproxy.LoadBalancer{}
		for _, lb := range old {
			prev[lb.ID] = lb
		}
		same := map[string]bool{}
		for _, lb := range new {
			if o, ok := prev[lb.ID]; ok && haproxy.Identical(o, lb) {
				same[lb.ID] = true
			}
		}
		for _, lb := range old {
			if !same[lb.ID] {
				was = append(was, lb.ID)
			}
		}
		for _, lb := range new {
			if !same[lb.ID] {
				is = append(is, lb.ID)
			}
		}
		return was, is
	}
	ids := func(lbs []haproxy.LoadBalancer) []string {
		var out []string
		for _, lb := range lbs {
			out = append(out, lb.ID)
		}
		sort.Strings(out)
		return out
	}
	for seed := range uint64(300) {
		r := rand.New(rand.NewPCG(seed, 11))
		var old, new []haproxy.LoadBalancer
		for i := range r.IntN(12) {
			lb := haproxy.LoadBalancer{ID: fmt.Sprintf("lb_%02d", i), Enabled: true,
				Pools: []haproxy.Pool{{ID: fmt.Sprintf("pool_%02d", i), Members: []haproxy.Member{{ID: "mbr_" + fmt.Sprint(i), Enabled: true}}}}}
			switch r.IntN(5) {
			case 0: // removed
				old = append(old, lb)
			case 1: // added
				new = append(new, lb)
			case 2: // replaced by an equal copy: not identical
				c := lb
				c.Pools = slices.Clone(lb.Pools)
				old, new = append(old, lb), append(new, c)
			default: // kept, by identity
				old, new = append(old, lb), append(new, lb)
			}
		}
		if r.IntN(4) == 0 && len(new) > 1 {
			new[0], new[len(new)-1] = new[len(new)-1], new[0] // not sorted
		}
		if r.IntN(6) == 0 && len(old) > 0 {
			old = append(old, old[0]) // an id twice
		}
		was, is := changedLBs(old, new)
		wantWas, wantIs := byMaps(old, new)
		sort.Strings(wantWas)
		sort.Strings(wantIs)
		if !slices.Equal(ids(was), wantWas) || !slices.Equal(ids(is), wantIs) {
			t.Fatalf("seed %d: changedLBs = %v / %v, the maps say %v / %v", seed, ids(was), ids(is), wantWas, wantIs)
		}
	}
}

// TestWriteConfigReusesItsBuffers: haproxy.cfg written again and again from
// reused buffers always holds the configuration written last, also when a
// reload's text (not writeConfig's) came in between, and a text written
// last is never overwritten while a.written holds it.
func TestWriteConfigReusesItsBuffers(t *testing.T) {
	a, _, _ := unitAgent(t)
	cfgs := []haproxy.Config{}
	for n := range 3 {
		snap := manyLBs(1, 3+n, 2)
		c, err := testConfig(a, snap)
		if err != nil {
			t.Fatal(err)
		}
		cfgs = append(cfgs, c)
	}
	for step, k := range []int{0, 1, 0, 2, 2, 1, 0, 1, 2} {
		if step == 4 {
			// A reload wrote its own text meanwhile.
			text, _ := haproxy.Render(cfgs[1])
			if err := replaceFile(a.path("haproxy.cfg"), text); err != nil {
				t.Fatal(err)
			}
			a.written = text
		}
		if err := a.writeConfig(cfgs[k]); err != nil {
			t.Fatal(err)
		}
		want, _ := haproxy.Render(cfgs[k])
		got, _ := os.ReadFile(a.path("haproxy.cfg"))
		if string(got) != string(want) || string(a.written) != string(want) {
			t.Fatalf("step %d: haproxy.cfg or a.written is not config %d", step, k)
		}
		if len(a.cfgSpare) > 0 && len(a.written) > 0 && &a.cfgSpare[:1][0] == &a.written[:1][0] {
			t.Fatalf("step %d: the spare buffer is the text written", step)
		}
	}
}

// testConfig is snap converted as an apply converts it.
func testConfig(a *Agent, snap *openapi.Snapshot) (haproxy.Config, error) {
	c := haproxy.Config{Global: a.globalFor(snap)}
	for i := range snap.LoadBalancers {
		lb, err := a.converted.next(snap).convert(&snap.LoadBalancers[i], a.certFile)
		if err != nil {
			return c, err
		}
		c.LoadBalancers = append(c.LoadBalancers, lb)
	}
	slices.SortFunc(c.LoadBalancers, func(x, y haproxy.LoadBalancer) int { return strings.Compare(x.ID, y.ID) })
	return c, nil
}

// TestConversionsKeptAcrossApplies: the models converted by revision stay
// cached from apply to apply (the map is updated in place) and those of
// load balancers that left are dropped.
func TestConversionsKeptAcrossApplies(t *testing.T) {
	a, _, _ := unitAgent(t)
	ctx := context.Background()
	snap := manyLBs(1, 5, 2)
	for i := range snap.LoadBalancers {
		snap.LoadBalancers[i].Revision = 1
	}
	if err := a.Apply(ctx, snap); err != nil {
		t.Fatal(err)
	}
	if len(a.converted.byID) != 5 {
		t.Fatalf("%d conversions, want 5", len(a.converted.byID))
	}
	kept := a.converted.byID[snap.LoadBalancers[0].LoadBalancer.Id].lb
	next := *snap
	next.Revision = 2
	next.LoadBalancers = slices.Clone(snap.LoadBalancers[:3]) // two left
	if err := a.Apply(ctx, &next); err != nil {
		t.Fatal(err)
	}
	if len(a.converted.byID) != 3 {
		t.Fatalf("%d conversions after two load balancers left, want 3", len(a.converted.byID))
	}
	if got := a.converted.byID[snap.LoadBalancers[0].LoadBalancer.Id].lb; !haproxy.Identical(got, kept) {
		t.Fatal("an unchanged load balancer was converted again")
	}
	if len(a.planPrev) != 0 || len(a.planCands) != 0 {
		t.Fatalf("the plan's maps keep %d / %d models past the apply", len(a.planPrev), len(a.planCands))
	}
}
