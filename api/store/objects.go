package store

import (
	"context"
	"errors"
	"fmt"
	"net/netip"

	"github.com/jackc/pgx/v5"
)

// IDGetByName resolves the id or unique name of an object of an untenanted
// kind (tenant, node group, node) to its id. A missing object is ErrNotFound.
func IDGetByName(ctx context.Context, tx *Tx, k Kind, idOrName string) (string, error) {
	if k.Tenanted {
		return "", fmt.Errorf("resolve %s: a tenanted kind needs its tenant", k.Name)
	}
	var id string
	err := tx.pg.QueryRow(ctx, "SELECT id FROM "+k.Table+" WHERE id = $1 OR name = $1 ORDER BY id = $1 DESC LIMIT 1", idOrName).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", notFound(k, idOrName)
	}
	if err != nil {
		return "", fmt.Errorf("resolve %s: %w", k.Name, err)
	}
	return id, nil
}

// NodeGroupGetByName reads the node group of that name. A missing group is
// ErrNotFound.
func NodeGroupGetByName(ctx context.Context, tx *Tx, name string, forUpdate bool) (*NodeGroup, error) {
	q := "SELECT * FROM node_groups WHERE name = $1"
	if forUpdate {
		q += " FOR UPDATE"
	}
	rows, _ := tx.pg.Query(ctx, q, name)
	g, err := pgx.CollectExactlyOneRow(rows, pgx.RowToAddrOfStructByNameLax[NodeGroup])
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, notFound(KindNodeGroup, name)
	}
	if err != nil {
		return nil, fmt.Errorf("get node group: %w", err)
	}
	return g, nil
}

// LoadBalancerListVIPsByGroup lists the VIPs the group's live load balancers
// hold.
func LoadBalancerListVIPsByGroup(ctx context.Context, tx *Tx, groupID string) ([]netip.Addr, error) {
	rows, _ := tx.pg.Query(ctx, "SELECT vip_address FROM load_balancers WHERE node_group_id = $1 AND deleted_revision IS NULL", groupID)
	out, err := pgx.CollectRows(rows, pgx.RowTo[netip.Addr])
	if err != nil {
		return nil, fmt.Errorf("list vips: %w", err)
	}
	return out, nil
}

// LoadBalancerListOutsideRange names (up to 20 of) the group's load balancers
// whose VIP lies outside vipRange.
func LoadBalancerListOutsideRange(ctx context.Context, tx *Tx, groupID string, vipRange netip.Prefix) ([]string, error) {
	rows, _ := tx.pg.Query(ctx, "SELECT id FROM load_balancers WHERE node_group_id = $1 AND NOT (vip_address <<= $2) LIMIT 20", groupID, vipRange)
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("list load balancers outside the range: %w", err)
	}
	return out, nil
}

// ListByLoadBalancer lists the tenant's objects of kind k (listeners, pools,
// members, routing rules) of load balancer lbID, deleted ones included,
// ordered by id.
func ListByLoadBalancer[T any](ctx context.Context, tx *Tx, k Kind, tenantID, lbID string) ([]*T, error) {
	if !k.Tenanted {
		return nil, fmt.Errorf("list %s: not a tenanted kind", k.Plural)
	}
	rows, _ := tx.pg.Query(ctx, "SELECT * FROM "+k.Table+" WHERE load_balancer_id = $1 AND tenant_id = $2 ORDER BY id", lbID, tenantID)
	out, err := pgx.CollectRows(rows, pgx.RowToAddrOfStructByNameLax[T])
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", k.Plural, err)
	}
	return out, nil
}

// LoadBalancerStatsListByLoadBalancer returns the counters (JSON, as nodes
// report them) of the tenant's load balancer lbID from each node that has
// reported and is not down.
func LoadBalancerStatsListByLoadBalancer(ctx context.Context, tx *Tx, tenantID, lbID string) ([][]byte, error) {
	rows, _ := tx.pg.Query(ctx, `SELECT s.counters FROM load_balancer_stats s JOIN nodes n ON n.id = s.node_id
JOIN node_states ns ON ns.id = n.id JOIN load_balancers lb ON lb.id = s.load_balancer_id
WHERE s.load_balancer_id = $1 AND lb.tenant_id = $2 AND ns.last_seen_at IS NOT NULL AND NOT ns.down`, lbID, tenantID)
	out, err := pgx.CollectRows(rows, pgx.RowTo[[]byte])
	if err != nil {
		return nil, fmt.Errorf("load balancer stats: %w", err)
	}
	return out, nil
}

// ListenerSetCertificates replaces the tenant's listener's certificate
// references by certIDs, in that order.
func ListenerSetCertificates(ctx context.Context, tx *Tx, tenantID, listenerID string, certIDs []string) error {
	if err := owned(ctx, tx, KindListener, tenantID, listenerID); err != nil {
		return err
	}
	if _, err := tx.pg.Exec(ctx, "DELETE FROM listener_certificates WHERE listener_id = $1", listenerID); err != nil {
		return fmt.Errorf("save listener certificates: %w", err)
	}
	for i, id := range certIDs {
		if _, err := tx.pg.Exec(ctx, "INSERT INTO listener_certificates (listener_id, certificate_id, position) VALUES ($1, $2, $3)", listenerID, id, i); err != nil {
			return fmt.Errorf("save listener certificates: %w", mapError(err))
		}
	}
	return nil
}

// ListenerMarkUpdatedByCertificate gives the tenant's live listeners using
// certificate certID revision rev and pending_update (pending_create stays),
// so nodes re-apply them with the certificate's new chain.
func ListenerMarkUpdatedByCertificate(ctx context.Context, tx *Tx, tenantID, certID string, rev int64) error {
	if _, err := tx.pg.Exec(ctx, `UPDATE listeners SET revision = $2, provisioning_status = CASE WHEN provisioning_status = 'pending_create' THEN provisioning_status ELSE 'pending_update' END
WHERE id IN (SELECT listener_id FROM listener_certificates WHERE certificate_id = $1) AND tenant_id = $3 AND deleted_revision IS NULL`, certID, rev, tenantID); err != nil {
		return fmt.Errorf("update listeners of certificate: %w", err)
	}
	return nil
}

// RoutingRuleCountByListener counts the live routing rules of the tenant's
// listener.
func RoutingRuleCountByListener(ctx context.Context, tx *Tx, tenantID, listenerID string) (int, error) {
	var n int
	if err := tx.pg.QueryRow(ctx, "SELECT count(*) FROM routing_rules WHERE listener_id = $1 AND tenant_id = $2 AND deleted_revision IS NULL", listenerID, tenantID).Scan(&n); err != nil {
		return 0, fmt.Errorf("count routing rules: %w", err)
	}
	return n, nil
}

// RoutingRuleSetPools replaces the pools the tenant's routing rule forwards
// to.
func RoutingRuleSetPools(ctx context.Context, tx *Tx, tenantID, ruleID string, poolIDs []string) error {
	if err := owned(ctx, tx, KindRoutingRule, tenantID, ruleID); err != nil {
		return err
	}
	if _, err := tx.pg.Exec(ctx, "DELETE FROM routing_rule_pools WHERE routing_rule_id = $1", ruleID); err != nil {
		return fmt.Errorf("save rule pools: %w", err)
	}
	for _, id := range poolIDs {
		if _, err := tx.pg.Exec(ctx, "INSERT INTO routing_rule_pools (routing_rule_id, pool_id) VALUES ($1, $2) ON CONFLICT DO NOTHING", ruleID, id); err != nil {
			return fmt.Errorf("save rule pools: %w", mapError(err))
		}
	}
	return nil
}

// PoolUser is a live listener (by its default pool) or routing rule sending
// traffic to a pool, with the protocol of that traffic.
type PoolUser struct {
	ID       string
	Protocol string
}

// PoolListUsers lists the live listeners and routing rules sending traffic to
// the tenant's pool.
func PoolListUsers(ctx context.Context, tx *Tx, tenantID, poolID string) ([]PoolUser, error) {
	rows, _ := tx.pg.Query(ctx, `SELECT id, protocol FROM listeners WHERE default_pool_id = $1 AND tenant_id = $2 AND deleted_revision IS NULL
UNION ALL SELECT r.id, 'http' FROM routing_rules r JOIN routing_rule_pools rp ON rp.routing_rule_id = r.id
WHERE rp.pool_id = $1 AND r.tenant_id = $2 AND r.deleted_revision IS NULL`, poolID, tenantID)
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (PoolUser, error) {
		var u PoolUser
		err := r.Scan(&u.ID, &u.Protocol)
		return u, err
	})
	if err != nil {
		return nil, fmt.Errorf("check pool users: %w", err)
	}
	return out, nil
}

// ObjectCount is how many live objects of a table have a provisioning status.
type ObjectCount struct {
	Table, ProvisioningStatus string
	N                         int64
}

// ObjectCountByStatus counts the live dataplane objects by table and
// provisioning status (for metrics).
func (s *Store) ObjectCountByStatus(ctx context.Context) ([]ObjectCount, error) {
	var out []ObjectCount
	for _, table := range []string{"load_balancers", "listeners", "pools", "members", "routing_rules"} {
		rows, _ := s.pool.Query(ctx, "SELECT provisioning_status, count(*) FROM "+table+" WHERE deleted_revision IS NULL GROUP BY 1")
		got, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (ObjectCount, error) {
			c := ObjectCount{Table: table}
			err := r.Scan(&c.ProvisioningStatus, &c.N)
			return c, err
		})
		if err != nil {
			return nil, fmt.Errorf("count %s: %w", table, err)
		}
		out = append(out, got...)
	}
	return out, nil
}
