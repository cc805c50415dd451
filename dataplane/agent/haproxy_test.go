package agent

import (
	"context"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fulcrumlb/fulcrum/internal/testenv"
)

// With a real HAProxy: a reload that fails to bind (the pre-check skipped,
// as when a port is taken between the check and the reload) is attributed
// to the listener HAProxy names; the other load balancer applies with the
// next reload and serves.
func TestRealReloadBindFailureIsAttributed(t *testing.T) {
	bin := testenv.RequireHAProxy(t)
	a, err := New(Config{Endpoint: "http://127.0.0.1:1", Token: "t", NodeName: "node-1", StateDir: t.TempDir(), HAProxy: bin, HardStopAfter: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := a.startHAProxy(ctx); err != nil {
		t.Fatal(err)
	}
	defer a.proc.Stop(context.Background())
	a.binder = bindFunc(func(netip.AddrPort) error { return nil }) // as if the port was taken after the check

	holder, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close()
	held := holder.Addr().(*net.TCPAddr).Port
	freeLn, _ := net.Listen("tcp", "127.0.0.1:0")
	free := freeLn.Addr().(*net.TCPAddr).Port
	freeLn.Close()

	good, bad := lbWith("lb_good", "127.0.0.1", free), lbWith("lb_bad", "127.0.0.1", held)
	if err := a.Apply(ctx, snapshot(1, good, bad)); err != nil {
		t.Fatal(err)
	}
	e, ok := a.lbErrors["lb_bad"]
	if !ok || e.ObjectID != bad.Listeners[0].Id || e.Field != "port" || !strings.Contains(e.Message, "cannot bind") {
		t.Fatalf("lb_bad: %+v (errors %v)", e, a.lbErrors)
	}
	if _, ok := a.lbErrors["lb_good"]; ok || len(a.live.LoadBalancers) != 1 {
		t.Fatalf("lb_good should be served: %v", a.lbErrors)
	}
	c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(free), 2*time.Second)
	if err != nil {
		t.Fatalf("lb_good does not serve: %v", err)
	}
	c.Close()
	t.Logf("lb_bad: %s", e.Message)
}

// With a real HAProxy: after a restart, a load balancer whose port another
// process took meanwhile is left out with a bind error (the rest serves);
// once the port is free, a retry brings it back.
func TestRealStartLeavesOutWhatCannotBind(t *testing.T) {
	bin := testenv.RequireHAProxy(t)
	dir := t.TempDir()
	newAgent := func() *Agent {
		a, err := New(Config{Endpoint: "http://127.0.0.1:1", Token: "t", NodeName: "node-1", StateDir: dir, HAProxy: bin, HardStopAfter: 2 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ports := freePorts(t, 2)
	a := newAgent()
	if err := a.startHAProxy(ctx); err != nil {
		t.Fatal(err)
	}
	if err := a.Apply(ctx, snapshot(1, lbWith("lb_a", "127.0.0.1", ports[0]), lbWith("lb_b", "127.0.0.1", ports[1]))); err != nil {
		t.Fatal(err)
	}
	if err := a.proc.Stop(ctx); err != nil {
		t.Fatal(err)
	}

	holder, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(ports[1]))
	if err != nil {
		t.Fatal(err)
	}
	b := newAgent()
	if err := b.startHAProxy(ctx); err != nil {
		t.Fatal(err)
	}
	defer b.proc.Stop(context.Background())
	if e, ok := b.lbErrors["lb_b"]; !ok || e.Kind != failBind || !strings.Contains(e.Message, "cannot bind") {
		t.Fatalf("lb_b: %+v", b.lbErrors)
	}
	if len(b.live.LoadBalancers) != 1 || b.live.LoadBalancers[0].ID != "lb_a" {
		t.Fatalf("served %+v", b.live.LoadBalancers)
	}
	if c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(ports[0]), 2*time.Second); err != nil {
		t.Fatalf("lb_a does not serve: %v", err)
	} else {
		c.Close()
	}
	holder.Close()
	if err := b.apply(ctx, b.snap, true); err != nil {
		t.Fatal(err)
	}
	if len(b.lbErrors) != 0 || len(b.live.LoadBalancers) != 2 {
		t.Fatalf("after the port was freed: errors %v", b.lbErrors)
	}
}
