package snapshot

import (
	"sync"

	"github.com/fulcrumlb/fulcrum/openapi"
)

// Snapshot formats (the versioned protocol). An agent announces the format
// it understands; the API serves each one from FormatMin to FormatMax and
// refuses the others.
const (
	// FormatFull is the format of agents that announce none: complete
	// snapshots only.
	FormatFull = 1
	// FormatDelta adds load balancer revisions and deltas.
	FormatDelta = 2

	FormatMin = FormatFull
	FormatMax = FormatDelta
)

// Request is what an agent asks for: the snapshot after revision After, in
// format Format, as a delta when Delta (it holds the complete snapshot at
// After).
type Request struct {
	After  int64
	Format int
	Delta  bool
}

// Delta is the part of full, a complete snapshot, that an agent holding the
// complete snapshot at revision after needs: the load balancers whose
// revision is newer than after, the certificates their listeners use, and
// deleted (the load balancers removed since after), with every other field
// of full as it is. Merged into the snapshot at after (dataplane/snapshot's
// Merge) it gives full. full is not changed.
func Delta(full *openapi.Snapshot, after int64, deleted []string) *openapi.Snapshot {
	d := *full
	t := true
	base := after
	d.Delta, d.BaseRevision = &t, &base
	dl := append([]string{}, deleted...)
	d.DeletedLoadBalancers = &dl
	d.LoadBalancers = []openapi.SnapshotLoadBalancer{}
	used := map[string]bool{}
	for _, lb := range full.LoadBalancers {
		if lb.Revision <= after {
			continue
		}
		d.LoadBalancers = append(d.LoadBalancers, lb)
		for _, l := range lb.Listeners {
			for _, id := range l.CertificateIds {
				used[id] = true
			}
		}
	}
	d.Certificates = []openapi.SnapshotCertificate{}
	for _, c := range full.Certificates {
		if used[c.Id] {
			d.Certificates = append(d.Certificates, c)
		}
	}
	return &d
}

// EncodeFor answers req with the snapshot, as Encode does, or, when the
// agent asked for a delta (format 2 or newer, after a revision it holds) and
// one can be proven (no delete purged since req.After) and is smaller than
// the whole, with the delta (Delta) from req.After. The delta's shared part
// is encoded once per (group part, req.After, gz) and shared by every node
// asking the same: most nodes of a group hold the same revision.
func (s *NodeSnapshot) EncodeFor(req Request, gz bool) (head, body []byte, err error) {
	if req.Delta && req.Format >= FormatDelta && req.After > 0 && req.After < s.node.Revision {
		body, err := s.Group.deltaBody(req.After, gz)
		if err != nil {
			return nil, nil, err
		}
		if body != nil {
			head, err := s.head(req.Format, gz, true)
			return head, body, err
		}
	}
	return s.Encode(req.Format, gz)
}

// deltaKey names a delta's shared part of a group part.
type deltaKey struct {
	after int64
	gz    bool
}

// sharedDelta is a delta's shared part, encoded once.
type sharedDelta struct {
	once sync.Once
	body []byte // nil: no delta, answer the whole snapshot
	err  error
}

// maxDeltas bounds the deltas kept per group part; others are encoded per
// answer.
const maxDeltas = 64

// deltaBody is the shared part of the delta from revision after to g
// (encodeShared of Delta, gzip-compressed when gz), or nil when no delta
// can be proven (deletes purged since after) or it would hold every load
// balancer.
func (g *Group) deltaBody(after int64, gz bool) ([]byte, error) {
	if g.purged > after {
		return nil, nil
	}
	key := deltaKey{after: after, gz: gz}
	g.deltaMu.Lock()
	if g.deltas == nil {
		g.deltas = map[deltaKey]*sharedDelta{}
	}
	d := g.deltas[key]
	if d == nil {
		d = &sharedDelta{}
		if len(g.deltas) < maxDeltas {
			g.deltas[key] = d
		}
	}
	g.deltaMu.Unlock()
	d.once.Do(func() { d.body, d.err = g.encodeDelta(after, gz) })
	return d.body, d.err
}

// encodeDelta encodes the shared part of the delta from after to g; nil when
// it would hold every load balancer (then the whole is as small).
func (g *Group) encodeDelta(after int64, gz bool) ([]byte, error) {
	var deleted []string
	for _, d := range g.deleted {
		if d.Revision > after {
			deleted = append(deleted, d.ID)
		}
	}
	d := Delta(g.Snapshot, after, deleted)
	if len(d.LoadBalancers) > 0 && len(d.LoadBalancers) >= len(g.Snapshot.LoadBalancers) {
		return nil, nil
	}
	body, err := encodeShared(d)
	if err != nil || !gz {
		return body, err
	}
	return compress(body)
}
