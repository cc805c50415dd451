package api_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/fulcrumlb/fulcrum/api"
)

// TestDeriveNowWhileSweeping: the tests' DeriveNow (every report the bundle
// sends runs it) and the deriver's own sweeps run at once without sharing
// the sweep's unlocked state (a data race under -race, seen in
// TestDeregisterNode).
func TestDeriveNowWhileSweeping(t *testing.T) {
	t.Parallel()
	b := setup(t, withConfig(func(c *api.Config) { c.DeriveSweepInterval, c.DeriveInterval = time.Millisecond, time.Millisecond }))
	b.register("n1")
	b.register("n2")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for i := range 20 {
		b.must(http.StatusNoContent, b.Node, http.MethodPost, "/v1/nodes/n1/reports", map[string]any{"revision": 0, "status": "ack"})
		if err := b.srv.DeriveNow(ctx); err != nil {
			t.Fatalf("derive %d: %v", i, err)
		}
	}
}
