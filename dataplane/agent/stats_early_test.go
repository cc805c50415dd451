package agent

import (
	"context"
	"testing"
	"time"

	"github.com/fulcrumlb/fulcrum/dataplane/haproxy"
	"github.com/fulcrumlb/fulcrum/openapi"
)

// hookChecker runs during each check, once the apply's early sample is
// done (so the test knows what the sample read), then checks for real.
type hookChecker struct {
	checker
	a    *Agent
	hook func()
	// answered: the agent's CLI exchanges answered once the hook ran.
	answered int64
}

func (c *hookChecker) Check(ctx context.Context, path string) error {
	if s := c.a.early; s != nil { // the apply's goroutine: a.mu held
		<-s.done
	}
	if c.hook != nil {
		c.hook()
	}
	_, c.answered, _ = c.a.runtime.Exchanges.Counts()
	return c.checker.Check(ctx, path)
}

// countingReloader notes the agent's CLI exchanges answered when a reload
// begins.
type countingReloader struct {
	reloader
	a        *Agent
	answered int64
}

func (r *countingReloader) Reload(ctx context.Context) error {
	_, r.answered, _ = r.a.runtime.Exchanges.Counts()
	return r.reloader.Reload(ctx)
}

// With a real HAProxy: an apply that reloads reads the old worker's
// counters while `haproxy -c` runs; before the reload it asks the worker
// once (`show info`) whether anything reached it since, and reads again
// only then. Counters stay exact: traffic during the check is counted, as
// is traffic before; the agent's own CLI exchanges meanwhile (a report's)
// need no second read, anyone else's connection does.
func TestRealCountersSampledDuringTheCheck(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	a := realAgent(t, ctx)
	hc := &hookChecker{checker: a.checker, a: a}
	cr := &countingReloader{reloader: a.reloader, a: a}
	a.checker, a.reloader = hc, cr
	backend := httpBackend(t, "x")
	ports := freePorts(t, 6)
	lb := func(name string, port int) openapi.SnapshotLoadBalancer {
		m := member("mbr_"+name, "127.0.0.1", 1)
		m.Port = backend
		sl := lbPool("lb_"+name, "127.0.0.1", m)
		sl.Listeners[0].Port = port
		return sl
	}
	lbs := []openapi.SnapshotLoadBalancer{lb("a", ports[0])}
	if err := a.Apply(ctx, snapshot(1, lbs...)); err != nil {
		t.Fatal(err)
	}
	counts := func() map[string]int64 {
		t.Helper()
		proxies, servers, err := a.runtime.Stats(ctx)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]int64{}
		for _, st := range a.lbStats(ctx, proxies, servers, a.live) {
			out[st.LoadBalancerId] = statVal(st.Fields().ConnectionsTotal)
		}
		return out
	}
	// settle waits until the worker holds no client connection (a client
	// closed its end; HAProxy ends the session a moment later).
	settle := func() {
		t.Helper()
		for i := 0; i < 200; i++ {
			if w, err := a.workerInfo(ctx); err == nil && w.currConns == 0 {
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
		t.Fatal("the worker kept client connections open")
	}
	want := int64(0)
	for i, c := range []struct {
		name    string
		during  func() // while the candidate is checked
		reread  bool   // read again before the reload
		traffic int64  // connections to lb_a during the check
	}{
		{name: "nothing meanwhile"},
		{name: "the agent's own exchanges meanwhile", during: func() {
			for range 3 {
				if _, err := a.runtime.Command(ctx, "show stat -1 1 -1"); err != nil {
					t.Error(err)
				}
			}
		}},
		{name: "traffic meanwhile", during: func() { connect(t, ports[0], 2); settle() }, reread: true, traffic: 2},
		{name: "another client of the CLI meanwhile", during: func() {
			if _, err := (haproxy.Runtime{Socket: a.runtime.Socket}).Command(ctx, "show info"); err != nil {
				t.Error(err)
			}
		}, reread: true},
	} {
		connect(t, ports[0], 3) // before the apply: read by the early sample
		settle()
		want += 3 + c.traffic
		hc.hook = c.during
		lbs = append(lbs, lb(string(rune('b'+i)), ports[1+i]))
		if err := a.Apply(ctx, snapshot(int64(2+i), lbs...)); err != nil {
			t.Fatal(err)
		}
		// Between the check and the reload: one `show info`, or that and
		// a sample (`show info`, the frontends' rows: at least two more).
		path := cr.answered - hc.answered
		if reread := path > 1; reread != c.reread || path < 1 {
			t.Errorf("%s: %d CLI exchanges between the check and the reload; want a second read: %v", c.name, path, c.reread)
		}
		if got := counts()["lb_a"]; got != want {
			t.Errorf("%s: lb_a counted %d connections across the reload, want %d", c.name, got, want)
		}
	}
}
