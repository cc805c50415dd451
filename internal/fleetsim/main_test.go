package fleetsim

import (
	"testing"

	"github.com/fulcrumlb/fulcrum/internal/pgtest"
)

// TestMain stops the private Postgres cluster the fleet tests started
// (pgtest.NewDatabase, through teststack), waiting for it to stop, before
// the test binary exits: without it the cluster outlived the test,
// orphaned, until the next test's reapStale.
func TestMain(m *testing.M) { pgtest.Main(m) }
