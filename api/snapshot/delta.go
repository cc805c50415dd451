package snapshot

import (
	"context"
	"fmt"

	"github.com/fulcrumlb/fulcrum/api/store"
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

// ForRequest turns full, node n's complete snapshot (ForNode's answer for
// req.After), into the answer to req: marked with req's format and, when the
// agent takes deltas and one can be proven complete, the delta after
// req.After. A delta is not sent when the group's purged deletes reach past
// req.After (a delete the agent has not seen may be forgotten), nor when
// every load balancer changed (the delta would be the full snapshot and
// more). full is not changed.
func ForRequest(ctx context.Context, tx *store.Tx, full *openapi.Snapshot, req Request) (*openapi.Snapshot, error) {
	out := *full
	out.FormatVersion = req.Format
	if !req.Delta || req.Format < FormatDelta || req.After <= 0 || req.After >= full.Revision {
		return &out, nil
	}
	purged, err := store.GroupPurgedRevision(ctx, tx, full.NodeGroupId)
	if err != nil {
		return nil, err
	}
	if purged > req.After {
		return &out, nil
	}
	deleted, err := store.LoadBalancersDeletedSince(ctx, tx, full.NodeGroupId, req.After)
	if err != nil {
		return nil, fmt.Errorf("delta: %w", err)
	}
	d := Delta(full, req.After, deleted)
	if len(d.LoadBalancers) > 0 && len(d.LoadBalancers) == len(full.LoadBalancers) {
		return &out, nil
	}
	d.FormatVersion = req.Format
	return d, nil
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
