package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Group commit of node reports (issue 10): a replica gathers the reports
// that arrive within a few milliseconds and writes them in one transaction
// of set-based statements (WriteReportBatch): one lookup that locks every
// reporting node's row, one UPDATE of their heartbeat columns, one statement
// each for load balancer errors. Counters are not written here: the API
// merges them per (node, load balancer) and writes them about every second
// (StoreCounters). What a report does to its
// node is decided by the caller (ReportItem.Decide) from the node's row, as
// locked; the store only writes it.

// OwnPool is a store like s on a pool of its own, of at most conns
// connections configured as s's (connected when first used), for the report
// writer: a batch of reports never waits for a connection behind snapshot
// polls, authentications and writes. Close it when done.
func (s *Store) OwnPool(conns int32) (*Store, error) {
	cfg := s.pool.Config()
	cfg.MaxConns, cfg.MinConns = conns, 0
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		return nil, fmt.Errorf("report pool: %w", err)
	}
	return &Store{pool: pool}, nil
}

// ReportWrite is what one report makes of its node's row and its node's
// other rows: the node's columns as they are to be (the caller starts from
// the row it was given and changes what the report changes).
type ReportWrite struct {
	// SeenAt is the node's new last_seen_at.
	SeenAt               time.Time
	StatusMessage        string
	AppliedRevision      int64
	ApplyFailingSince    *time.Time
	ApplyFailingRevision int64
	VIPs                 []string
	Errors               []NodeError
	// ReplaceLBErrors says LBErrors replace the node's load balancer errors
	// (an empty list clears them); otherwise they stay as they are.
	ReplaceLBErrors bool
	LBErrors        []LBError
	// Changed says the report changes something statuses depend on
	// (WriteReportBatch adds a change of load balancer errors).
	Changed bool
}

// ReportItem is one report of a batch.
type ReportItem struct {
	// Key is the node's id or name (an id match wins).
	Key string
	// Decide makes the report's write from the node's row (nil when no node
	// has that id or name), its state and whether it counts for its group
	// (the node_states view, before this batch). An error refuses this
	// report only. Decide may run again when the batch is retried, so it
	// must not have side effects; a node reported twice in one batch is
	// given the row as the first report left it.
	Decide func(n *Node, state string, serving bool) (*ReportWrite, error)
}

// ReportResult is the outcome of one report of a batch.
type ReportResult struct {
	// Node is the node's row as the report left it (nil when refused).
	Node *Node
	// Changed is ReportWrite.Changed, or the report changed its node's load
	// balancer errors.
	Changed bool
	// Err is Decide's error: the report was refused.
	Err error
	// DownTimeout is the node's group's: how long the node counts as up
	// after this report.
	DownTimeout time.Duration
}

// reportedNode is a node's row with its state (node_states) and its
// group's down timeout.
type reportedNode struct {
	Node
	State         string `db:"state"`
	Serving       bool   `db:"serving"`
	DownTimeoutMs int64  `db:"down_timeout_ms"`
}

// WriteReportBatch writes a batch of reports in one short transaction
// without the write lock and without a revision (as WriteReport), retried
// as a whole after a deadlock or serialization failure. The error is that
// of the transaction: then no report of the batch was written. Otherwise
// every report has its result, refused ones with their Err.
//
// The transaction takes two round trips: BEGIN with the lookup that locks
// the nodes' rows, then every write with COMMIT.
func (s *Store) WriteReportBatch(ctx context.Context, items []ReportItem) ([]ReportResult, error) {
	var out []ReportResult
	err := retry(ctx, false, func() error {
		c, err := s.pool.Acquire(ctx)
		if err != nil {
			return fmt.Errorf("acquire connection: %w", err)
		}
		defer c.Release() // a connection left in a transaction is closed, not reused
		conn := c.Conn()
		committed := false
		defer func() {
			if !committed && !conn.IsClosed() {
				_, _ = conn.Exec(context.WithoutCancel(ctx), "ROLLBACK")
			}
		}()
		out, err = writeReportBatch(ctx, conn, items)
		if err != nil {
			if conn.IsClosed() {
				return fmt.Errorf("%w: the connection was lost (%v)", ErrUnavailable, err)
			}
			return err
		}
		committed = true
		return nil
	})
	if err != nil {
		return nil, mapError(err)
	}
	return out, nil
}

// lookupReportingNodes locks and reads the nodes of keys (ids or names),
// in id order, so that batches of several replicas never deadlock one
// another.
const lookupReportingNodes = `SELECT n.*, s.state, s.serving, g.down_timeout_ms
FROM nodes n JOIN node_states s ON s.id = n.id JOIN node_groups g ON g.id = n.node_group_id
WHERE n.id = ANY($1) OR n.name = ANY($1) ORDER BY n.id FOR UPDATE OF n`

func writeReportBatch(ctx context.Context, conn *pgx.Conn, items []ReportItem) ([]ReportResult, error) {
	keys := make([]string, 0, len(items))
	for _, it := range items {
		keys = append(keys, it.Key)
	}
	first := &pgx.Batch{}
	first.Queue("BEGIN")
	first.Queue(lookupReportingNodes, keys)
	br := conn.SendBatch(ctx, first)
	if _, err := br.Exec(); err != nil {
		_ = br.Close()
		return nil, fmt.Errorf("begin: %w", err)
	}
	rows, _ := br.Query()
	found, err := pgx.CollectRows(rows, pgx.RowToAddrOfStructByNameLax[reportedNode])
	if err != nil {
		_ = br.Close()
		return nil, fmt.Errorf("look up reporting nodes: %w", err)
	}
	if err := br.Close(); err != nil {
		return nil, fmt.Errorf("look up reporting nodes: %w", err)
	}
	byID := make(map[string]*reportedNode, len(found))
	byName := make(map[string]*reportedNode, len(found))
	for _, n := range found {
		byID[n.ID] = n
		byName[n.Name] = n
	}
	out := make([]ReportResult, len(items))
	// writes holds each node's final write, in the order nodes first appear.
	writes := map[string]*ReportWrite{}
	var order []*reportedNode
	lbReporters := map[string][]int{} // node id → items that replace its load balancer errors
	for i, it := range items {
		n := byID[it.Key]
		if n == nil {
			n = byName[it.Key]
		}
		var node *Node
		state, serving := "", false
		if n != nil {
			cp := n.Node
			node, state, serving = &cp, n.State, n.Serving
		}
		w, err := it.Decide(node, state, serving)
		if err != nil {
			out[i].Err = err
			continue
		}
		if node == nil {
			return nil, fmt.Errorf("report of %q: decided without a node", it.Key)
		}
		prev, seen := writes[n.ID]
		if !seen {
			order = append(order, n)
		} else {
			// A second report of the node in this batch: load balancer
			// errors are the last sent.
			if !w.ReplaceLBErrors && prev.ReplaceLBErrors {
				w.ReplaceLBErrors, w.LBErrors = true, prev.LBErrors
			}
		}
		writes[n.ID] = w
		if w.ReplaceLBErrors {
			lbReporters[n.ID] = append(lbReporters[n.ID], i)
		}
		// The row as this report leaves it, for the next report of the
		// node in this batch and for the caller.
		seenAt := w.SeenAt
		n.LastSeenAt, n.Status = &seenAt, "online"
		n.StatusMessage, n.AppliedRevision = w.StatusMessage, w.AppliedRevision
		n.ApplyFailingSince, n.ApplyFailingRevision = w.ApplyFailingSince, w.ApplyFailingRevision
		n.VIPs, n.Errors = w.VIPs, w.Errors
		if n.State != NodeOnline && n.AdminState == "" && len(n.Errors) == 0 && n.ApplyFailingSince == nil {
			n.State = NodeOnline
		}
		cp := n.Node
		out[i] = ReportResult{Node: &cp, Changed: w.Changed, DownTimeout: time.Duration(n.DownTimeoutMs) * time.Millisecond}
	}
	second := &pgx.Batch{}
	var lbDel, lbIns bool
	if len(order) > 0 {
		if err := queueNodeUpdate(second, order, writes); err != nil {
			return nil, err
		}
		lbDel, lbIns = queueLBErrors(second, order, writes)
	}
	second.Queue("COMMIT")
	br = conn.SendBatch(ctx, second)
	defer br.Close()
	if len(order) > 0 {
		if _, err := br.Exec(); err != nil {
			return nil, fmt.Errorf("record node heartbeats: %w", err)
		}
	}
	changed := map[string]bool{}
	for _, q := range []bool{lbDel, lbIns} {
		if !q {
			continue
		}
		rows, _ := br.Query()
		ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return nil, fmt.Errorf("store load balancer errors: %w", err)
		}
		for _, id := range ids {
			changed[id] = true
		}
	}
	if _, err := br.Exec(); err != nil {
		return nil, fmt.Errorf("commit: %w", err)
	}
	if err := br.Close(); err != nil {
		return nil, fmt.Errorf("commit: %w", err)
	}
	for id := range changed {
		for _, i := range lbReporters[id] {
			out[i].Changed = true
		}
	}
	return out, nil
}

// queueNodeUpdate queues the statement writing every node's heartbeat
// columns.
func queueNodeUpdate(b *pgx.Batch, order []*reportedNode, writes map[string]*ReportWrite) error {
	k := len(order)
	ids, msgs := make([]string, 0, k), make([]string, 0, k)
	seen := make([]time.Time, 0, k)
	revs, failRevs := make([]int64, 0, k), make([]int64, 0, k)
	failSince := make([]*time.Time, 0, k)
	vips, errs := make([]string, 0, k), make([]string, 0, k)
	for _, n := range order {
		w := writes[n.ID]
		v := w.VIPs
		if v == nil {
			v = []string{}
		}
		vj, err := json.Marshal(v)
		if err != nil {
			return fmt.Errorf("encode vips: %w", err)
		}
		e := w.Errors
		if e == nil {
			e = []NodeError{}
		}
		ej, err := json.Marshal(e)
		if err != nil {
			return fmt.Errorf("encode node errors: %w", err)
		}
		ids, msgs, seen = append(ids, n.ID), append(msgs, w.StatusMessage), append(seen, w.SeenAt)
		revs, failRevs, failSince = append(revs, w.AppliedRevision), append(failRevs, w.ApplyFailingRevision), append(failSince, w.ApplyFailingSince)
		vips, errs = append(vips, string(vj)), append(errs, string(ej))
	}
	b.Queue(`UPDATE nodes n SET last_seen_at = v.seen, status = 'online', status_message = v.msg,
  applied_revision = v.rev, apply_failing_since = v.fail_since, apply_failing_revision = v.fail_rev,
  vips = v.vips::jsonb, errors = v.errs::jsonb
FROM unnest($1::text[], $2::timestamptz[], $3::text[], $4::bigint[], $5::timestamptz[], $6::bigint[], $7::text[], $8::text[])
  v(id, seen, msg, rev, fail_since, fail_rev, vips, errs)
WHERE n.id = v.id`, ids, seen, msgs, revs, failSince, failRevs, vips, errs)
	return nil
}

// queueLBErrors queues the statements replacing the load balancer errors
// of the nodes whose write says so (as storeLBErrors does for one node),
// each returning the ids of the nodes whose errors it changed; it says
// which it queued.
func queueLBErrors(b *pgx.Batch, order []*reportedNode, writes map[string]*ReportWrite) (del, ins bool) {
	var nodes []string
	var eNodes, eGroups, lbs, objs, fields, msgs []string
	for _, n := range order {
		w := writes[n.ID]
		if !w.ReplaceLBErrors {
			continue
		}
		nodes = append(nodes, n.ID)
		seen := map[[2]string]bool{}
		for _, e := range w.LBErrors {
			k := [2]string{e.LoadBalancerID, e.ObjectID}
			if seen[k] {
				continue
			}
			seen[k] = true
			eNodes, eGroups = append(eNodes, n.ID), append(eGroups, n.NodeGroupID)
			lbs, objs, fields, msgs = append(lbs, e.LoadBalancerID), append(objs, e.ObjectID), append(fields, e.Field), append(msgs, e.Message)
		}
	}
	if len(nodes) == 0 {
		return false, false
	}
	b.Queue(`DELETE FROM node_lb_errors e WHERE e.node_id = ANY($1) AND NOT EXISTS (
  SELECT 1 FROM unnest($2::text[], $3::text[], $4::text[]) v(node, lb, obj) WHERE v.node = e.node_id AND v.lb = e.load_balancer_id AND v.obj = e.object_id)
RETURNING e.node_id`, nodes, eNodes, lbs, objs)
	if len(lbs) == 0 {
		return true, false
	}
	b.Queue(`INSERT INTO node_lb_errors (node_id, load_balancer_id, object_id, field, message)
SELECT v.node, v.lb, v.obj, v.field, v.msg FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[]) v(node, grp, lb, obj, field, msg)
JOIN load_balancers lb ON lb.id = v.lb AND lb.node_group_id = v.grp
ON CONFLICT (node_id, load_balancer_id, object_id) DO UPDATE SET field = EXCLUDED.field, message = EXCLUDED.message
WHERE (node_lb_errors.field, node_lb_errors.message) IS DISTINCT FROM (EXCLUDED.field, EXCLUDED.message)
RETURNING node_id`, eNodes, eGroups, lbs, objs, fields, msgs)
	return true, true
}

// CounterRow is one node's latest counters (JSON) of one load balancer.
type CounterRow struct {
	Node, LoadBalancer string
	Counters           []byte
}

// StoreCounters writes rows (at most one per node and load balancer) in one
// statement, in (node, load balancer) order so that writers of several
// replicas never deadlock one another: those of nodes and load balancers
// that exist no more, or of load balancers not of their node's group, are
// ignored, and those equal to what is stored are not written. It returns how
// many rows it wrote.
func (s *Store) StoreCounters(ctx context.Context, rows []CounterRow) (int64, error) {
	if len(rows) == 0 {
		return 0, nil
	}
	sorted := slices.Clone(rows)
	slices.SortFunc(sorted, func(a, b CounterRow) int {
		if c := strings.Compare(a.Node, b.Node); c != 0 {
			return c
		}
		return strings.Compare(a.LoadBalancer, b.LoadBalancer)
	})
	nodes, lbs, vals := make([]string, len(sorted)), make([]string, len(sorted)), make([]string, len(sorted))
	for i, r := range sorted {
		nodes[i], lbs[i], vals[i] = r.Node, r.LoadBalancer, string(r.Counters)
	}
	var written int64
	for attempt := 0; ; attempt++ {
		err := retry(ctx, false, func() error {
			tag, err := s.pool.Exec(ctx, `INSERT INTO load_balancer_stats (node_id, load_balancer_id, counters, updated_at)
SELECT n.id, lb.id, v.c::jsonb, now() FROM unnest($1::text[], $2::text[], $3::text[]) v(node, lb, c)
JOIN nodes n ON n.id = v.node
JOIN load_balancers lb ON lb.id = v.lb AND lb.node_group_id = n.node_group_id
ON CONFLICT (node_id, load_balancer_id) DO UPDATE SET counters = EXCLUDED.counters, updated_at = now()
WHERE load_balancer_stats.counters IS DISTINCT FROM EXCLUDED.counters`, nodes, lbs, vals)
			written = tag.RowsAffected()
			return err
		})
		// A node or load balancer deleted while the statement ran: the
		// next attempt leaves it out.
		var pgErr *pgconn.PgError
		if err != nil && attempt < 2 && errors.As(err, &pgErr) && pgErr.Code == "23503" && ctx.Err() == nil {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("store counters: %w", mapError(err))
		}
		return written, nil
	}
}

// NodeErrorsSince is errs as a node's new errors: a kind already in old
// keeps its since, a new one gets now.
func NodeErrorsSince(old, errs []NodeError, now time.Time) []NodeError {
	since := map[string]time.Time{}
	for _, e := range old {
		since[e.Kind] = e.Since
	}
	out := make([]NodeError, 0, len(errs))
	for _, e := range errs {
		if s, ok := since[e.Kind]; ok {
			e.Since = s
		} else {
			e.Since = now
		}
		out = append(out, e)
	}
	return out
}

// NodesSeen records when nodes were last seen (ids[i] at seen[i]) for
// heartbeats acknowledged without a batch, in one statement; a later
// last_seen_at stays. It returns the ids of the nodes that exist no more,
// and those of the nodes that are plain: no admin state, no node errors, no
// failing apply and no load balancer errors, whoever wrote them.
func (s *Store) NodesSeen(ctx context.Context, ids []string, seen []time.Time) (gone []string, plain map[string]bool, err error) {
	type row struct {
		id string
		at time.Time
	}
	rows := make([]row, len(ids))
	for i := range ids {
		rows[i] = row{ids[i], seen[i]}
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i].id < rows[j].id })
	sorted, times := make([]string, len(rows)), make([]time.Time, len(rows))
	for i, r := range rows {
		sorted[i], times[i] = r.id, r.at
	}
	type seenRow struct {
		ID    string `db:"id"`
		Plain bool   `db:"plain"`
	}
	var found []seenRow
	err = retry(ctx, false, func() error {
		rows, _ := s.pool.Query(ctx, `UPDATE nodes n SET last_seen_at = GREATEST(n.last_seen_at, v.seen)
FROM unnest($1::text[], $2::timestamptz[]) v(id, seen) WHERE n.id = v.id
RETURNING n.id, n.admin_state = '' AND jsonb_array_length(n.errors) = 0 AND n.apply_failing_since IS NULL
  AND NOT EXISTS (SELECT 1 FROM node_lb_errors e WHERE e.node_id = n.id) AS plain`, sorted, times)
		var err error
		found, err = pgx.CollectRows(rows, pgx.RowToStructByName[seenRow])
		return err
	})
	if err != nil {
		return nil, nil, fmt.Errorf("record heartbeats: %w", mapError(err))
	}
	exists := make(map[string]bool, len(found))
	plain = make(map[string]bool, len(found))
	for _, r := range found {
		exists[r.ID] = true
		if r.Plain {
			plain[r.ID] = true
		}
	}
	for _, id := range sorted {
		if !exists[id] {
			gone = append(gone, id)
		}
	}
	return gone, plain, nil
}

// AckWrite is an acknowledgement of a node that, as its last report left
// it, has nothing an acknowledgement would clear: no node errors, no
// failing apply, no load balancer errors (WriteAcks).
type AckWrite struct {
	NodeID, GroupID string
	// Applied is the revision acknowledged, At when.
	Applied int64
	At      time.Time
}

// WriteAcks records acknowledgements (issue 10) in one statement without
// reading the nodes' rows back: each raises its node's applied_revision to
// Applied (never lowers it), its last_seen_at to At (never lowers it), and
// sets it online with no status message — what a report acknowledging
// Applied with no errors makes of such a node (WriteReportBatch with the
// API's decision), without a transaction of two round trips. A node is
// written only while it is of GroupID and still has nothing to clear
// (another replica may have written its errors meanwhile); the ids of the
// others (those too, gone or moved) are returned, for the caller to record
// as full reports, which read the row. Several acknowledgements of one node
// count as the newest.
func (s *Store) WriteAcks(ctx context.Context, acks []AckWrite) (missed []string, err error) {
	if len(acks) == 0 {
		return nil, nil
	}
	// One row per node (an UPDATE … FROM takes one arbitrary match of a
	// row), in id order so that writers of several replicas lock alike.
	byID := make(map[string]int, len(acks))
	merged := make([]AckWrite, 0, len(acks))
	for _, a := range acks {
		i, ok := byID[a.NodeID]
		if !ok {
			byID[a.NodeID] = len(merged)
			merged = append(merged, a)
			continue
		}
		m := &merged[i]
		m.Applied = max(m.Applied, a.Applied)
		if a.At.After(m.At) {
			m.At = a.At
		}
		if m.GroupID != a.GroupID {
			m.GroupID = "" // seen in two groups: not written, the caller reads the row
		}
	}
	slices.SortFunc(merged, func(a, b AckWrite) int { return strings.Compare(a.NodeID, b.NodeID) })
	ids, groups := make([]string, len(merged)), make([]string, len(merged))
	revs, seen := make([]int64, len(merged)), make([]time.Time, len(merged))
	for i, a := range merged {
		ids[i], groups[i], revs[i], seen[i] = a.NodeID, a.GroupID, a.Applied, a.At
	}
	err = retry(ctx, false, func() error {
		missed = nil
		return s.pool.QueryRow(ctx, writeAcks, ids, groups, revs, seen).Scan(&missed)
	})
	if err != nil {
		return nil, fmt.Errorf("record acknowledgements: %w", mapError(err))
	}
	return missed, nil
}

// writeAcks writes acknowledgements of plain nodes and returns the ids of
// those it did not write.
const writeAcks = `WITH v AS (SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::timestamptz[]) v(id, grp, rev, seen)),
u AS (UPDATE nodes n SET applied_revision = GREATEST(n.applied_revision, v.rev), last_seen_at = GREATEST(n.last_seen_at, v.seen),
  status = 'online', status_message = ''
FROM v WHERE n.id = v.id AND n.node_group_id = v.grp AND jsonb_array_length(n.errors) = 0 AND n.apply_failing_since IS NULL
  AND NOT EXISTS (SELECT 1 FROM node_lb_errors e WHERE e.node_id = n.id)
RETURNING n.id)
SELECT COALESCE(array_agg(v.id), '{}') FROM v WHERE v.id NOT IN (SELECT id FROM u)`
