package agent

// Unit tests of Apply's decisions, with the HAProxy roles (roles.go) faked:
// what goes through the runtime API and what needs a reload, which load
// balancer a failure is blamed on, what stays served when a newer snapshot
// fails. The fakes for the reloader and the runtime API are in
// apply_test.go (testAgent); the real HAProxy is in haproxy_test.go and
// acceptance/.

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/oapi-codegen/nullable"

	"github.com/fulcrumlb/fulcrum/dataplane/haproxy"
	"github.com/fulcrumlb/fulcrum/internal/testcerts"
	"github.com/fulcrumlb/fulcrum/openapi"
)

// checkFunc is a checker judging the candidate's text.
type checkFunc func(ctx context.Context, text []byte) error

func (f checkFunc) Check(ctx context.Context, path string) error {
	text, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	return f(ctx, text)
}

// bindFunc is a binder.
type bindFunc func(netip.AddrPort) error

func (f bindFunc) CanBind(ap netip.AddrPort) error { return f(ap) }

// fakeChecker rejects candidates holding one of its markers and counts what
// it was asked.
type fakeChecker struct {
	mu       sync.Mutex
	rejects  map[string]error // marker in the candidate → HAProxy's verdict
	checks   int
	rejected map[string]int // marker → candidates rejected for it
}

func newFakeChecker() *fakeChecker {
	return &fakeChecker{rejects: map[string]error{}, rejected: map[string]int{}}
}

func (c *fakeChecker) Check(_ context.Context, path string) error {
	text, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.checks++
	for marker, verdict := range c.rejects {
		if strings.Contains(string(text), marker) {
			c.rejected[marker]++
			return verdict
		}
	}
	return nil
}

// fakeRuntime records runtime-API changes as "<what> <backend>/<server> <value>".
type fakeRuntime struct {
	mu    sync.Mutex
	calls []string
	fail  error // every change fails with it when set
}

func (r *fakeRuntime) record(format string, args ...any) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, fmt.Sprintf(format, args...))
	return r.fail
}

func (r *fakeRuntime) AddServer(_ context.Context, backend, server, addrPort, options string) error {
	return r.record("add %s/%s %s %s", backend, server, addrPort, options)
}

func (r *fakeRuntime) SetState(_ context.Context, backend, server, state string) error {
	return r.record("state %s/%s %s", backend, server, state)
}

func (r *fakeRuntime) SetAddr(_ context.Context, backend, server, addr string, port int) error {
	return r.record("addr %s/%s %s:%d", backend, server, addr, port)
}

func (r *fakeRuntime) SetWeight(_ context.Context, backend, server string, weight int) error {
	return r.record("weight %s/%s %d", backend, server, weight)
}

func (r *fakeRuntime) SetSSLCert(_ context.Context, file, bundle string) error {
	return r.record("ssl %s %d", filepath.Base(file), len(bundle))
}

// take returns the calls recorded since the last take.
func (r *fakeRuntime) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.calls
	r.calls = nil
	return out
}

// unitAgent is testAgent with a counting checker.
func unitAgent(t *testing.T) (*Agent, *fakeHAProxy, *fakeChecker) {
	t.Helper()
	a, f := testAgent(t, "")
	c := newFakeChecker()
	a.checker = c
	return a, f, c
}

// counts returns reloads, failed reloads and checks so far.
func counts(f *fakeHAProxy, c *fakeChecker) (reloads, failures, checks int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c.mu.Lock()
	defer c.mu.Unlock()
	return f.reloads, f.failures, c.checks
}

// lbPool is a load balancer with one tcp listener on port 80 whose default
// pool (round robin) holds members.
func lbPool(id, vip string, members ...openapi.Member) openapi.SnapshotLoadBalancer {
	sl := lbWith(id, vip, 80)
	pool := strings.Replace(id, "lb_", "pool_", 1)
	sl.Listeners[0].DefaultPoolId = nullable.NewNullableWithValue(pool)
	sl.Pools = []openapi.Pool{{Id: pool, Protocol: "tcp", Algorithm: "round_robin", Retries: 3,
		SessionPersistence: openapi.SessionPersistence{Type: openapi.SessionPersistenceTypeNone}}}
	for _, m := range members {
		m.PoolId = pool
		sl.Members = append(sl.Members, m)
	}
	return sl
}

func member(id, addr string, weight int) openapi.Member {
	return openapi.Member{Id: id, Address: addr, Port: 8080, Weight: weight, Enabled: true}
}

// clone copies a snapshot load balancer deeply enough to change it.
func clone(sl openapi.SnapshotLoadBalancer) openapi.SnapshotLoadBalancer {
	sl.Listeners = slices.Clone(sl.Listeners)
	sl.Pools = slices.Clone(sl.Pools)
	sl.Members = slices.Clone(sl.Members)
	return sl
}

// liveMember is member id as HAProxy serves it now.
func liveMember(t *testing.T, a *Agent, id string) haproxy.Member {
	t.Helper()
	for _, lb := range a.live.LoadBalancers {
		for _, p := range lb.Pools {
			for _, m := range p.Members {
				if m.ID == id {
					return m
				}
			}
		}
	}
	t.Fatalf("member %s is not served", id)
	return haproxy.Member{}
}

// Changes to members only go through the runtime API — no `haproxy -c`, no
// reload — as long as the runtime API can express them; anything else
// (a new listener, another algorithm, a member's backup flag, a disabled
// load balancer) is checked and reloaded. Either way the file on disk says
// what runs, so the next reload keeps it.
func TestApplyRuntimeOrReload(t *testing.T) {
	base := lbPool("lb_a", "127.0.0.2", member("mbr_1", "10.0.0.1", 1), member("mbr_2", "10.0.0.2", 1))
	cases := []struct {
		name       string
		change     func(sl *openapi.SnapshotLoadBalancer)
		wantReload bool
		wantCalls  []string // runtime-API changes, in order
		wantMember *haproxy.Member
	}{
		{name: "weight", change: func(sl *openapi.SnapshotLoadBalancer) { sl.Members[0].Weight = 5 },
			wantCalls:  []string{"weight pool_a/mbr_1 5"},
			wantMember: &haproxy.Member{ID: "mbr_1", Address: "10.0.0.1", Port: 8080, Weight: 5, Enabled: true}},
		{name: "disable", change: func(sl *openapi.SnapshotLoadBalancer) { sl.Members[1].Enabled = false },
			wantCalls:  []string{"state pool_a/mbr_2 maint"},
			wantMember: &haproxy.Member{ID: "mbr_2", Address: "10.0.0.2", Port: 8080, Weight: 1}},
		{name: "weight 0 drains", change: func(sl *openapi.SnapshotLoadBalancer) { sl.Members[0].Weight = 0 },
			wantCalls: []string{"weight pool_a/mbr_1 0", "state pool_a/mbr_1 drain"}},
		{name: "address", change: func(sl *openapi.SnapshotLoadBalancer) { sl.Members[0].Address, sl.Members[0].Port = "10.0.0.9", 9090 },
			wantCalls: []string{"addr pool_a/mbr_1 10.0.0.9:9090"}},
		{name: "new member", change: func(sl *openapi.SnapshotLoadBalancer) {
			m := member("mbr_3", "10.0.0.3", 2)
			m.PoolId = "pool_a"
			sl.Members = append(sl.Members, m)
		}, wantCalls: []string{"add pool_a/mbr_3 10.0.0.3:8080 weight 2"}},
		{name: "removed member", change: func(sl *openapi.SnapshotLoadBalancer) { sl.Members = sl.Members[:1] },
			wantCalls: []string{"state pool_a/mbr_2 maint"}}, // its drain deletes it later
		{name: "new member by DNS name", change: func(sl *openapi.SnapshotLoadBalancer) {
			m := member("mbr_3", "backend.example.test", 1)
			m.PoolId = "pool_a"
			sl.Members = append(sl.Members, m)
		}, wantReload: true},
		{name: "new listener", change: func(sl *openapi.SnapshotLoadBalancer) {
			sl.Listeners = append(sl.Listeners, openapi.Listener{Id: "lsn_ax81", Protocol: "tcp", Port: 81})
		}, wantReload: true},
		{name: "algorithm", change: func(sl *openapi.SnapshotLoadBalancer) { sl.Pools[0].Algorithm = "least_connections" }, wantReload: true},
		{name: "backup flag", change: func(sl *openapi.SnapshotLoadBalancer) { sl.Members[1].Backup = true }, wantReload: true},
		{name: "load balancer disabled", change: func(sl *openapi.SnapshotLoadBalancer) { sl.LoadBalancer.Enabled = false }, wantReload: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a, f, c := unitAgent(t)
			if err := a.Apply(context.Background(), snapshot(1, base)); err != nil {
				t.Fatal(err)
			}
			f.runtime.take()
			r0, _, c0 := counts(f, c)
			next := clone(base)
			tc.change(&next)
			if err := a.Apply(context.Background(), snapshot(2, next)); err != nil {
				t.Fatal(err)
			}
			r1, _, c1 := counts(f, c)
			calls := f.runtime.take()
			if tc.wantReload {
				if r1-r0 != 1 || c1 == c0 || len(calls) != 0 {
					t.Fatalf("%d reloads, %d checks, runtime calls %q; want one checked reload and no runtime call", r1-r0, c1-c0, calls)
				}
			} else {
				if r1 != r0 || c1 != c0 {
					t.Fatalf("%d reloads, %d checks; want none", r1-r0, c1-c0)
				}
				if !slices.Equal(calls, tc.wantCalls) {
					t.Fatalf("runtime calls %q, want %q", calls, tc.wantCalls)
				}
			}
			if a.AppliedRevision() != 2 || len(a.lbErrors) != 0 {
				t.Fatalf("revision %d, errors %v", a.AppliedRevision(), a.lbErrors)
			}
			if tc.wantMember != nil {
				if got := liveMember(t, a, tc.wantMember.ID); got != *tc.wantMember {
					t.Fatalf("served %+v, want %+v", got, *tc.wantMember)
				}
			}
			// The next reload loads what runs now.
			want, err := haproxy.Render(*a.live)
			if err != nil {
				t.Fatal(err)
			}
			if got, _ := os.ReadFile(a.path("haproxy.cfg")); string(got) != string(want) {
				t.Fatal("haproxy.cfg differs from what runs")
			}
		})
	}
}

// A member change the runtime API refuses is applied by a reload instead.
func TestApplyRuntimeFailureReloads(t *testing.T) {
	a, f, _ := unitAgent(t)
	base := lbPool("lb_a", "127.0.0.2", member("mbr_1", "10.0.0.1", 1))
	if err := a.Apply(context.Background(), snapshot(1, base)); err != nil {
		t.Fatal(err)
	}
	f.runtime.fail = errors.New("haproxy: no such server")
	next := clone(base)
	next.Members[0].Weight = 7
	if err := a.Apply(context.Background(), snapshot(2, next)); err != nil {
		t.Fatal(err)
	}
	if calls := f.runtime.take(); len(calls) != 1 || f.reloads != 2 {
		t.Fatalf("runtime calls %q, %d reloads; want one failed call, then a reload", calls, f.reloads)
	}
	if m := liveMember(t, a, "mbr_1"); m.Weight != 7 {
		t.Fatalf("served %+v", m)
	}
}

// One load balancer's config failing `haproxy -c` holds back that load
// balancer alone: the others apply in the same round, and the report names
// it, with the object HAProxy named.
func TestApplyCheckFailureBlamesOneLoadBalancer(t *testing.T) {
	a, f, c := unitAgent(t)
	c.rejects["frontend lsn_badx80"] = &haproxy.CheckError{Alerts: []haproxy.Alert{{Section: "frontend lsn_badx80",
		Message: "parsing [haproxy.cfg:42] : 'bind 127.0.0.3:80' unknown keyword 'nope'"}}}
	snap := snapshot(1, lbWith("lb_a", "127.0.0.2", 80), lbWith("lb_bad", "127.0.0.3", 80), lbWith("lb_c", "127.0.0.4", 80))
	if err := a.Apply(context.Background(), snap); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(served(a), ","); got != "lb_a,lb_c" {
		t.Fatalf("served %s, want lb_a,lb_c", got)
	}
	if f.reloads != 1 || f.failures != 0 {
		t.Fatalf("%d reloads (%d failed), want one that works", f.reloads, f.failures)
	}
	body, _ := a.reportBody()
	if body == nil || body.Status != openapi.Ack || body.Revision != 1 {
		t.Fatalf("report %+v, want an ack of revision 1", body)
	}
	errs := *body.LoadBalancerErrors
	if len(errs) != 1 || errs[0].LoadBalancerId != "lb_bad" || errs[0].ObjectId == nil || *errs[0].ObjectId != "lsn_badx80" ||
		!strings.Contains(errs[0].Message, "unknown keyword") {
		t.Fatalf("report's load balancer errors %+v, want lb_bad's listener", errs)
	}
	if len(*body.NodeErrors) != 0 {
		t.Fatalf("node errors %+v", *body.NodeErrors)
	}
}

// A newer version of a load balancer that fails keeps the last good one
// served (and on disk); the version that failed is not checked again, while
// other changes keep applying; a fixed version applies.
func TestApplyKeepsLastGoodVersion(t *testing.T) {
	a, f, c := unitAgent(t)
	v1, other := lbWith("lb_a", "127.0.0.2", 80), lbWith("lb_b", "127.0.0.3", 80)
	if err := a.Apply(context.Background(), snapshot(1, v1, other)); err != nil {
		t.Fatal(err)
	}
	v2 := lbWith("lb_a", "127.0.0.2", 80, 81)
	c.rejects["frontend lsn_ax81"] = &haproxy.CheckError{Alerts: []haproxy.Alert{{Section: "frontend lsn_ax81", Message: "bad"}}}
	other2 := lbWith("lb_b", "127.0.0.3", 80, 82)
	if err := a.Apply(context.Background(), snapshot(2, v2, other2)); err != nil {
		t.Fatal(err)
	}
	lbA := func() haproxy.LoadBalancer {
		for _, lb := range a.live.LoadBalancers {
			if lb.ID == "lb_a" {
				return lb
			}
		}
		t.Fatal("lb_a is not served")
		return haproxy.LoadBalancer{}
	}
	if n := len(lbA().Listeners); n != 1 {
		t.Fatalf("lb_a serves %d listeners, want its last good version (1)", n)
	}
	if e := a.lbErrors["lb_a"]; e.Kind != failCheck || e.ObjectID != "lsn_ax81" {
		t.Fatalf("lb_a: %+v", e)
	}
	if _, ok := a.lbErrors["lb_b"]; ok || a.AppliedRevision() != 2 {
		t.Fatalf("lb_b should apply with revision 2: %v", a.lbErrors)
	}
	cfg, _ := os.ReadFile(a.path("haproxy.cfg"))
	if strings.Contains(string(cfg), "lsn_ax81") || !strings.Contains(string(cfg), "lsn_bx82") {
		t.Fatal("haproxy.cfg should hold lb_a's last good version and lb_b's new one")
	}
	rejected := c.rejected["frontend lsn_ax81"]

	// The same failing version again, with another change: only the other
	// change is checked and applied.
	other3 := lbWith("lb_b", "127.0.0.3", 80, 82, 83)
	if err := a.Apply(context.Background(), snapshot(3, v2, other3)); err != nil {
		t.Fatal(err)
	}
	if c.rejected["frontend lsn_ax81"] != rejected {
		t.Fatal("the version that failed was checked again")
	}
	if n := len(lbA().Listeners); n != 1 || a.lbErrors["lb_a"].Kind != failCheck || a.AppliedRevision() != 3 {
		t.Fatalf("lb_a: %d listeners, errors %v, revision %d", n, a.lbErrors, a.AppliedRevision())
	}

	// Fixed: applied, its error gone.
	v4 := lbWith("lb_a", "127.0.0.2", 80, 84)
	if err := a.Apply(context.Background(), snapshot(4, v4, other3)); err != nil {
		t.Fatal(err)
	}
	if n := len(lbA().Listeners); n != 2 || len(a.lbErrors) != 0 {
		t.Fatalf("after the fix: %d listeners, errors %v", n, a.lbErrors)
	}
	if f.failures != 0 {
		t.Fatalf("%d failed reloads", f.failures)
	}
}

// A certificate whose content changes under the same id is handed to
// HAProxy through the runtime API (set ssl cert), without a check or a
// reload; when HAProxy refuses that, a reload loads it.
func TestApplyRotatesCertificateWithoutReload(t *testing.T) {
	a, f, c := unitAgent(t)
	tlsLB := lbWith("lb_tls", "127.0.0.2", 443)
	tlsLB.Listeners[0].Protocol, tlsLB.Listeners[0].CertificateIds = "https", []string{"cert_1"}
	withCert := func(rev int64, cert *testcerts.Cert) *openapi.Snapshot {
		s := snapshot(rev, tlsLB)
		s.Certificates = []openapi.SnapshotCertificate{{Id: "cert_1", Certificate: cert.CertPEM, PrivateKey: cert.KeyPEM}}
		return s
	}
	file := a.certFile("cert_1")
	c1 := testcerts.New(t, testcerts.Spec{Hosts: []string{"www.example.test"}})
	if err := a.Apply(context.Background(), withCert(1, c1)); err != nil {
		t.Fatal(err)
	}
	r0, _, c0 := counts(f, c)
	if r0 != 1 {
		t.Fatalf("%d reloads for the new load balancer, want 1", r0)
	}

	c2 := testcerts.New(t, testcerts.Spec{Hosts: []string{"www.example.test"}})
	if err := a.Apply(context.Background(), withCert(2, c2)); err != nil {
		t.Fatal(err)
	}
	r1, _, c1n := counts(f, c)
	calls := f.runtime.take()
	if r1 != r0 || c1n != c0 {
		t.Fatalf("%d reloads and %d checks for a rotated certificate, want none", r1-r0, c1n-c0)
	}
	if len(calls) != 1 || !strings.HasPrefix(calls[0], "ssl cert_1.pem ") {
		t.Fatalf("runtime calls %q, want one set ssl cert of cert_1.pem", calls)
	}
	if b, _ := os.ReadFile(file); !strings.Contains(string(b), c2.CertPEM) {
		t.Fatal("the certificate file does not hold the new certificate")
	}
	if a.AppliedRevision() != 2 || len(a.lbErrors) != 0 {
		t.Fatalf("revision %d, errors %v", a.AppliedRevision(), a.lbErrors)
	}
	// The same content again: nothing to hand over.
	if err := a.Apply(context.Background(), withCert(3, c2)); err != nil {
		t.Fatal(err)
	}
	if calls := f.runtime.take(); len(calls) != 0 {
		t.Fatalf("runtime calls %q for an unchanged certificate", calls)
	}

	// HAProxy refuses the runtime update: a reload loads the new file.
	f.runtime.fail = errors.New("haproxy: transaction refused")
	c3 := testcerts.New(t, testcerts.Spec{Hosts: []string{"www.example.test"}})
	if err := a.Apply(context.Background(), withCert(4, c3)); err != nil {
		t.Fatal(err)
	}
	if r2, _, _ := counts(f, c); r2 != r1+1 {
		t.Fatalf("%d reloads after a refused runtime update, want 1", r2-r1)
	}
	if a.AppliedRevision() != 4 {
		t.Fatalf("revision %d, want 4", a.AppliedRevision())
	}
}

// A reload that fails without HAProxy's verdict on the configuration (no
// answer in time, no master) blames no load balancer: the old config keeps
// running and stays on disk, the snapshot fails as a whole with a node
// error in the report, and it is not fetched again (retried on the retry
// tick only when the failure may pass). A newer snapshot applies once
// reloads work again.
func TestApplyFailedReloadKeepsOldConfig(t *testing.T) {
	cases := []struct {
		name      string
		err       error
		wantKind  openapi.NodeErrorKind
		wantRetry bool
	}{
		{"no answer", errors.New("haproxy: the master did not confirm the reload in time"), openapi.Reload, false},
		{"not running", fmt.Errorf("reload: %w", haproxy.ErrNotRunning), openapi.HaproxyStart, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a, f, _ := unitAgent(t)
			if err := a.Apply(context.Background(), snapshot(1, lbWith("lb_a", "127.0.0.2", 80))); err != nil {
				t.Fatal(err)
			}
			before, _ := os.ReadFile(a.path("haproxy.cfg"))
			live := a.live
			f.fails["lsn_bx80"] = func() error { return tc.err }
			err := a.Apply(context.Background(), snapshot(2, lbWith("lb_a", "127.0.0.2", 80), lbWith("lb_b", "127.0.0.3", 80)))
			var ae *applyError
			if !errors.As(err, &ae) || ae.kind != tc.wantKind {
				t.Fatalf("apply: %v, want a node failure of kind %s", err, tc.wantKind)
			}
			if a.live != live || a.AppliedRevision() != 1 || len(a.lbErrors) != 0 {
				t.Fatalf("served %v at revision %d (errors %v), want lb_a at revision 1", served(a), a.AppliedRevision(), a.lbErrors)
			}
			if after, _ := os.ReadFile(a.path("haproxy.cfg")); string(after) != string(before) {
				t.Fatal("haproxy.cfg was not put back to what runs")
			}
			body, _ := a.reportBody()
			if body.Revision != 1 || len(*body.NodeErrors) != 1 || (*body.NodeErrors)[0].Kind != tc.wantKind {
				t.Fatalf("report: revision %d, node errors %+v", body.Revision, *body.NodeErrors)
			}
			if a.pollAfter() != 2 || a.retry != tc.wantRetry {
				t.Fatalf("poll after %d (want 2), retry %v (want %v)", a.pollAfter(), a.retry, tc.wantRetry)
			}
			if err := a.Apply(context.Background(), snapshot(2, lbWith("lb_a", "127.0.0.2", 80))); err != nil || f.reloads != 2 {
				t.Fatalf("the failed revision again: %v after %d reloads, want it ignored", err, f.reloads)
			}

			delete(f.fails, "lsn_bx80")
			if err := a.Apply(context.Background(), snapshot(3, lbWith("lb_a", "127.0.0.2", 80), lbWith("lb_b", "127.0.0.3", 80))); err != nil {
				t.Fatal(err)
			}
			body, _ = a.reportBody()
			if len(served(a)) != 2 || body.Revision != 3 || len(*body.NodeErrors) != 0 {
				t.Fatalf("after reloads work again: served %v, revision %d, node errors %+v", served(a), body.Revision, *body.NodeErrors)
			}
		})
	}
}
