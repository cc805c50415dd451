package acceptance

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fulcrumlb/fulcrum/internal/pgtest"
	"github.com/fulcrumlb/fulcrum/internal/teststack"
)

// TestLoadBalancerWithoutListenerIsNotInHAProxy: a load balancer, its pool
// (with a health monitor) and its members without a listener serve no
// traffic; they go active without appearing in HAProxy's configuration, and
// their members read no_monitor (or offline when disabled), never error. The
// listener then brings all of it in and traffic flows.
func TestLoadBalancerWithoutListenerIsNotInHAProxy(t *testing.T) {
	t.Parallel()
	s := newStack(t, pgtest.NewDatabase(t))
	ag := s.StartAgent("node-1")
	be := teststack.StartBackend(t, "a")

	lb := s.Create("/v1/load-balancers", map[string]any{"name": "parked"})
	lbID, vip := lb["id"].(string), lb["vip_address"].(string)
	pool := s.Create("/v1/pools", map[string]any{"load_balancer_id": lbID, "protocol": "http",
		"health_monitor": map[string]any{"type": "tcp", "interval_ms": 200, "timeout_ms": 200, "rise": 1, "fall": 1}})["id"].(string)
	up := s.Create("/v1/members", map[string]any{"pool_id": pool, "address": "127.0.0.1", "port": be.Port})["id"].(string)
	off := s.Create("/v1/members", map[string]any{"pool_id": pool, "address": "127.0.0.1", "port": be.Port + 1, "enabled": false})["id"].(string)
	s.WaitActive("/v1/load-balancers/" + lbID)
	s.WaitActive("/v1/pools/" + pool)
	s.WaitActive("/v1/members/" + up)
	s.WaitActive("/v1/members/" + off)

	cfg, err := os.ReadFile(filepath.Join(ag.StateDir(), "haproxy.cfg"))
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{lbID, pool, up, off} {
		if strings.Contains(string(cfg), id) {
			t.Fatalf("haproxy.cfg mentions %s of a load balancer without listeners:\n%s", id, cfg)
		}
	}
	teststack.WaitFor(t, "member statuses of a load balancer without listeners", 20*time.Second, func() bool {
		return s.memberStatus(lbID, up) == "no_monitor" && s.memberStatus(lbID, off) == "offline"
	})

	lsn := s.Create("/v1/listeners", map[string]any{"load_balancer_id": lbID, "protocol": "http", "port": 10481, "default_pool_id": pool})["id"].(string)
	s.WaitActive("/v1/listeners/" + lsn)
	url := "http://" + net.JoinHostPort(vip, "10481") + "/"
	cl := teststack.NewClient(nil)
	teststack.WaitFor(t, "traffic through the new listener", 20*time.Second, func() bool { return fetchFrom(cl, url, "a") == nil })
	teststack.WaitFor(t, "the member checked once served", 20*time.Second, func() bool { return s.memberStatus(lbID, up) == "online" })
	t.Logf("without listeners: active, not in haproxy.cfg, members no_monitor/offline; with one: served, member online")
}
