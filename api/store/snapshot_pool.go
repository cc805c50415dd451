package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Snapshot reads on connections of their own (issue 10, member change at
// 1,000 load balancers). The snapshot cache's builds and the poll views
// (ReadSnapshot) run the same few statements for every write: prepared and
// planned once per connection (generic plans, genericPlans), they cost
// Postgres well under a millisecond each; the first execution on a
// connection prepares and plans them, 8–13 ms for one build at 1,000 load
// balancers. On the shared pool a build often got a connection that had
// never run them (the one a tenant's write had just released) or one that
// had been idle for seconds (pinged first: one more round trip). So:
//
//   - ReadSnapshot uses a pool of its own (half as many connections as the
//     main pool, at least snapshotConns; snapshotWarmConns opened at
//     start), never waiting behind writes, reports or authentications;
//   - each of its connections runs every statement of a build and a poll view
//     once when it opens (warmSnapshotStatements, on a node group that does
//     not exist): a build never pays the preparation and planning;
//   - an idle connection is not pinged before use unless idle for
//     snapshotPingIdle: a read-only transaction that fails on a connection
//     lost meanwhile is run again once on another (ReadSnapshot).

// snapshotConns is the snapshot pool's least size: builds are one per node
// group at a time (single flight) and so are poll views.
const snapshotConns = 4

// snapshotWarmConns are the snapshot pool's connections opened (and warmed)
// at start, in the background.
const snapshotWarmConns = 2

// snapshotPingIdle is how long a snapshot connection may idle before it is
// pinged when acquired.
const snapshotPingIdle = time.Minute

// warmGroup is the node group the warm-up reads: no group has this id.
const warmGroup = "ng_warmup_none"

// snapshotPoolConfig is the snapshot pool's configuration made from the main
// pool's.
func snapshotPoolConfig(main *pgxpool.Config) *pgxpool.Config {
	cfg := main.Copy()
	cfg.MaxConns, cfg.MinConns, cfg.MinIdleConns = max(snapshotConns, main.MaxConns/2), snapshotWarmConns, 0
	cfg.ShouldPing = func(_ context.Context, p pgxpool.ShouldPingParams) bool { return p.IdleDuration > snapshotPingIdle }
	after := cfg.AfterConnect
	cfg.AfterConnect = func(ctx context.Context, c *pgx.Conn) error {
		if after != nil {
			if err := after(ctx, c); err != nil {
				return err
			}
		}
		// Best effort: a connection that could not warm up (a database
		// not migrated yet) serves as any other, preparing on first use.
		if err := warmSnapshotStatements(ctx, c); err != nil && c.IsClosed() {
			return err
		}
		return nil
	}
	return cfg
}

// rewarmSnapshots replaces the snapshot pool's connections with new ones,
// warmed on the schema as it is now (after the migrations), the first
// snapshotWarmConns of them opened now in the background.
func (s *Store) rewarmSnapshots() {
	if s.snap == nil {
		return
	}
	s.snap.Reset()
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		var held []*pgxpool.Conn
		for range snapshotWarmConns {
			c, err := s.snap.Acquire(ctx)
			if err != nil {
				break
			}
			held = append(held, c)
		}
		for _, c := range held {
			c.Release()
		}
	}()
}

// warmSnapshotStatements prepares and plans, on connection c, every statement
// a snapshot build (ReadGroupPart with a floor, ReadLoadBalancerRows of the
// changed load balancers and the group's certificates, the peers) and a poll
// view (ReadPollView) run, by running them once on a node group that does not
// exist, in a read-only transaction rolled back.
func warmSnapshotStatements(ctx context.Context, c *pgx.Conn) error {
	ctx, cancel := context.WithTimeout(context.WithValue(ctx, warmKey{}, true), 10*time.Second)
	defer cancel()
	// Begun as ReadSnapshot begins (its BEGIN in front of the first batch,
	// prepared with it).
	l := &lazyTx{c: c, pending: true}
	defer func() {
		if l.begun && !c.IsClosed() {
			_, _ = c.Exec(ctx, "rollback")
		}
	}()
	tx := &Tx{pg: l}
	if _, err := ReadGroupPart(ctx, tx, warmGroup, 1, 1); err != nil && !errors.Is(err, ErrNotFound) {
		return fmt.Errorf("warm snapshot statements: %w", err)
	}
	if _, _, err := ReadPollView(ctx, tx, warmGroup, 0); err != nil {
		return fmt.Errorf("warm snapshot statements: %w", err)
	}
	group := GroupScope(warmGroup)
	if _, err := ReadLoadBalancerRows(ctx, tx, LoadBalancersScope([]string{}), &group); err != nil {
		return fmt.Errorf("warm snapshot statements: %w", err)
	}
	for _, all := range []bool{false, true} { // both shapes: peers only, every node of a VRRP group
		if _, err := PeerListByGroup(ctx, tx, warmGroup, all); err != nil {
			return fmt.Errorf("warm snapshot statements: %w", err)
		}
	}
	return nil
}

// retryRead says whether a read-only transaction that failed with err may
// run again on another connection: its connection was lost (closed; idle
// connections are not pinged before use, see snapshotPingIdle), or its BEGIN
// failed (begin) other than by the server's refusal (a FATAL error is the
// server ending the connection) or the caller's context.
// Errors of what the transaction read are not retried.
func retryRead(err error, closed, begin bool) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	if closed {
		return true
	}
	var pgErr *pgconn.PgError
	return begin && (!errors.As(err, &pgErr) || pgErr.Severity == "FATAL")
}
