package agent

import (
	"strings"
	"testing"

	"github.com/fulcrumlb/fulcrum/dataplane/haproxy"
)

func cfgWith(algorithm, persistence string, members ...haproxy.Member) haproxy.Config {
	return haproxy.Config{LoadBalancers: []haproxy.LoadBalancer{{ID: "lb_1", Enabled: true,
		Pools: []haproxy.Pool{{ID: "pool_1", Protocol: "http", Algorithm: algorithm, Persistence: haproxy.Persistence{Type: persistence}, Members: members}}}}}
}

func TestMemberOps(t *testing.T) {
	a := haproxy.Member{ID: "mbr_a", Address: "10.0.0.1", Port: 80, Weight: 1, Enabled: true}
	b := haproxy.Member{ID: "mbr_b", Address: "10.0.0.2", Port: 80, Weight: 1, Enabled: true}
	kinds := func(ops []memberOp) string {
		var k []string
		for _, op := range ops {
			k = append(k, op.kind+":"+op.member.ID)
		}
		return strings.Join(k, ",")
	}
	heavier, drained, disabled, moved, backup, named := a, a, a, a, a, a
	heavier.Weight = 5
	drained.Weight = 0
	disabled.Enabled = false
	moved.Address, moved.Port = "10.0.0.9", 81
	backup.Backup = true
	named.Address = "app.internal"
	cases := []struct {
		name     string
		old, new haproxy.Config
		want     string
		runtime  bool
	}{
		{"nothing", cfgWith("round_robin", "none", a), cfgWith("round_robin", "none", a), "", true},
		{"weight", cfgWith("round_robin", "none", a), cfgWith("round_robin", "none", heavier), "weight:mbr_a", true},
		{"drain", cfgWith("round_robin", "none", a), cfgWith("round_robin", "none", drained), "weight:mbr_a,state:mbr_a", true},
		{"disable", cfgWith("round_robin", "none", a), cfgWith("round_robin", "none", disabled), "state:mbr_a", true},
		{"address", cfgWith("round_robin", "none", a), cfgWith("round_robin", "none", moved), "addr:mbr_a", true},
		{"add", cfgWith("round_robin", "none", a), cfgWith("round_robin", "none", a, b), "add:mbr_b", true},
		{"remove", cfgWith("least_connections", "none", a, b), cfgWith("least_connections", "none", a), "del:mbr_b", true},
		{"add to a hash pool needs a reload", cfgWith("source_ip", "none", a), cfgWith("source_ip", "none", a, b), "", false},
		{"add with cookie persistence needs a reload", cfgWith("round_robin", "cookie_insert", a), cfgWith("round_robin", "cookie_insert", a, b), "", false},
		{"backup needs a reload", cfgWith("round_robin", "none", a), cfgWith("round_robin", "none", backup), "", false},
		{"a DNS address needs a reload", cfgWith("round_robin", "none", a), cfgWith("round_robin", "none", named), "", false},
		{"pool settings need a reload", cfgWith("round_robin", "none", a), cfgWith("least_connections", "none", a), "", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ops, ok := memberOps(c.old, c.new)
			if ok != c.runtime {
				t.Fatalf("runtime possible = %v, want %v", ok, c.runtime)
			}
			if got := kinds(ops); ok && got != c.want {
				t.Fatalf("ops %q, want %q", got, c.want)
			}
		})
	}
}

func TestRewriteServerState(t *testing.T) {
	dump := `1
# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port srv_check_addr srv_agent_addr srv_agent_port
3 pool_1 1 mbr_a 10.0.0.1 0 1 1 1 15 8 2 0 6 0 0 0 - 80 - 0 0 - - 0
3 pool_1 2 mbr_gone 10.0.0.5 2 0 1 1 15 8 2 0 6 0 0 0 - 80 - 0 0 - - 0
`
	want := haproxy.Member{ID: "mbr_a", Address: "10.0.0.7", Port: 8080, Weight: 4, Enabled: true}
	out := rewriteServerState(dump, cfgWith("round_robin", "none", want))
	lines := strings.Split(out, "\n")
	// Health (op state 0 = down) is kept; admin state, weights, address and port follow the config.
	if got := lines[2]; got != "3 pool_1 1 mbr_a 10.0.0.7 0 0 4 4 15 8 2 0 6 0 0 0 - 8080 - 0 0 - - 0" {
		t.Fatalf("rewritten line: %q", got)
	}
	if lines[3] != "3 pool_1 2 mbr_gone 10.0.0.5 2 0 1 1 15 8 2 0 6 0 0 0 - 80 - 0 0 - - 0" {
		t.Fatalf("unknown servers must pass through: %q", lines[3])
	}
}
