package agent

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strings"
	"testing"
	"time"

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

// TestStartDrains: drains are tracked per member, stopped when the member is
// back in service, keep their deadline when a disabled member is deleted, and
// end on their own once their deadline passed (here with no HAProxy to talk
// to: the attempts fail and are logged).
func TestStartDrains(t *testing.T) {
	ag, err := New(Config{Endpoint: "http://127.0.0.1:1", Token: "t", NodeName: "n", StateDir: t.TempDir(),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a := haproxy.Member{ID: "mbr_a", Address: "10.0.0.1", Port: 80, Weight: 1, Enabled: true}
	off := a
	off.Enabled = false
	pool := func(timeoutMS int, ms ...haproxy.Member) haproxy.Config {
		c := cfgWith("round_robin", "none", ms...)
		c.LoadBalancers[0].Pools[0].DrainTimeoutMS = timeoutMS
		return c
	}
	key := serverKey{"pool_1", "mbr_a"}
	get := func() (drain, bool) {
		ag.drains.mu.Lock()
		defer ag.drains.mu.Unlock()
		d, ok := ag.drains.m[key]
		if !ok {
			return drain{}, false
		}
		return *d, true
	}

	ag.startDrains(ctx, nil, pool(3600000, off), false) // the first config: nothing ran before
	if _, ok := get(); ok {
		t.Fatal("a drain without a previous config")
	}
	on, disabled := pool(3600000, a), pool(3600000, off)
	ag.startDrains(ctx, &on, disabled, false)
	d1, ok := get()
	if !ok || d1.del || time.Until(d1.deadline) < 59*time.Minute {
		t.Fatalf("after disabling: %+v %v", d1, ok)
	}
	ag.startDrains(ctx, &disabled, on, false)
	if _, ok := get(); ok {
		t.Fatal("the drain of a member enabled again is still there")
	}

	ag.startDrains(ctx, &on, disabled, false)
	d2, _ := get()
	gone := pool(1000)
	ag.startDrains(ctx, &disabled, gone, false)
	d3, ok := get()
	if !ok || !d3.del || !d3.deadline.Equal(d2.deadline) {
		t.Fatalf("deleted while draining: %+v (was %+v)", d3, d2)
	}

	ag.startDrains(ctx, &gone, on, false) // (ids are never reused; this only resets the test)
	if _, ok := get(); ok {
		t.Fatal("the drain is still there")
	}

	// A drain whose deadline passes ends by itself.
	now := pool(0, a)
	ag.startDrains(ctx, &now, pool(0), false)
	if d, ok := get(); !ok || !d.del {
		t.Fatalf("deleted with drain_timeout_ms 0: %+v %v", d, ok)
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, ok := get(); !ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a drain with drain_timeout_ms 0 did not end")
		}
	}
}
