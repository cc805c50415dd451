package api_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/fulcrumlb/fulcrum/api"
)

// TestPurgeJanitorAfterAcks: the purge janitor looks only when what can be
// purged may have changed (a write, a derivation, once a minute), and a
// delete is still purged promptly: held back while the group's serving node
// has not applied it, purged soon after the node acks it.
func TestPurgeJanitorAfterAcks(t *testing.T) {
	b := setup(t, withConfig(func(c *api.Config) { c.PurgeInterval = 50 * time.Millisecond }))
	ctx := context.Background()
	b.register("n1")
	b.report("n1", b.revision(), nil)
	lb := b.create(b.TokenA, "/v1/load-balancers", map[string]any{"name": "doomed"})
	b.report("n1", b.revision(), nil)
	b.must(http.StatusAccepted, b.TokenA, http.MethodDelete, "/v1/load-balancers/"+lb, nil)
	exists := func() bool {
		t.Helper()
		var n int
		if err := b.Store.PoolForTests().QueryRow(ctx, "SELECT count(*) FROM load_balancers WHERE id = $1", lb).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n > 0
	}
	time.Sleep(500 * time.Millisecond) // the janitor looked after the delete
	if !exists() {
		t.Fatal("the load balancer was purged before the serving node applied its delete")
	}
	b.report("n1", b.revision(), nil)
	acked := time.Now()
	for deadline := time.Now().Add(20 * time.Second); exists(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the deleted load balancer was not purged within 20 s of the node's ack (the janitor's idle look is once a minute)")
		}
	}
	t.Logf("purged %s after the ack", time.Since(acked).Round(time.Millisecond))
}
