package acceptance

import (
	"net/http"
	"testing"
	"time"

	"github.com/fulcrumlb/fulcrum/internal/pgtest"
	"github.com/fulcrumlb/fulcrum/internal/teststack"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// The harness's configuration, on top of internal/teststack's defaults.
const (
	// vipBase puts this package's VIP blocks at 127.100.0.0 upwards, clear of
	// other packages' stacks (127.200 upwards) running at the same time.
	vipBase = 100
	// pollWait is the agents' long-poll wait.
	pollWait = 5 * time.Second
)

// stack is a running API with one node group, tenant, tokens and agents
// (internal/teststack), plus this package's helpers.
type stack struct {
	*teststack.Stack
	t testing.TB
}

// newStack starts the API on dbURL (a fresh database) with one node group.
func newStack(tb testing.TB, dbURL string) *stack {
	tb.Helper()
	return startStack(tb, teststack.Options{DatabaseURL: dbURL})
}

// startStack starts a stack with o and the harness's configuration.
func startStack(tb testing.TB, o teststack.Options) *stack {
	tb.Helper()
	o.VIPBase, o.PollWait = vipBase, pollWait
	return &stack{Stack: teststack.Start(tb, o), t: tb}
}

// distribution sends n requests and counts answers per backend.
func distribution(tb testing.TB, c *http.Client, url string, n int) map[string]int {
	tb.Helper()
	out := map[string]int{}
	for i := 0; i < n; i++ {
		name, err := teststack.Fetch(c, url)
		if err != nil {
			tb.Fatalf("request %d to %s: %v", i, url, err)
		}
		out[name]++
	}
	return out
}
