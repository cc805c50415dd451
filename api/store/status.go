package store

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// Ports every node group reserves, whatever its operator lists: SSH, and the
// agent's own (HAProxy's stats page, HAProxy's Prometheus exporter and the
// agent's metrics: the defaults of `fulcrum agent --prometheus-addr` and
// `--metrics-addr`). A listener on one of them would fight the node for the
// port.
const (
	PortSSH              = 22
	PortAgentStats       = 8404
	PortAgentPrometheus  = 8405
	PortAgentMetrics     = 8406
	NodeBehindGrace      = 5 * time.Second
	maxReservedPortsList = 256
)

// AlwaysReservedPorts are the ports no listener may use on any node group.
func AlwaysReservedPorts() []int {
	return []int{PortSSH, PortAgentStats, PortAgentPrometheus, PortAgentMetrics}
}

// EffectiveReservedPorts is the sorted union of the always-reserved ports and
// the operator's list.
func EffectiveReservedPorts(operator []int) []int {
	out := append(AlwaysReservedPorts(), operator...)
	slices.Sort(out)
	return slices.Compact(out)
}

// ReservedPortsOfLoadBalancer is the effective reserved set of the node group
// load balancer lbID is on.
func ReservedPortsOfLoadBalancer(ctx context.Context, tx *Tx, lbID string) ([]int, error) {
	var ports []int
	err := tx.pg.QueryRow(ctx, `SELECT g.reserved_ports FROM node_groups g JOIN load_balancers lb ON lb.node_group_id = g.id WHERE lb.id = $1`, lbID).Scan(&ports)
	if err != nil && err != pgx.ErrNoRows {
		return nil, fmt.Errorf("reserved ports: %w", err)
	}
	return EffectiveReservedPorts(ports), nil
}

// ListenersOnPorts names (up to 20 of) the live listeners of the group's load
// balancers whose port is one of ports, as "lsn_… (port N)".
func ListenersOnPorts(ctx context.Context, tx *Tx, groupID string, ports []int) ([]string, error) {
	if len(ports) == 0 {
		return nil, nil
	}
	rows, _ := tx.pg.Query(ctx, `SELECT l.id || ' (port ' || l.port || ')' FROM listeners l JOIN load_balancers lb ON lb.id = l.load_balancer_id
WHERE lb.node_group_id = $1 AND l.deleted_revision IS NULL AND l.port = ANY($2) ORDER BY l.port, l.id LIMIT 20`, groupID, ports)
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("listeners on reserved ports: %w", err)
	}
	return out, nil
}

// NodeErrorKinds lists the kinds of errs, for messages that must not show
// another tenant's details.
func NodeErrorKinds(errs []NodeError) string {
	kinds := make([]string, 0, len(errs))
	for _, e := range errs {
		if !slices.Contains(kinds, e.Kind) {
			kinds = append(kinds, e.Kind)
		}
	}
	return strings.Join(kinds, ", ")
}

// LaggingNode is a node of a load balancer's group that does not serve the
// load balancer's current version.
type LaggingNode struct {
	LoadBalancerID string
	Name           string
	// Status is down (no heartbeat for the group's down-timeout), draining
	// or cordoned (by the operator), error (node errors, failing applies, or
	// the node rejects the load balancer) or applying (its applied revision
	// is behind the load balancer's for longer than NodeBehindGrace).
	Status        string
	StatusMessage string
}

// LaggingNodes lists, per load balancer of the group (or only lbID when not
// ""), the nodes that do not serve its current version: down, draining,
// cordoned, failing its applies, reporting node errors, rejecting it, or
// behind its newest revision (its own, its children's, its certificates')
// for longer than NodeBehindGrace. Down nodes are listed until they are
// cleaned up. Ordered by load balancer and node name.
func LaggingNodes(ctx context.Context, tx *Tx, groupID, lbID string) ([]LaggingNode, error) {
	const q = `WITH lbs AS (
  SELECT lb.id, GREATEST(lb.revision,
    (SELECT max(revision) FROM listeners WHERE load_balancer_id = lb.id),
    (SELECT max(revision) FROM pools WHERE load_balancer_id = lb.id),
    (SELECT max(revision) FROM members WHERE load_balancer_id = lb.id),
    (SELECT max(revision) FROM routing_rules WHERE load_balancer_id = lb.id),
    (SELECT max(c.revision) FROM certificates c JOIN listener_certificates lc ON lc.certificate_id = c.id
       JOIN listeners l ON l.id = lc.listener_id WHERE l.load_balancer_id = lb.id AND l.deleted_revision IS NULL)) AS rev
  FROM load_balancers lb WHERE lb.node_group_id = $1 AND lb.deleted_revision IS NULL AND ($2 = '' OR lb.id = $2)),
live AS (
  SELECT ns.id, ns.name, ns.applied_revision, ns.errors, ns.state, ns.serving, ns.failing, g.down_timeout_ms
  FROM node_states ns JOIN node_groups g ON g.id = ns.node_group_id
  WHERE ns.node_group_id = $1 AND ns.last_seen_at IS NOT NULL),
x AS (
  SELECT lbs.id AS lb_id, lbs.rev, n.name, n.applied_revision, n.errors, n.state, n.serving, n.failing, n.down_timeout_ms,
    (SELECT string_agg(CASE WHEN e.field <> '' THEN e.field || ': ' || e.message ELSE e.message END, '; ' ORDER BY e.object_id)
       FROM node_lb_errors e WHERE e.node_id = n.id AND e.load_balancer_id = lbs.id) AS lb_error,
    n.applied_revision < lbs.rev AND COALESCE((SELECT created_at FROM revisions WHERE revision = lbs.rev), '-infinity') < now() - make_interval(secs => $3) AS behind
  FROM lbs CROSS JOIN live n)
SELECT lb_id, name, applied_revision, rev, errors, state, failing, down_timeout_ms, COALESCE(lb_error, ''), behind FROM x
WHERE NOT serving OR state <> 'online' OR lb_error IS NOT NULL OR behind
ORDER BY lb_id, name`
	rows, err := tx.pg.Query(ctx, q, groupID, lbID, NodeBehindGrace.Seconds())
	if err != nil {
		return nil, fmt.Errorf("lagging nodes: %w", err)
	}
	defer rows.Close()
	var out []LaggingNode
	for rows.Next() {
		var (
			n               LaggingNode
			applied, rev    int64
			rawErrs         []byte
			state           string
			failing, behind bool
			downTimeoutMs   int
			lbError         string
			nodeErrs        []NodeError
			parts           []string
		)
		if err := rows.Scan(&n.LoadBalancerID, &n.Name, &applied, &rev, &rawErrs, &state, &failing, &downTimeoutMs, &lbError, &behind); err != nil {
			return nil, fmt.Errorf("lagging nodes: %w", err)
		}
		_ = json.Unmarshal(rawErrs, &nodeErrs)
		switch state {
		case NodeDown:
			n.Status = NodeDown
			parts = append(parts, "no heartbeat for over "+(time.Duration(downTimeoutMs)*time.Millisecond).String()+"; not counted until it reports again")
		case NodeDraining:
			n.Status = NodeDraining
			parts = append(parts, "draining: giving up its VIPs and going out of service; not counted")
		case NodeCordoned:
			n.Status = NodeCordoned
			parts = append(parts, "cordoned: keeps serving what it has, takes no VIPs; not counted")
		case NodeErrored:
			n.Status = NodeErrored
		default:
			if lbError != "" {
				n.Status = NodeErrored
			} else {
				n.Status = "applying"
			}
		}
		if failing {
			parts = append(parts, "failing every apply for longer than the group's apply grace; not counted")
		}
		if lbError != "" {
			parts = append(parts, "rejects this load balancer: "+lbError)
		}
		if len(nodeErrs) > 0 {
			parts = append(parts, "node errors: "+NodeErrorKinds(nodeErrs))
		}
		if behind {
			parts = append(parts, fmt.Sprintf("applied revision %d, the load balancer is at %d", applied, rev))
		}
		if n.Status == NodeErrored && len(parts) == 0 {
			parts = append(parts, "its last applies failed")
		}
		n.StatusMessage = strings.Join(parts, "; ")
		out = append(out, n)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("lagging nodes: %w", err)
	}
	return out, nil
}
