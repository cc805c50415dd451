package store

import (
	"context"
	"fmt"
)

// LoadBalancerStatsUpsert stores the counters (JSON) node nodeID reports for
// load balancer lbID, when that load balancer is one of the node's group
// groupID; a load balancer of another group (or none) is ignored.
func LoadBalancerStatsUpsert(ctx context.Context, tx *Tx, nodeID, groupID, lbID string, counters []byte) error {
	if _, err := tx.pg.Exec(ctx, `INSERT INTO load_balancer_stats (node_id, load_balancer_id, counters, updated_at)
SELECT $1, lb.id, $3, now() FROM load_balancers lb WHERE lb.id = $2 AND lb.node_group_id = $4
ON CONFLICT (node_id, load_balancer_id) DO UPDATE SET counters = EXCLUDED.counters, updated_at = now()`, nodeID, lbID, counters, groupID); err != nil {
		return fmt.Errorf("store stats: %w", err)
	}
	return nil
}
