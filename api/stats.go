package api

import (
	"sort"

	"github.com/fulcrumlb/fulcrum/openapi"
)

// statsSum adds up one object's counters over nodes: the counters and
// sessions (peaks too) are summed, the response and total times averaged
// weighted by each node's requests (sessions for TCP).
type statsSum struct {
	sums [12]int64 // StatsFields.Summed
	// weight is the nodes' requests; rt and tt the times multiplied by them.
	weight, rt, tt int64
	// nodes, rtSum and ttSum average the times when no node counted any.
	nodes, rtSum, ttSum int64
}

func (s *statsSum) add(f openapi.StatsFields) {
	for i, p := range f.Summed() {
		if *p != nil {
			s.sums[i] += **p
		}
	}
	w := int64(0)
	if *f.RequestsTotal != nil {
		w = **f.RequestsTotal
	}
	if w == 0 && *f.ConnectionsTotal != nil {
		w = **f.ConnectionsTotal
	}
	rt, tt := int64(0), int64(0)
	if *f.ResponseTimeMs != nil {
		rt = **f.ResponseTimeMs
	}
	if *f.TotalTimeMs != nil {
		tt = **f.TotalTimeMs
	}
	s.weight += w
	s.rt, s.tt = s.rt+w*rt, s.tt+w*tt
	s.nodes++
	s.rtSum, s.ttSum = s.rtSum+rt, s.ttSum+tt
}

// fill writes the sums into f, every field set (0 when no node counted it).
func (s *statsSum) fill(f openapi.StatsFields) {
	for i, p := range f.Summed() {
		v := s.sums[i]
		*p = &v
	}
	var rt, tt int64
	switch {
	case s.weight > 0:
		rt, tt = s.rt/s.weight, s.tt/s.weight
	case s.nodes > 0:
		rt, tt = s.rtSum/s.nodes, s.ttSum/s.nodes
	}
	*f.ResponseTimeMs, *f.TotalTimeMs = &rt, &tt
}

// mergeStats sums the stats nodes reported for load balancer id: its
// counters, each listener's and each pool's and member's (listeners, pools
// and members ordered by id).
func mergeStats(id string, nodes []openapi.LoadBalancerStats) openapi.LoadBalancerStats {
	var lb statsSum
	listeners := map[string]*statsSum{}
	pools := map[string]*statsSum{}
	members := map[string]map[string]*statsSum{} // pool → member
	sum := func(m map[string]*statsSum, id string) *statsSum {
		if m[id] == nil {
			m[id] = &statsSum{}
		}
		return m[id]
	}
	for i := range nodes {
		n := &nodes[i]
		lb.add(n.Fields())
		for j := range deref(n.Listeners) {
			l := &(*n.Listeners)[j]
			sum(listeners, l.Id).add(l.Fields())
		}
		for j := range deref(n.Pools) {
			p := &(*n.Pools)[j]
			sum(pools, p.Id).add(p.Fields())
			if members[p.Id] == nil {
				members[p.Id] = map[string]*statsSum{}
			}
			for k := range deref(p.Members) {
				m := &(*p.Members)[k]
				sum(members[p.Id], m.Id).add(m.Fields())
			}
		}
	}
	out := openapi.LoadBalancerStats{LoadBalancerId: id, Listeners: &[]openapi.ListenerStats{}, Pools: &[]openapi.PoolStats{}}
	lb.fill(out.Fields())
	for _, lid := range sortedKeys(listeners) {
		l := openapi.ListenerStats{Id: lid}
		listeners[lid].fill(l.Fields())
		*out.Listeners = append(*out.Listeners, l)
	}
	for _, pid := range sortedKeys(pools) {
		p := openapi.PoolStats{Id: pid, Members: &[]openapi.MemberStats{}}
		pools[pid].fill(p.Fields())
		for _, mid := range sortedKeys(members[pid]) {
			m := openapi.MemberStats{Id: mid}
			members[pid][mid].fill(m.Fields())
			*p.Members = append(*p.Members, m)
		}
		*out.Pools = append(*out.Pools, p)
	}
	nodesReporting := len(nodes)
	out.NodesReporting = &nodesReporting
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
