package store

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"
)

// snapshotBegin begins ReadSnapshot's transactions.
const snapshotBegin = "begin isolation level repeatable read read only"

// lazyTx is ReadSnapshot's transaction on connection c: its BEGIN goes to
// Postgres with its first statement, in front of the first batch
// (Tx.sendBatch: the build of a snapshot part and a poll view begin with
// one), or on its own before any other first statement. One round trip less
// between a write's notification and the snapshot it makes: the BEGIN alone
// took 0.2–1.4 ms (most of it waiting to be scheduled on a loaded machine).
type lazyTx struct {
	c       *pgx.Conn
	pending bool // the BEGIN is still to be sent
	begun   bool // the BEGIN was sent: the transaction ends with a ROLLBACK
	// beginErr: the BEGIN failed (ReadSnapshot may retry, retryRead).
	beginErr bool
}

// start sends the BEGIN on its own when it is still to be sent.
func (l *lazyTx) start(ctx context.Context) error {
	if !l.pending {
		return nil
	}
	l.pending, l.begun = false, true
	if _, err := l.c.Exec(ctx, snapshotBegin); err != nil {
		l.beginErr = true
		return fmt.Errorf("begin: %w", err)
	}
	return nil
}

func (l *lazyTx) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	if err := l.start(ctx); err != nil {
		return pgconn.CommandTag{}, err
	}
	return l.c.Exec(ctx, sql, args...)
}

func (l *lazyTx) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	if err := l.start(ctx); err != nil {
		return errRows{err}, err
	}
	return l.c.Query(ctx, sql, args...)
}

func (l *lazyTx) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	if err := l.start(ctx); err != nil {
		return errRows{err}
	}
	return l.c.QueryRow(ctx, sql, args...)
}

// Conn is the connection, the BEGIN sent: statements sent on it directly
// are in the transaction (batches go through Tx.sendBatch, which sends the
// BEGIN with them instead). Should the BEGIN fail, the connection is
// broken or the context ended: what is sent next fails too.
func (l *lazyTx) Conn() *pgx.Conn {
	_ = l.start(context.Background())
	return l.c
}

// end ends the transaction (when its BEGIN was sent) and gives c back to
// its pool, which closes it if the ROLLBACK failed.
func (l *lazyTx) end(ctx context.Context, c *pgxpool.Conn) {
	if l.begun && !c.Conn().IsClosed() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rollbackTimeout)
		_, _ = c.Exec(rctx, "rollback")
		cancel()
	}
	c.Release()
}

// sendBatch sends batch b in tx. In a ReadSnapshot transaction not begun
// yet the BEGIN goes in front of b, in the same round trip.
func (tx *Tx) sendBatch(ctx context.Context, b *pgx.Batch) (pgx.BatchResults, error) {
	l, ok := tx.pg.(*lazyTx)
	if !ok || !l.pending {
		return tx.pg.Conn().SendBatch(ctx, b), nil
	}
	l.pending, l.begun = false, true
	b.QueuedQueries = append([]*pgx.QueuedQuery{{SQL: snapshotBegin}}, b.QueuedQueries...)
	br := l.c.SendBatch(ctx, b)
	if _, err := br.Exec(); err != nil {
		l.beginErr = true
		_ = br.Close()
		return nil, fmt.Errorf("begin: %w", err)
	}
	return br, nil
}

// errRows are the rows (and row) of a query not sent because the BEGIN
// before it failed.
type errRows struct{ err error }

func (r errRows) Close()                                       {}
func (r errRows) Err() error                                   { return r.err }
func (r errRows) CommandTag() pgconn.CommandTag                { return pgconn.CommandTag{} }
func (r errRows) FieldDescriptions() []pgconn.FieldDescription { return nil }
func (r errRows) Next() bool                                   { return false }
func (r errRows) Scan(...any) error                            { return r.err }
func (r errRows) Values() ([]any, error)                       { return nil, r.err }
func (r errRows) RawValues() [][]byte                          { return nil }
func (r errRows) Conn() *pgx.Conn                              { return nil }
func (r errRows) TypeMap() *pgtype.Map                         { return nil }
