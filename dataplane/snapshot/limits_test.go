package snapshot

import (
	"testing"

	"github.com/fulcrumlb/fulcrum/dataplane/haproxy"
	"github.com/fulcrumlb/fulcrum/openapi"
)

// TestLimitsMatchDocument: what the dataplane assumes of the API's values is
// what the document (openapi/limits.gen.go) states.
func TestLimitsMatchDocument(t *testing.T) {
	for _, c := range []struct {
		name      string
		got, want int
	}{
		{"haproxy.MaxFixedResponseBody vs RuleAction.fixed_response.body maxLength", haproxy.MaxFixedResponseBody, openapi.RuleActionFixedResponseBodyMaxLength},
		{"backend connect timeout vs ListenerTimeouts.connect_ms default", defaultConnectMS, openapi.ListenerTimeoutsConnectMsDefault},
		{"backend server timeout vs ListenerTimeouts.server_ms default", defaultServerMS, openapi.ListenerTimeoutsServerMsDefault},
		{"backend tunnel timeout vs ListenerTimeouts.tunnel_ms default", defaultTunnelMS, openapi.ListenerTimeoutsTunnelMsDefault},
	} {
		if c.got != c.want {
			t.Errorf("%s: %d, the document says %d", c.name, c.got, c.want)
		}
	}
}
