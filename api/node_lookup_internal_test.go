package api

import (
	"context"
	"errors"
	"net/http"
	"testing"

	"github.com/fulcrumlb/fulcrum/api/problem"
	"github.com/fulcrumlb/fulcrum/api/store"
	"github.com/fulcrumlb/fulcrum/internal/pgtest"
)

// isNotFound says whether err is the 404 problem the agent takes as
// "register again".
func isNotFound(err error) bool {
	var p *problem.Problem
	return errors.As(err, &p) && p.Status == http.StatusNotFound
}

// The node lookup tells "no such node" (404, ErrNotFound in the store) from
// failing to look (the context ended, the connection lost): those are never
// ErrNotFound nor a 404 (regression: nodeByName used to turn any error into
// "node not found", which the agent takes as "register again").
func TestNodeLookupErrorsAreNotNotFound(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, pgtest.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}

	err = st.ReadSnapshot(ctx, func(tx *store.Tx) error {
		// A missing node: ErrNotFound in the store, 404 in the API.
		if _, err := store.NodeGetByName(ctx, tx, "n1", false); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("NodeGetByName of a missing node: %v, want ErrNotFound", err)
		}
		if _, err := nodeByName(ctx, tx, "n1", nodeScope{}, false); !isNotFound(err) {
			t.Errorf("nodeByName of a missing node: %v, want the 404 problem", err)
		}
		// The request's context ended.
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		if _, err := store.NodeGetByName(cctx, tx, "n1", false); err == nil || errors.Is(err, store.ErrNotFound) || !errors.Is(err, context.Canceled) {
			t.Errorf("NodeGetByName with an ended context: %v, want context.Canceled, not ErrNotFound", err)
		}
		if _, err := nodeByName(cctx, tx, "n1", nodeScope{}, false); err == nil || isNotFound(err) || !errors.Is(err, context.Canceled) {
			t.Errorf("nodeByName with an ended context: %v, want context.Canceled, not a 404", err)
		}
		// The connection to the database is lost.
		// (Every other backend of the database is terminated: the
		// transaction's connection is the only one in use.)
		if _, err := st.PoolForTests().Exec(ctx, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"); err != nil {
			t.Fatal(err)
		}
		_, err := store.NodeGetByName(ctx, tx, "n1", false)
		if err == nil || errors.Is(err, store.ErrNotFound) {
			t.Errorf("NodeGetByName on a closed connection: %v, want an error other than ErrNotFound", err)
		}
		if _, err := nodeByName(ctx, tx, "n1", nodeScope{}, true); err == nil || isNotFound(err) {
			t.Errorf("nodeByName on a closed connection: %v, want an error other than the 404", err)
		}
		return err
	})
	if err == nil || errors.Is(err, store.ErrNotFound) || !store.Unavailable(err) {
		t.Errorf("ReadSnapshot after the connection was lost: %v, want an unavailable database, not ErrNotFound", err)
	}
}
