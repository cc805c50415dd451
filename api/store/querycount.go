package store

import (
	"context"
	"sync/atomic"

	"github.com/jackc/pgx/v5"
)

// queryCounter counts the statements the store's connections send (BEGIN
// and COMMIT included), for tests that bound the database work of a path.
type queryCounter struct{ n atomic.Int64 }

func (c *queryCounter) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	if !warming(ctx) {
		c.n.Add(1)
	}
	return ctx
}

func (c *queryCounter) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// Statements sent in a batch (WriteIn's BEGIN and locks) count one each.
func (c *queryCounter) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	return ctx
}

func (c *queryCounter) TraceBatchQuery(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchQueryData) {
	if !warming(ctx) {
		c.n.Add(1)
	}
}

// warmKey marks the context of a connection's warm-up (snapshot_pool.go):
// its statements are not counted (they run once per connection, not per
// operation).
type warmKey struct{}

func warming(ctx context.Context) bool { return ctx.Value(warmKey{}) != nil }

func (c *queryCounter) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData) {}

// Queries is how many statements the store has sent so far (every
// connection of its pool, the LISTEN connection included).
func (s *Store) Queries() int64 { return s.queries.n.Load() }
