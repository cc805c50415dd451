package store

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Reports off the write path (issue 10). A node's report writes only what is
// the node's own (its row, its load balancer errors, its counters) in a short
// transaction without the write lock (WriteReport); the statuses of its
// group's objects are derived afterwards, a batch of reports at a time, by
// DeriveGroup under a lock of that group only; deleted objects are purged by
// PurgeDeleted, which a janitor runs.

// deriveLockClass is the first key of the per-group advisory locks that
// DeriveGroup holds (the second is hashtext of the group id), so that two
// replicas never derive one group at once.
const deriveLockClass = 0x66756c64 // "fuld"

// purgeLockID is the advisory lock a replica holds while it purges, so that
// replicas queue for it before the write lock, not on it.
const purgeLockID = 0x66756c7075726765 // "fulpurge"

// txRetries bounds how many times a report's or a derivation's transaction
// is retried after a deadlock or a serialization failure (and, for a
// derivation, its short lock timeout).
const txRetries = 3

// retryable reports whether err is a collision with a concurrent
// transaction that a retry may not meet again.
func retryable(err error, lockTimeout bool) bool {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return false
	}
	switch pgErr.Code {
	case "40001", "40P01": // serialization failure, deadlock
		return true
	case "55P03": // lock_not_available: lock_timeout
		return lockTimeout
	}
	return false
}

// retry runs once until it succeeds, fails otherwise than retryable says, or
// txRetries retries are spent, backing off a little between attempts.
func retry(ctx context.Context, lockTimeout bool, once func() error) error {
	for attempt := 0; ; attempt++ {
		err := once()
		if err == nil || attempt == txRetries || !retryable(err, lockTimeout) || ctx.Err() != nil {
			return err
		}
		d := time.Duration(attempt+1)*10*time.Millisecond + rand.N(10*time.Millisecond)
		select {
		case <-ctx.Done():
			return err
		case <-time.After(d):
		}
	}
}

// WriteReport runs fn in a short read-write transaction without the write
// lock, for a node's report: fn writes only rows no revision orders (the
// node's own row, its errors, its counters), locking the node's row and
// nothing shared, and cannot take a revision (Tx.Revision fails). A deadlock
// or serialization failure reruns fn, a bounded number of times, so fn must
// be safe to run again.
func (s *Store) WriteReport(ctx context.Context, fn func(tx *Tx) error) error {
	err := retry(ctx, false, func() error {
		t, err := s.pool.Begin(ctx)
		if err != nil {
			return fmt.Errorf("begin: %w", err)
		}
		defer rollback(ctx, t)
		if err := fn(&Tx{pg: t, unordered: true}); err != nil {
			return lost(t, err)
		}
		if err := t.Commit(ctx); err != nil {
			return fmt.Errorf("commit: %w", err)
		}
		return nil
	})
	return mapError(err)
}

// NodeLBErrorsReplace replaces the node's rejected load balancers and objects
// by errs (errors about load balancers not of the node's group groupID are
// dropped) and says whether anything changed.
func NodeLBErrorsReplace(ctx context.Context, tx *Tx, nodeID, groupID string, errs []LBError) (bool, error) {
	return storeLBErrors(ctx, tx, nodeID, groupID, errs)
}

// NodeServing reads the node's state and whether it counts for its group
// (the node_states view).
func NodeServing(ctx context.Context, tx *Tx, nodeID string) (state string, serving bool, err error) {
	err = tx.pg.QueryRow(ctx, "SELECT state, serving FROM node_states WHERE id = $1", nodeID).Scan(&state, &serving)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", false, notFound(KindNode, nodeID)
	}
	if err != nil {
		return "", false, fmt.Errorf("node state: %w", err)
	}
	return state, serving, nil
}

// DeriveGroup derives the statuses of a group's objects (DeriveStatuses)
// from what every node of the group reported, applying memberStatus (member
// health by member id, may be empty) first, incrementally: it reads and
// writes the objects whose inputs may have changed since the previous
// derivation (see deriveStatuses), not every object of the group, and
// leaves them exactly as DeriveGroupAll would. It runs under the group's
// own advisory lock, never the write lock, takes no row lock before its
// reads are done, and waits at most lockTimeout for any row a write holds,
// so that a write it collides with wins; such collisions (and deadlocks)
// are retried a bounded number of times.
func (s *Store) DeriveGroup(ctx context.Context, groupID string, memberStatus map[string]string, lockTimeout time.Duration) error {
	return s.deriveGroup(ctx, groupID, memberStatus, lockTimeout, false)
}

// DeriveGroupAll is DeriveGroup over every object of the group (the
// deriver's periodic bound on what a missed mark could cost).
func (s *Store) DeriveGroupAll(ctx context.Context, groupID string, memberStatus map[string]string, lockTimeout time.Duration) error {
	return s.deriveGroup(ctx, groupID, memberStatus, lockTimeout, true)
}

func (s *Store) deriveGroup(ctx context.Context, groupID string, memberStatus map[string]string, lockTimeout time.Duration, full bool) error {
	return retry(ctx, true, func() error {
		return pgx.BeginFunc(ctx, s.pool, func(t pgx.Tx) error {
			if _, err := t.Exec(ctx, "SELECT pg_advisory_xact_lock($1, hashtext($2))", int32(deriveLockClass), groupID); err != nil {
				return fmt.Errorf("take group lock: %w", err)
			}
			if lockTimeout > 0 {
				if _, err := t.Exec(ctx, "SELECT set_config('lock_timeout', $1, true)", strconv.FormatInt(lockTimeout.Milliseconds(), 10)); err != nil {
					return fmt.Errorf("set lock timeout: %w", err)
				}
			}
			return deriveStatuses(ctx, &Tx{pg: t, unordered: true}, groupID, memberStatus, full)
		})
	})
}

// NodeGroupState is what the deriver's sweep reads of a group with a node
// that ever reported: a digest of what of its nodes' state changes with
// time alone (node_states: state, serving, failing), and whether a node may
// be behind (its applied revision below the newest revision taken, any
// group's: a node behind for longer than NodeBehindGrace turns its load
// balancers degraded with time alone, so such a group is derived at every
// sweep).
type NodeGroupState struct {
	Digest  string
	Lagging bool
}

// NodeGroupStates reads every reporting group's NodeGroupState in one query
// over the nodes (not their load balancers).
func (s *Store) NodeGroupStates(ctx context.Context) (map[string]NodeGroupState, error) {
	rows, _ := s.pool.Query(ctx, `SELECT node_group_id,
  md5(string_agg(id || ':' || state || ':' || serving::text || ':' || failing::text, ',' ORDER BY id)),
  bool_or(applied_revision < (SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM revision_seq))
FROM node_states WHERE last_seen_at IS NOT NULL GROUP BY node_group_id`)
	out := map[string]NodeGroupState{}
	var (
		group string
		st    NodeGroupState
	)
	_, err := pgx.ForEachRow(rows, []any{&group, &st.Digest, &st.Lagging}, func() error {
		out[group] = st
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("node group states: %w", err)
	}
	return out, nil
}

// PurgeDeleted purges (Purge) what every node of its group has dropped,
// under the write lock, when anything deleted is waiting. One replica at a
// time does it (an advisory lock: the others wait their turn).
func (s *Store) PurgeDeleted(ctx context.Context) error {
	var waiting bool
	if err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM load_balancers WHERE deleted_revision IS NOT NULL)
  OR EXISTS (SELECT 1 FROM listeners WHERE deleted_revision IS NOT NULL)
  OR EXISTS (SELECT 1 FROM pools WHERE deleted_revision IS NOT NULL)
  OR EXISTS (SELECT 1 FROM members WHERE deleted_revision IS NOT NULL)
  OR EXISTS (SELECT 1 FROM routing_rules WHERE deleted_revision IS NOT NULL)`).Scan(&waiting); err != nil {
		return fmt.Errorf("purge: %w", err)
	}
	if !waiting {
		return nil
	}
	return pgx.BeginFunc(ctx, s.pool, func(t pgx.Tx) error {
		if _, err := t.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", int64(purgeLockID)); err != nil {
			return fmt.Errorf("take purge lock: %w", err)
		}
		if _, err := t.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", int64(writeLockID)); err != nil {
			return fmt.Errorf("take write lock: %w", err)
		}
		return Purge(ctx, &Tx{pg: t})
	})
}

// LoadBalancerStatsUpsertBatch stores, in one statement, the counters (JSON
// by load balancer id) node nodeID reports, for the load balancers of its
// group groupID; others are ignored, and so are counters equal to those
// stored.
func LoadBalancerStatsUpsertBatch(ctx context.Context, tx *Tx, nodeID, groupID string, counters map[string][]byte) error {
	if len(counters) == 0 {
		return nil
	}
	ids := make([]string, 0, len(counters))
	for id := range counters {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	vals := make([]string, len(ids))
	for i, id := range ids {
		vals[i] = string(counters[id])
	}
	if _, err := tx.pg.Exec(ctx, `INSERT INTO load_balancer_stats (node_id, load_balancer_id, counters, updated_at)
SELECT $1, lb.id, v.c::jsonb, now() FROM unnest($2::text[], $3::text[]) v(lb, c) JOIN load_balancers lb ON lb.id = v.lb AND lb.node_group_id = $4
ON CONFLICT (node_id, load_balancer_id) DO UPDATE SET counters = EXCLUDED.counters, updated_at = now()
WHERE load_balancer_stats.counters IS DISTINCT FROM EXCLUDED.counters`, nodeID, ids, vals, groupID); err != nil {
		return fmt.Errorf("store stats: %w", err)
	}
	return nil
}
