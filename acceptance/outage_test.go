package acceptance

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/fulcrumlb/fulcrum/internal/pgcluster"
	"github.com/fulcrumlb/fulcrum/internal/teststack"
)

// TestControlPlaneOutage stops the API and Postgres: traffic keeps flowing, an
// agent restarted meanwhile serves its last snapshot from disk, and once the
// control plane is back the node converges to the newest revision.
func TestControlPlaneOutage(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	// A private cluster: this test stops Postgres, which the shared one must not.
	base, err := os.MkdirTemp("/tmp", "fulcrum-outage-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	port, err := pgcluster.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	pg, err := pgcluster.Open(filepath.Join(base, "pg"), port)
	if err != nil {
		t.Fatal(err)
	}
	pg.Fast = true
	if err := pg.Init(ctx); err != nil {
		t.Fatal(err)
	}
	if err := pg.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pg.Stop(context.Background()) })
	if err := pg.CreateDatabase(ctx, "fulcrum"); err != nil {
		t.Fatal(err)
	}

	s := newStack(t, pg.URL("fulcrum"))
	ag := s.StartAgent("node-1")
	a, b := teststack.StartBackend(t, "a"), teststack.StartBackend(t, "b")
	lb := s.newLB(8090, nil, a)
	cl := teststack.NewClient(nil)
	if got := distribution(t, cl, lb.URL, 5); got["a"] != 5 {
		t.Fatalf("before the outage: %v", got)
	}
	applied := ag.AppliedRevision()

	s.StopAPI()
	if err := pg.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if got := distribution(t, cl, lb.URL, 20); got["a"] != 20 {
		t.Fatalf("with the API and Postgres down: %v", got)
	}

	// Restart the agent while the control plane is down: it serves from disk.
	s.StopAgent("node-1")
	ag = s.StartAgent("node-1")
	teststack.WaitFor(t, "restarted agent to serve the last snapshot", 15*time.Second, func() bool {
		name, err := teststack.Fetch(cl, lb.URL)
		return err == nil && name == "a"
	})
	if ag.AppliedRevision() != applied {
		t.Fatalf("restarted agent serves revision %d, want %d from disk", ag.AppliedRevision(), applied)
	}

	// Control plane back: a change made now reaches the node.
	if err := pg.Start(ctx); err != nil {
		t.Fatal(err)
	}
	s.StartAPI()
	mb := s.Create("/v1/members", map[string]any{"pool_id": lb.Pool, "address": "127.0.0.1", "port": b.Port})["id"].(string)
	s.WaitActive("/v1/members/" + mb)
	teststack.WaitFor(t, "node to converge to the newest revision", 15*time.Second, func() bool {
		return distribution(t, cl, lb.URL, 6)["b"] > 0
	})
	if ag.AppliedRevision() <= applied {
		t.Fatalf("applied revision did not move past %d", applied)
	}
}
