package snapshot

import (
	"errors"
	"fmt"
	"sort"

	"github.com/fulcrumlb/fulcrum/openapi"
)

// Snapshot formats this package understands: 0 (a snapshot of an API from
// before formats, or one saved by an older agent) and 1 are complete
// snapshots; 2 adds load balancer revisions and deltas.
const (
	FormatFull  = 1
	FormatDelta = 2
	// FormatMax is the newest format the agent understands (and announces).
	FormatMax = FormatDelta
)

// ErrNoBase is returned by Merge when the delta does not apply to the base
// snapshot held (another revision, another node group, none at all, or a
// certificate it needs that neither holds): the holder asks for a complete
// snapshot.
var ErrNoBase = errors.New("the delta does not apply to the snapshot held")

// IsDelta reports whether s holds only changes since s.BaseRevision.
func IsDelta(s *openapi.Snapshot) bool { return s.Delta != nil && *s.Delta }

// Merge returns the complete snapshot that d, a delta, stands for, given
// base, the complete snapshot at d's base revision: base's load balancers
// with d's replacing them (or added), those d deletes removed, the
// certificates the result's listeners use (d's version where d has one), and
// every other field d's. A complete d is returned as it is. Neither base nor
// d is changed.
func Merge(base, d *openapi.Snapshot) (*openapi.Snapshot, error) {
	if !IsDelta(d) {
		return d, nil
	}
	switch {
	case base == nil:
		return nil, fmt.Errorf("%w: none held", ErrNoBase)
	case d.BaseRevision == nil || *d.BaseRevision != base.Revision:
		return nil, fmt.Errorf("%w: it applies to revision %d, the one held is %d", ErrNoBase, deref(d.BaseRevision), base.Revision)
	case d.NodeGroupId != base.NodeGroupId:
		return nil, fmt.Errorf("%w: it is node group %s's, the one held is %s's", ErrNoBase, d.NodeGroupId, base.NodeGroupId)
	}
	out := *d
	out.Delta, out.BaseRevision, out.DeletedLoadBalancers = nil, nil, nil
	gone := map[string]bool{}
	if d.DeletedLoadBalancers != nil {
		for _, id := range *d.DeletedLoadBalancers {
			gone[id] = true
		}
	}
	out.LoadBalancers = mergeLoadBalancers(base.LoadBalancers, d.LoadBalancers, gone)

	certs := map[string]openapi.SnapshotCertificate{}
	for _, c := range base.Certificates {
		certs[c.Id] = c
	}
	for _, c := range d.Certificates {
		certs[c.Id] = c
	}
	used := CertificateIDs(out.LoadBalancers)
	out.Certificates = make([]openapi.SnapshotCertificate, 0, len(used))
	for _, id := range used {
		c, ok := certs[id]
		if !ok {
			return nil, fmt.Errorf("%w: certificate %s is used but not held", ErrNoBase, id)
		}
		out.Certificates = append(out.Certificates, c)
	}
	return &out, nil
}

// mergeLoadBalancers is base's load balancers but those gone, with changed's
// replacing them (or added), by id. The API sends both sorted by id (one
// change among 1,000 load balancers then costs one pass, not a map and a
// sort of 1,000 structs); others are sorted here.
func mergeLoadBalancers(base, changed []openapi.SnapshotLoadBalancer, gone map[string]bool) []openapi.SnapshotLoadBalancer {
	if !sortedByID(base) || !sortedByID(changed) {
		lbs := map[string]openapi.SnapshotLoadBalancer{}
		for _, lb := range base {
			if !gone[lb.LoadBalancer.Id] {
				lbs[lb.LoadBalancer.Id] = lb
			}
		}
		for _, lb := range changed {
			lbs[lb.LoadBalancer.Id] = lb
		}
		out := make([]openapi.SnapshotLoadBalancer, 0, len(lbs))
		for _, lb := range lbs {
			out = append(out, lb)
		}
		sort.Slice(out, func(i, j int) bool { return out[i].LoadBalancer.Id < out[j].LoadBalancer.Id })
		return out
	}
	out := make([]openapi.SnapshotLoadBalancer, 0, len(base)+len(changed))
	i := 0
	for j := range changed {
		id := changed[j].LoadBalancer.Id
		for ; i < len(base) && base[i].LoadBalancer.Id < id; i++ {
			if !gone[base[i].LoadBalancer.Id] {
				out = append(out, base[i])
			}
		}
		if i < len(base) && base[i].LoadBalancer.Id == id {
			i++ // replaced
		}
		out = append(out, changed[j])
	}
	for ; i < len(base); i++ {
		if !gone[base[i].LoadBalancer.Id] {
			out = append(out, base[i])
		}
	}
	return out
}

// sortedByID reports whether lbs are sorted by id, each id once.
func sortedByID(lbs []openapi.SnapshotLoadBalancer) bool {
	for i := 1; i < len(lbs); i++ {
		if lbs[i-1].LoadBalancer.Id >= lbs[i].LoadBalancer.Id {
			return false
		}
	}
	return true
}

// CertificateIDs lists, sorted, the certificates the listeners of lbs use.
func CertificateIDs(lbs []openapi.SnapshotLoadBalancer) []string {
	seen := map[string]bool{}
	var ids []string
	for _, lb := range lbs {
		for _, l := range lb.Listeners {
			for _, id := range l.CertificateIds {
				if !seen[id] {
					seen[id] = true
					ids = append(ids, id)
				}
			}
		}
	}
	sort.Strings(ids)
	return ids
}
