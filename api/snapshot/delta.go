package snapshot

import (
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
