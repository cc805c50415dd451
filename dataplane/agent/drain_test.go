package agent

import (
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/fulcrumlb/fulcrum/dataplane/haproxy"
)

func TestPlanDrains(t *testing.T) {
	a := haproxy.Member{ID: "mbr_a", Address: "10.0.0.1", Port: 80, Weight: 1, Enabled: true}
	b := haproxy.Member{ID: "mbr_b", Address: "10.0.0.2", Port: 80, Weight: 1, Enabled: true}
	off, drained := a, a
	off.Enabled = false
	drained.Weight = 0
	pool := func(timeoutMS int, ms ...haproxy.Member) haproxy.Config {
		c := cfgWith("round_robin", "none", ms...)
		c.LoadBalancers[0].Pools[0].DrainTimeoutMS = timeoutMS
		return c
	}
	lbOff := pool(1000, a, b)
	lbOff.LoadBalancers[0].Enabled = false
	show := func(leaving []drainPlan, back []serverKey) string {
		var out []string
		for _, l := range leaving {
			out = append(out, fmt.Sprintf("%s:%v:del=%v:keep=%v", l.key.server, l.timeout, l.del, l.keepDate))
		}
		sort.Strings(out)
		var bs []string
		for _, k := range back {
			bs = append(bs, k.server)
		}
		sort.Strings(bs)
		return strings.Join(out, ",") + " back=" + strings.Join(bs, ",")
	}
	cases := []struct {
		name     string
		old, new haproxy.Config
		reloaded bool
		want     string
	}{
		{"nothing changes", pool(1000, a, b), pool(1000, a, b), false, " back=mbr_a,mbr_b"},
		{"disabled at runtime", pool(1000, a, b), pool(1000, off, b), false, "mbr_a:1s:del=false:keep=false back=mbr_b"},
		{"disabled by a reload, new timeout", pool(1000, a, b), pool(2500, off, b), true, "mbr_a:2.5s:del=false:keep=false back=mbr_b"},
		{"deleted at runtime", pool(1000, a, b), pool(1000, b), false, "mbr_a:1s:del=true:keep=false back=mbr_b"},
		{"deleted by a reload", pool(1000, a, b), pool(1000, b), true, "mbr_a:1s:del=false:keep=false back=mbr_b"},
		{"deleted while disabled, at runtime", pool(1000, off, b), pool(1000, b), false, "mbr_a:1s:del=true:keep=true back=mbr_b"},
		{"deleted while disabled, by a reload", pool(1000, off, b), pool(1000, b), true, " back=mbr_b"},
		{"enabled again", pool(1000, off, b), pool(1000, a, b), false, " back=mbr_a,mbr_b"},
		{"weight 0 is no drain", pool(1000, a, b), pool(1000, drained, b), false, " back=mbr_a,mbr_b"},
		{"load balancer disabled", pool(1000, a, b), lbOff, true, "mbr_a:1s:del=false:keep=false,mbr_b:1s:del=false:keep=false back="},
		{"pool gone", pool(1000, a, b), haproxy.Config{}, true, "mbr_a:1s:del=false:keep=false,mbr_b:1s:del=false:keep=false back="},
		{"no timeout", pool(0, a), pool(0, off), false, "mbr_a:0s:del=false:keep=false back="},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := show(planDrains(c.old, c.new, c.reloaded)); got != c.want {
				t.Fatalf("got  %s\nwant %s", got, c.want)
			}
		})
	}
}
