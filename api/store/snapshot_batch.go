package store

import (
	"context"
	"fmt"
	"math"

	"github.com/jackc/pgx/v5"
)

// Batched reads of a node group's snapshot part and poll view (issue 10,
// member change at 1,000 load balancers): the statements a rebuild needs go
// to Postgres in one round trip each (pgx batches) instead of one round trip
// per statement. On a loaded machine every round trip waits for both the
// Postgres backend and the API to be scheduled again; a rebuild after one
// member change sent about eighteen of them, now four (begin, the group's
// part, the changed load balancers' rows, commit).

// genericPlans makes the transaction's prepared statements run on the plan
// made at their first execution on the connection, never planned again: the
// statements below read revisions in ranges (noCeiling), whose plan does not
// depend on the bounds. Planned for their values at every execution (as
// QueryExecModeExec does), the statements of one build cost Postgres about
// 8 ms of planning for 1 ms of execution at 1,000 load balancers.
const genericPlans = "SET LOCAL plan_cache_mode = force_generic_plan"

// groupRevisionSinceExpr is GroupRevisionSince's expression ($1 the group,
// $2 the floor).
const groupRevisionSinceExpr = `GREATEST($2::bigint,
  (SELECT revision FROM node_groups WHERE id = $1),
  (SELECT max(revision) FROM load_balancers WHERE node_group_id = $1 AND revision > $2 AND revision < $3),
  (SELECT max(t.revision) FROM listeners t JOIN load_balancers lb ON lb.id = t.load_balancer_id WHERE t.revision > $2 AND t.revision < $3 AND lb.node_group_id = $1),
  (SELECT max(t.revision) FROM pools t JOIN load_balancers lb ON lb.id = t.load_balancer_id WHERE t.revision > $2 AND t.revision < $3 AND lb.node_group_id = $1),
  (SELECT max(t.revision) FROM members t JOIN load_balancers lb ON lb.id = t.load_balancer_id WHERE t.revision > $2 AND t.revision < $3 AND lb.node_group_id = $1),
  (SELECT max(t.revision) FROM routing_rules t JOIN load_balancers lb ON lb.id = t.load_balancer_id WHERE t.revision > $2 AND t.revision < $3 AND lb.node_group_id = $1),
  (SELECT purged_revision FROM snapshot_purges WHERE node_group_id = $1))`

// noCeiling is the upper bound ($3) of the revision ranges above: above
// every revision. The statements compare each revision with a range, not
// with its lower bound alone: planned once for any bounds (a generic plan),
// Postgres estimates a range of one column to hold few rows (0.5%) and reads
// them by the revision indexes, as a plan for the bounds at hand does for a
// recent floor; an open comparison it estimates to hold a third of the
// rows, and reads the group's whole tree. So the statements need no plan per
// execution (planning them cost more than running them: 1.5–6 ms each at
// 1,000 load balancers).
const noCeiling = int64(math.MaxInt64)

// groupWriteRevisionsSince is groupWriteRevisions' revisions after $2 only:
// a row's delete sets its revision too (delete.go), so only rows whose
// revision is after $2 are read (the revision indexes find them).
var groupWriteRevisionsSince = func() string {
	const since = " > $2 AND revision < $4"
	q := "SELECT revision FROM node_groups WHERE id = $1 AND revision > $2" +
		" UNION SELECT revision FROM load_balancers WHERE node_group_id = $1 AND revision" + since +
		" UNION SELECT deleted_revision FROM load_balancers WHERE node_group_id = $1 AND revision" + since + " AND deleted_revision > $2"
	for _, t := range []string{"listeners", "pools", "members", "routing_rules"} {
		q += " UNION SELECT t.revision FROM " + t + " t JOIN load_balancers lb ON lb.id = t.load_balancer_id WHERE t.revision > $2 AND t.revision < $4 AND lb.node_group_id = $1" +
			" UNION SELECT t.deleted_revision FROM " + t + " t JOIN load_balancers lb ON lb.id = t.load_balancer_id WHERE t.revision > $2 AND t.revision < $4 AND t.deleted_revision > $2 AND lb.node_group_id = $1"
	}
	return q
}()

// changedSinceBounded lists the load balancers of group $1 with a row written
// after revision $2 and below $3 (noCeiling: any newer), revisions compared in
// ranges so a generic plan serves every floor.
var changedSinceBounded = func() string {
	q := "SELECT id FROM load_balancers WHERE node_group_id = $1 AND revision > $2 AND revision < $3"
	for _, t := range []string{"listeners", "pools", "members", "routing_rules"} {
		q += " UNION SELECT t.load_balancer_id FROM " + t + " t JOIN load_balancers lb ON lb.id = t.load_balancer_id WHERE t.revision > $2 AND t.revision < $3 AND lb.node_group_id = $1"
	}
	q += " UNION SELECT l.load_balancer_id FROM certificates c JOIN listener_certificates lc ON lc.certificate_id = c.id" +
		" JOIN listeners l ON l.id = lc.listener_id JOIN load_balancers lb ON lb.id = l.load_balancer_id" +
		" WHERE c.revision > $2 AND c.revision < $3 AND lb.node_group_id = $1 AND l.deleted_revision IS NULL"
	return q
}()

// groupPeers is PeerListByGroup's statement for group $1, every node of it
// when the group uses VRRP (ReadGroupPart reads the group in the same round
// trip).
const groupPeers = `SELECT name, peer_address FROM nodes WHERE node_group_id = $1
  AND (peer_address <> '' OR EXISTS (SELECT 1 FROM node_groups WHERE id = $1 AND vrrp_interface <> ''))
ORDER BY name`

// GroupPart is what a build of a node group's snapshot part reads besides
// the rows of the load balancers it reads again (ReadGroupPart).
type GroupPart struct {
	// Revision is the group's revision (GroupRevision; GroupRevisionSince
	// of the floor given).
	Revision int64
	// Traceparent is the trace context of the newest write at or before
	// Revision (RevisionTraceparentGet).
	Traceparent string
	// Purged is the group's purged revision (GroupPurgedRevision).
	Purged int64
	Group  *NodeGroup
	// Live are the group's live load balancers (LiveLoadBalancerIDs).
	Live []string
	// Changed are the load balancers with a row written after the floor
	// (LoadBalancersChangedSince); nil when no floor was given.
	Changed []string
	// Deleted are the deleted load balancers not purged yet
	// (LoadBalancerListDeleted).
	Deleted []DeletedLoadBalancer
	// Writes are the trace contexts of the group's writes after the floor
	// (all of them without one), the newest limit of them, oldest first:
	// RevisionTraceparentListByGroup's, with revisions.
	Writes []RevisionTraceparent
	// Peers are PeerListByGroup's of the group, all of them (Address ""
	// for those without one) when the group uses VRRP.
	Peers []Peer
}

// ReadGroupPart reads, in one round trip, what a build of node group
// groupID's snapshot part needs besides its load balancers' rows. With floor
// > 0 (the revision of an earlier part of the group) it reads only the rows
// written after floor: the revision never below it, the load balancers
// changed since, the writes since; with floor 0 every row.
func ReadGroupPart(ctx context.Context, tx *Tx, groupID string, floor int64, limit int) (*GroupPart, error) {
	floor = max(floor, 0)
	b := &pgx.Batch{}
	b.Queue(genericPlans)
	b.Queue(`WITH g AS (SELECT `+groupRevisionSinceExpr+` AS rev)
SELECT g.rev, COALESCE((SELECT traceparent FROM revisions WHERE revision <= g.rev ORDER BY revision DESC LIMIT 1), '') FROM g`, groupID, floor, noCeiling)
	b.Queue("SELECT COALESCE((SELECT purged_revision FROM snapshot_purges WHERE node_group_id = $1), 0)", groupID)
	b.Queue("SELECT * FROM node_groups WHERE id = $1", groupID)
	b.Queue("SELECT id FROM load_balancers WHERE node_group_id = $1 AND deleted_revision IS NULL", groupID)
	b.Queue("SELECT id, deleted_revision FROM load_balancers WHERE node_group_id = $1 AND deleted_revision IS NOT NULL ORDER BY id", groupID)
	b.Queue(`SELECT revision, traceparent FROM (
  SELECT revision, traceparent FROM revisions
  WHERE revision > $2 AND revision < $4 AND traceparent <> '' AND revision IN (`+groupWriteRevisionsSince+`)
  ORDER BY revision DESC LIMIT $3) w ORDER BY revision`, groupID, floor, limit, noCeiling)
	b.Queue(groupPeers, groupID)
	if floor > 0 {
		b.Queue(changedSinceBounded, groupID, floor, noCeiling)
	}
	br, err := tx.sendBatch(ctx, b)
	if err != nil {
		return nil, err
	}
	p, err := readGroupPart(br, groupID, floor)
	if cerr := br.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("read group part of %s: %w", groupID, cerr)
	}
	if err != nil {
		return nil, err
	}
	return p, nil
}

func readGroupPart(br pgx.BatchResults, groupID string, floor int64) (*GroupPart, error) {
	p := &GroupPart{}
	if _, err := br.Exec(); err != nil {
		return nil, fmt.Errorf("read group part: %w", err)
	}
	if err := br.QueryRow().Scan(&p.Revision, &p.Traceparent); err != nil {
		return nil, fmt.Errorf("group revision: %w", err)
	}
	if err := br.QueryRow().Scan(&p.Purged); err != nil {
		return nil, fmt.Errorf("purged revision: %w", err)
	}
	rows, _ := br.Query()
	groups, err := pgx.CollectRows(rows, pgx.RowToAddrOfStructByNameLax[NodeGroup])
	if err != nil {
		return nil, fmt.Errorf("read node group %s: %w", groupID, err)
	}
	if len(groups) != 1 {
		return nil, fmt.Errorf("node group %s: %w", groupID, ErrNotFound)
	}
	p.Group = groups[0]
	rows, _ = br.Query()
	if p.Live, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
		return nil, fmt.Errorf("live load balancers: %w", err)
	}
	rows, _ = br.Query()
	p.Deleted, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (DeletedLoadBalancer, error) {
		var d DeletedLoadBalancer
		err := r.Scan(&d.ID, &d.Revision)
		return d, err
	})
	if err != nil {
		return nil, fmt.Errorf("deleted load balancers: %w", err)
	}
	rows, _ = br.Query()
	p.Writes, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (RevisionTraceparent, error) {
		var t RevisionTraceparent
		err := r.Scan(&t.Revision, &t.Traceparent)
		return t, err
	})
	if err != nil {
		return nil, fmt.Errorf("write traceparents: %w", err)
	}
	rows, _ = br.Query()
	if p.Peers, err = pgx.CollectRows(rows, pgx.RowToStructByName[Peer]); err != nil {
		return nil, fmt.Errorf("group peers: %w", err)
	}
	if floor > 0 {
		rows, _ = br.Query()
		if p.Changed, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
			return nil, fmt.Errorf("load balancers changed since %d: %w", floor, err)
		}
		if p.Changed == nil {
			p.Changed = []string{}
		}
	}
	return p, nil
}

// LoadBalancerRows are the rows of a snapshot's load balancers
// (ReadLoadBalancerRows).
type LoadBalancerRows struct {
	LoadBalancers []*LoadBalancer
	Listeners     []*Listener
	Pools         []*Pool
	Members       []*Member
	RoutingRules  []*RoutingRule
	// Revisions are LoadBalancerRevisions of the scope.
	Revisions map[string]int64
	// Certificates are CertificateListByScope of the certificates' scope,
	// nil when none was given.
	Certificates []*Certificate
}

// ReadLoadBalancerRows reads, in one round trip, the live load balancers of
// scope sc with their live listeners, pools, members and routing rules and
// their revisions (as LoadBalancerListByScope … LoadBalancerRevisions), and,
// when certs is not nil, the certificates the live listeners of scope
// *certs use (CertificateListByScope).
func ReadLoadBalancerRows(ctx context.Context, tx *Tx, sc SnapshotScope, certs *SnapshotScope) (*LoadBalancerRows, error) {
	b := &pgx.Batch{}
	b.Queue("SELECT t.* FROM load_balancers t WHERE t."+sc.col+sc.cmp+" AND t.deleted_revision IS NULL ORDER BY t.id", sc.arg)
	for _, t := range []string{"listeners", "pools", "members", "routing_rules"} {
		b.Queue(sc.children(t), sc.arg)
	}
	b.Queue("SELECT load_balancer_id, max(revision) FROM ("+sc.lbChildRevisions()+") r GROUP BY load_balancer_id", sc.arg)
	if certs != nil {
		b.Queue(certs.certificates(), certs.arg)
	}
	br, err := tx.sendBatch(ctx, b)
	if err != nil {
		return nil, err
	}
	out, err := readLoadBalancerRows(br, certs != nil)
	if cerr := br.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("read load balancers: %w", cerr)
	}
	if err != nil {
		return nil, err
	}
	return out, nil
}

func readLoadBalancerRows(br pgx.BatchResults, certs bool) (*LoadBalancerRows, error) {
	out := &LoadBalancerRows{Revisions: map[string]int64{}}
	var err error
	if out.LoadBalancers, err = collect[LoadBalancer](br, "load balancers"); err != nil {
		return nil, err
	}
	if out.Listeners, err = collect[Listener](br, "listeners"); err != nil {
		return nil, err
	}
	if out.Pools, err = collect[Pool](br, "pools"); err != nil {
		return nil, err
	}
	if out.Members, err = collect[Member](br, "members"); err != nil {
		return nil, err
	}
	if out.RoutingRules, err = collect[RoutingRule](br, "routing rules"); err != nil {
		return nil, err
	}
	rows, _ := br.Query()
	var id string
	var rev int64
	if _, err := pgx.ForEachRow(rows, []any{&id, &rev}, func() error {
		out.Revisions[id] = rev
		return nil
	}); err != nil {
		return nil, fmt.Errorf("load balancer revisions: %w", err)
	}
	if certs {
		if out.Certificates, err = collect[Certificate](br, "certificates"); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// collect reads the next result of br as rows of one model.
func collect[T any](br pgx.BatchResults, what string) ([]*T, error) {
	rows, _ := br.Query()
	out, err := pgx.CollectRows(rows, pgx.RowToAddrOfStructByNameLax[T])
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", what, err)
	}
	return out, nil
}

// ReadPollView reads, in one round trip, node group groupID's revision and
// its nodes as long-polls need them (GroupRevision and NodeListForPoll in
// one transaction). With floor >= 0 (the revision of an earlier read of the
// group) it reads only the rows written after floor, never returning less.
func ReadPollView(ctx context.Context, tx *Tx, groupID string, floor int64) (int64, []PollNode, error) {
	b := &pgx.Batch{}
	b.Queue(genericPlans)
	if floor >= 0 {
		b.Queue("SELECT "+groupRevisionSinceExpr, groupID, floor, noCeiling)
	} else {
		b.Queue("SELECT "+groupRevisionSinceExpr, groupID, int64(0), noCeiling)
	}
	// A node's trace context matters only when its revision is above the
	// group's, which is at least floor: it is read for those above floor
	// and kept for those above the group's revision.
	b.Queue(`SELECT n.id, n.name, n.node_group_id, n.admin_state, n.revision,
  CASE WHEN n.revision > $2 THEN COALESCE((SELECT r.traceparent FROM revisions r WHERE r.revision <= n.revision ORDER BY r.revision DESC LIMIT 1), '') ELSE '' END
FROM nodes n WHERE n.node_group_id = $1 ORDER BY n.id`, groupID, max(floor, 0))
	br, err := tx.sendBatch(ctx, b)
	if err != nil {
		return 0, nil, err
	}
	rev, nodes, err := readPollView(br)
	if cerr := br.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("read poll view: %w", cerr)
	}
	if err != nil {
		return 0, nil, err
	}
	for i := range nodes {
		if nodes[i].Revision <= rev {
			nodes[i].Traceparent = ""
		}
	}
	return rev, nodes, nil
}

func readPollView(br pgx.BatchResults) (int64, []PollNode, error) {
	if _, err := br.Exec(); err != nil {
		return 0, nil, fmt.Errorf("read poll view: %w", err)
	}
	var rev int64
	if err := br.QueryRow().Scan(&rev); err != nil {
		return 0, nil, fmt.Errorf("group revision: %w", err)
	}
	rows, _ := br.Query()
	nodes, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (PollNode, error) {
		var n PollNode
		err := r.Scan(&n.ID, &n.Name, &n.NodeGroupID, &n.AdminState, &n.Revision, &n.Traceparent)
		return n, err
	})
	if err != nil {
		return 0, nil, fmt.Errorf("list nodes for poll: %w", err)
	}
	return rev, nodes, nil
}
