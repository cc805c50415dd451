package store

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"
)

// ListenRevisions LISTENs on NotifyChannel over a connection of its own and
// calls fn once listening with groupID "" (notifications may have been
// missed before: every group may have changed) and at every notification with
// the node group and revision it carries. A payload it cannot read (an older
// API's, which carried only the revision) also gives groupID "", so that
// nobody misses a change. It returns when ctx ends or the connection fails;
// the caller reconnects.
func (s *Store) ListenRevisions(ctx context.Context, fn func(groupID string, rev int64)) error {
	pc, err := s.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	// The connection ends up LISTENing; do not give it back to the pool. Take
	// it out now: a deferred conn.Hijack() would run at once, leaving conn
	// without its connection.
	conn := pc.Hijack()
	defer conn.Close(context.Background()) //nolint:errcheck
	if _, err := conn.Exec(ctx, "LISTEN "+NotifyChannel); err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	fn("", 0)
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		fn(ParseNotification(n.Payload))
	}
}

// ParseNotification reads a NotifyChannel payload, '<revision> <node group
// id>'; groupID is "" when the payload is not of that form.
func ParseNotification(payload string) (groupID string, rev int64) {
	r, g, ok := strings.Cut(payload, " ")
	if !ok || g == "" {
		return "", 0
	}
	rev, err := strconv.ParseInt(r, 10, 64)
	if err != nil {
		return "", 0
	}
	return g, rev
}

// RevisionsExpire deletes the trace records of revisions older than a day,
// keeping the newest.
func (s *Store) RevisionsExpire(ctx context.Context) error {
	_, err := s.pool.Exec(ctx, "DELETE FROM revisions WHERE created_at < now() - interval '1 day' AND revision < (SELECT max(revision) FROM revisions)")
	return err
}

// PoolForTests is the pool, for tests that reach into the database directly
// (backdating rows, counting what is stored). Production code must not call
// it: sqlboundary_test.go rejects it outside _test.go files.
func (s *Store) PoolForTests() *pgxpool.Pool { return s.pool }
