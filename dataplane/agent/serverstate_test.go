package agent

import (
	"testing"

	"github.com/fulcrumlb/fulcrum/dataplane/haproxy"
)

// A dump without servers (a node without health checks: "1") and a dump of
// the header only pass through rewriteServerState as they are.
func TestRewriteServerStateWithoutServers(t *testing.T) {
	cfg := cfgWith("round_robin", "none", haproxy.Member{ID: "mbr_a", Address: "10.0.0.7", Port: 8080, Weight: 4, Enabled: true})
	for _, dump := range []string{"1\n", "1\n# be_id be_name srv_id srv_name srv_addr\n", ""} {
		if got := rewriteServerState(dump, cfg); got != dump {
			t.Errorf("rewriteServerState(%q) = %q, want it unchanged", dump, got)
		}
	}
}
