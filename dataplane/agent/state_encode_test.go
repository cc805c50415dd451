package agent

import (
	"bytes"
	"encoding/json"
	"slices"
	"testing"

	"github.com/fulcrumlb/fulcrum/dataplane/haproxy"
	snapconv "github.com/fulcrumlb/fulcrum/dataplane/snapshot"
	"github.com/fulcrumlb/fulcrum/openapi"
)

// TestStateEncoderMatchesMarshal: snapshot.json assembled from cached
// per-load-balancer encodings is json.Marshal's output, byte for byte, as
// load balancers change, come and go, with and without errors.
func TestStateEncoderMatchesMarshal(t *testing.T) {
	var e stateEncoder
	snap := manyLBs(7, 5, 3)
	for i := range snap.LoadBalancers {
		snap.LoadBalancers[i].Revision = int64(i + 1)
	}
	hb := 2000
	snap.HeartbeatIntervalMs = &hb
	snap.Certificates = []openapi.SnapshotCertificate{{Id: "cert_1", Certificate: `-----BEGIN "load_balancers":[]-----`}}
	served := func(s *openapi.Snapshot) []haproxy.LoadBalancer {
		var out []haproxy.LoadBalancer
		for i := range s.LoadBalancers {
			lb, err := snapconv.ToLoadBalancer(&s.LoadBalancers[i], func(id string) string { return "/certs/" + id })
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, lb)
		}
		return out
	}
	check := func(name string, st diskState) {
		t.Helper()
		want, err := json.Marshal(st)
		if err != nil {
			t.Fatal(err)
		}
		got, err := e.encode(st)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("%s: encode differs from json.Marshal:\n got %s\nwant %s", name, got, want)
		}
		// Into a buffer used before (flushState's), its old content
		// overwritten: the same bytes, in that buffer when it is large
		// enough and the load balancers are spliced in.
		dirty := bytes.Repeat([]byte("x"), len(want)+len(want)/2)
		into, err := e.encodeInto(st, dirty[:7])
		if err != nil {
			t.Fatal(err)
		}
		spliced := st.Snapshot != nil && st.Snapshot.LoadBalancers != nil // else json.Marshal's own
		if !bytes.Equal(into, want) || spliced && &into[0] != &dirty[0] {
			t.Fatalf("%s: encodeInto a used buffer (reused: %v):\n got %s\nwant %s", name, &into[0] == &dirty[0], into, want)
		}
		var back diskState
		if err := json.Unmarshal(got, &back); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	lbs := served(snap)
	check("first", diskState{Version: stateVersion, Snapshot: snap, Served: lbs})
	check("again (cached)", diskState{Version: stateVersion, Snapshot: snap, Served: lbs})

	// One load balancer changes (a new revision); one is held at its last
	// good version with an error; one goes away.
	next := *snap
	next.Revision = 8
	next.LoadBalancers = slices.Clone(snap.LoadBalancers)
	sl := clone(next.LoadBalancers[2])
	sl.Members[0].Weight = 7
	sl.Revision = 8
	next.LoadBalancers[2] = sl
	next.LoadBalancers = next.LoadBalancers[:4]
	lbs2 := served(&next)
	lbs2[1] = lbs[1]
	errs := map[string]lbFailure{next.LoadBalancers[1].LoadBalancer.Id: {Kind: failCheck, Message: "no"}}
	check("changed", diskState{Version: stateVersion, Snapshot: &next, Served: lbs2, Errors: errs})

	// Revision 0 (a format 1 snapshot): never taken from the cache.
	old := next
	old.LoadBalancers = slices.Clone(next.LoadBalancers)
	for i := range old.LoadBalancers {
		old.LoadBalancers[i] = clone(old.LoadBalancers[i])
		old.LoadBalancers[i].Revision = 0
		old.LoadBalancers[i].Members[0].Weight = 3
	}
	check("revision 0", diskState{Version: stateVersion, Snapshot: &old, Served: nil})
	empty := old
	empty.LoadBalancers = nil
	check("no load balancers", diskState{Version: stateVersion, Snapshot: &empty, Served: []haproxy.LoadBalancer{}})
}
