package agent

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/fulcrumlb/fulcrum/dataplane/haproxy"
	"github.com/fulcrumlb/fulcrum/internal/testcerts"
	"github.com/fulcrumlb/fulcrum/openapi"
)

// fakeHAProxy stands in for HAProxy's reload: it fails whenever the config
// file holds one of the failing markers, with the error fail returns. Its
// runtime records the runtime-API changes (apply_unit_test.go).
type fakeHAProxy struct {
	mu       sync.Mutex
	path     string
	fails    map[string]func() error // marker in haproxy.cfg → error
	reloads  int
	failures int
	runtime  *fakeRuntime
}

func (f *fakeHAProxy) Reload(context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reloads++
	text, err := os.ReadFile(f.path)
	if err != nil {
		return err
	}
	for marker, fail := range f.fails {
		if strings.Contains(string(text), marker) {
			f.failures++
			return fail()
		}
	}
	return nil
}

// testAgent is an agent on a temporary state dir whose HAProxy is faked: an
// empty config runs.
func testAgent(t *testing.T, endpoint string) (*Agent, *fakeHAProxy) {
	t.Helper()
	if endpoint == "" {
		endpoint = "http://127.0.0.1:1"
	}
	dir := t.TempDir()
	a, err := New(Config{Endpoint: endpoint, Token: "t", NodeName: "node-1", StateDir: dir, Logger: nil})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{dir, a.path("run"), a.path("certs")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	f := &fakeHAProxy{path: a.path("haproxy.cfg"), fails: map[string]func() error{}, runtime: &fakeRuntime{}}
	a.reloader = f
	a.checker = checkFunc(func(context.Context, []byte) error { return nil })
	a.binder = bindFunc(func(netip.AddrPort) error { return nil })
	a.changes = f.runtime
	a.live = &haproxy.Config{Global: a.global()}
	return a, f
}

// lbWith is a snapshot load balancer with one tcp listener per port.
func lbWith(id, vip string, ports ...int) openapi.SnapshotLoadBalancer {
	sl := openapi.SnapshotLoadBalancer{LoadBalancer: openapi.LoadBalancer{Id: id, VipAddress: vip, Enabled: true}}
	for _, p := range ports {
		sl.Listeners = append(sl.Listeners, openapi.Listener{Id: strings.Replace(id, "lb_", "lsn_", 1) + "x" + itoa(p), Protocol: "tcp", Port: p})
	}
	return sl
}

func itoa(n int) string { return strconv.Itoa(n) }

func snapshot(rev int64, lbs ...openapi.SnapshotLoadBalancer) *openapi.Snapshot {
	return &openapi.Snapshot{Revision: rev, LoadBalancers: lbs}
}

func served(a *Agent) []string {
	var ids []string
	for _, lb := range a.live.LoadBalancers {
		ids = append(ids, lb.ID)
	}
	return ids
}

func bindAlert(listener, addr string) func() error {
	return func() error {
		return &haproxy.ReloadError{Reason: "the master could not load the configuration",
			Alerts: []haproxy.Alert{{Section: "frontend " + listener, Message: "Starting frontend " + listener + ": cannot bind socket (Address already in use) [" + addr + "]"}}}
	}
}

// A reload failing on a listener HAProxy names holds back that listener's
// load balancer alone (error on the listener's port) and applies the rest
// with one more reload.
func TestReloadFailureNamedIsolatesTheLoadBalancer(t *testing.T) {
	a, f := testAgent(t, "")
	good, bad := lbWith("lb_good", "127.0.0.2", 80), lbWith("lb_bad", "127.0.0.3", 81)
	badListener := bad.Listeners[0].Id
	f.fails["frontend "+badListener] = bindAlert(badListener, "127.0.0.3:81")
	if err := a.Apply(context.Background(), snapshot(1, good, bad)); err != nil {
		t.Fatal(err)
	}
	if got := served(a); len(got) != 1 || got[0] != "lb_good" {
		t.Fatalf("served %v, want only lb_good", got)
	}
	e, ok := a.lbErrors["lb_bad"]
	if !ok || e.ObjectID != badListener || e.Field != "port" || !strings.Contains(e.Message, "cannot bind") {
		t.Fatalf("lb_bad error: %+v", e)
	}
	if f.reloads != 2 || f.failures != 1 {
		t.Fatalf("%d reloads, %d failed; want 2 and 1", f.reloads, f.failures)
	}
	// The same failing version is not tried again; other changes still apply.
	other := lbWith("lb_other", "127.0.0.4", 82)
	if err := a.Apply(context.Background(), snapshot(2, good, bad, other)); err != nil {
		t.Fatal(err)
	}
	if f.failures != 1 {
		t.Fatalf("the failing version was reloaded again (%d failed reloads)", f.failures)
	}
	if got := served(a); len(got) != 2 || got[0] != "lb_good" || got[1] != "lb_other" {
		t.Fatalf("served %v", got)
	}
	if _, ok := a.lbErrors["lb_bad"]; !ok {
		t.Fatal("lb_bad's error must persist")
	}
	// Fixing it (another version) applies it.
	fixed := lbWith("lb_bad", "127.0.0.3", 83)
	if err := a.Apply(context.Background(), snapshot(3, good, fixed, other)); err != nil {
		t.Fatal(err)
	}
	if len(a.lbErrors) != 0 || len(served(a)) != 3 {
		t.Fatalf("after the fix: served %v, errors %v", served(a), a.lbErrors)
	}
}

// When HAProxy names nothing, the changed load balancers are bisected: only
// the culprit is held back, at its last good version, and the number of
// reloads stays logarithmic-ish.
func TestReloadFailureUnnamedBisects(t *testing.T) {
	a, f := testAgent(t, "")
	var lbs []openapi.SnapshotLoadBalancer
	for i, id := range []string{"lb_a", "lb_b", "lb_c", "lb_d", "lb_e", "lb_f", "lb_g", "lb_h"} {
		lbs = append(lbs, lbWith(id, "127.0.1."+itoa(i+1), 80))
	}
	if err := a.Apply(context.Background(), snapshot(1, lbs...)); err != nil {
		t.Fatal(err)
	}
	// lb_f gets a second listener; something about it fails the reload
	// without HAProxy saying what (a resource limit, say).
	changed := append([]openapi.SnapshotLoadBalancer(nil), lbs...)
	changed[5] = lbWith("lb_f", "127.0.1.6", 80, 9999)
	changed[1] = lbWith("lb_b", "127.0.1.2", 80, 81) // a good change alongside
	f.fails[":9999"] = func() error { return &haproxy.ReloadError{Reason: "the master could not load the configuration"} }
	f.reloads = 0
	if err := a.Apply(context.Background(), snapshot(2, changed...)); err != nil {
		t.Fatal(err)
	}
	if len(a.lbErrors) != 1 || a.lbErrors["lb_f"].Kind != failReload {
		t.Fatalf("errors %v, want lb_f only", a.lbErrors)
	}
	var f80only, b2 bool
	for _, lb := range a.live.LoadBalancers {
		if lb.ID == "lb_f" && len(lb.Listeners) == 1 {
			f80only = true
		}
		if lb.ID == "lb_b" && len(lb.Listeners) == 2 {
			b2 = true
		}
	}
	if !f80only || !b2 || len(a.live.LoadBalancers) != 8 {
		t.Fatalf("lb_f should stay at its last good version and lb_b change: %+v", a.live.LoadBalancers)
	}
	if f.reloads > 4 {
		t.Fatalf("%d reloads to isolate one culprit among 2 changed", f.reloads)
	}
	t.Logf("%d reloads, %d failed", f.reloads, f.failures)
}

// A VIP:port that cannot be bound holds the load balancer back before any
// reload; once it can be bound, a retry applies it.
func TestBindPrecheck(t *testing.T) {
	a, f := testAgent(t, "")
	held := netip.MustParseAddrPort("127.0.0.3:81")
	var free bool
	a.binder = bindFunc(func(ap netip.AddrPort) error {
		if ap == held && !free {
			return errors.New("cannot bind socket (Address already in use) [127.0.0.3:81]")
		}
		return nil
	})
	good, bad := lbWith("lb_good", "127.0.0.2", 80), lbWith("lb_bad", "127.0.0.3", 81)
	snap := snapshot(1, good, bad)
	if err := a.Apply(context.Background(), snap); err != nil {
		t.Fatal(err)
	}
	if f.failures != 0 || len(served(a)) != 1 {
		t.Fatalf("served %v with %d failed reloads", served(a), f.failures)
	}
	if e := a.lbErrors["lb_bad"]; e.Kind != failBind || e.ObjectID != bad.Listeners[0].Id || e.Field != "port" {
		t.Fatalf("lb_bad: %+v", e)
	}
	if !a.retry {
		t.Fatal("a bind failure should be retried")
	}
	free = true
	if err := a.apply(context.Background(), snap, true); err != nil {
		t.Fatal(err)
	}
	if len(a.lbErrors) != 0 || len(served(a)) != 2 || a.retry {
		t.Fatalf("after the port was freed: served %v, errors %v", served(a), a.lbErrors)
	}
}

// What was served survives a restart: the held-back load balancer stays at
// its last good version with its error; the snapshot on disk has no keys.
func TestStateSurvivesRestart(t *testing.T) {
	a, f := testAgent(t, "")
	v1 := lbWith("lb_x", "127.0.0.2", 80)
	if err := a.Apply(context.Background(), snapshot(1, v1)); err != nil {
		t.Fatal(err)
	}
	v2 := lbWith("lb_x", "127.0.0.2", 80, 9999)
	f.fails[":9999"] = func() error { return &haproxy.ReloadError{Reason: "the master could not load the configuration"} }
	snap := snapshot(2, v2)
	c := testcerts.New(t, testcerts.Spec{Hosts: []string{"www.example.test"}, PKCS8: true})
	snap.Certificates = []openapi.SnapshotCertificate{{Id: "cert_1", Certificate: c.CertPEM, PrivateKey: c.KeyPEM}}
	if err := a.Apply(context.Background(), snap); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(a.path("snapshot.json"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(raw), "PRIVATE KEY") {
		t.Fatal("snapshot.json holds a private key")
	}

	b, err := New(Config{Endpoint: "http://127.0.0.1:1", Token: "t", NodeName: "node-1", StateDir: a.cfg.StateDir})
	if err != nil {
		t.Fatal(err)
	}
	cfg := b.restore()
	if len(cfg.LoadBalancers) != 1 || len(cfg.LoadBalancers[0].Listeners) != 1 {
		t.Fatalf("restored %+v, want lb_x at its last good version", cfg.LoadBalancers)
	}
	if _, ok := b.lbErrors["lb_x"]; !ok || b.snap.Revision != 2 {
		t.Fatalf("restored errors %v, revision %d", b.lbErrors, b.snap.Revision)
	}
	if k := b.snap.Certificates[0].PrivateKey; !strings.Contains(k, "PRIVATE KEY") {
		t.Fatalf("the key should come back from its file: %q", k)
	}

	// A certificate gone from the snapshot takes its file with it.
	if err := a.Apply(context.Background(), snapshot(3, v1)); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(a.path("certs"), "cert_1.pem")); !os.IsNotExist(err) {
		t.Fatalf("the deleted certificate's file is still there: %v", err)
	}
}

// A state dir that cannot be written is a node error of kind disk in the
// report (not "config invalid"); it persists in every report and goes once
// the write succeeds.
func TestReportCarriesNodeErrors(t *testing.T) {
	var mu sync.Mutex
	var last openapi.NodeReport
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/reports") {
			b, _ := io.ReadAll(r.Body)
			mu.Lock()
			last = openapi.NodeReport{}
			_ = json.Unmarshal(b, &last)
			mu.Unlock()
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	a, _ := testAgent(t, srv.URL)
	if err := a.Apply(context.Background(), snapshot(1, lbWith("lb_a", "127.0.0.2", 80))); err != nil {
		t.Fatal(err)
	}
	// The state dir's files cannot be replaced: haproxy.cfg is a directory.
	cfgPath := a.path("haproxy.cfg")
	if err := os.Remove(cfgPath); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(cfgPath, "x"), 0o700); err != nil {
		t.Fatal(err)
	}
	err := a.Apply(context.Background(), snapshot(2, lbWith("lb_a", "127.0.0.2", 80), lbWith("lb_b", "127.0.0.3", 80)))
	if err == nil {
		t.Fatal("apply should fail")
	}
	report := func() openapi.NodeReport {
		t.Helper()
		if err := a.report(context.Background()); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		defer mu.Unlock()
		return last
	}
	for i := 0; i < 2; i++ {
		r := report()
		if r.NodeErrors == nil || len(*r.NodeErrors) != 1 || (*r.NodeErrors)[0].Kind != openapi.Disk {
			t.Fatalf("report %d: node errors %+v, want one of kind disk", i, r.NodeErrors)
		}
		if r.Revision != 1 {
			t.Fatalf("report %d: revision %d, want the one served (1)", i, r.Revision)
		}
	}
	if !a.retry {
		t.Fatal("a disk failure should be retried")
	}
	// The failed revision is not fetched (nor applied) again in a loop.
	if got := a.pollAfter(); got != 2 {
		t.Fatalf("the next poll asks for revisions after %d, want 2", got)
	}
	if err := a.Apply(context.Background(), a.want); err != nil {
		t.Fatalf("the failed revision again: %v", err)
	}
	// Fixed: the retry applies and the error goes.
	if err := os.RemoveAll(cfgPath); err != nil {
		t.Fatal(err)
	}
	if err := a.apply(context.Background(), a.want, true); err != nil {
		t.Fatal(err)
	}
	r := report()
	if r.NodeErrors == nil || len(*r.NodeErrors) != 0 || r.Revision != 2 {
		t.Fatalf("after the fix: node errors %+v, revision %d", r.NodeErrors, r.Revision)
	}
}

// `haproxy -c` verdicts: a load balancer rejected alone is held with the
// object named; two that pass alone but not together keep the first; a
// renderer refusal names the object and field.
func TestCheckFailuresAreIsolated(t *testing.T) {
	a, f := testAgent(t, "")
	a.checker = checkFunc(func(_ context.Context, text []byte) error {
		s := string(text)
		switch {
		case strings.Contains(s, "frontend lsn_badx80"):
			return &haproxy.CheckError{Alerts: []haproxy.Alert{{Section: "frontend lsn_badx80", Message: "error detected while parsing ACL 'rule_x_c0'"}}}
		case strings.Contains(s, "frontend lsn_px80") && strings.Contains(s, "frontend lsn_qx80"):
			return &haproxy.CheckError{Alerts: []haproxy.Alert{{Message: "something about the two"}}}
		}
		return nil
	})
	https := lbWith("lb_tls", "127.0.0.5", 443)
	https.Listeners[0].Protocol = "https" // without a certificate
	snap := snapshot(1, lbWith("lb_ok", "127.0.0.2", 80), lbWith("lb_bad", "127.0.0.3", 80),
		lbWith("lb_p", "127.0.0.4", 80), lbWith("lb_q", "127.0.0.6", 80), https)
	if err := a.Apply(context.Background(), snap); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(served(a), ","); got != "lb_ok,lb_p" {
		t.Fatalf("served %s, want lb_ok,lb_p", got)
	}
	if e := a.lbErrors["lb_bad"]; e.Kind != failCheck || e.ObjectID != "lsn_badx80" {
		t.Fatalf("lb_bad: %+v", e)
	}
	if e := a.lbErrors["lb_q"]; e.Kind != failCheck {
		t.Fatalf("lb_q: %+v", e)
	}
	if e := a.lbErrors["lb_tls"]; e.ObjectID != "lsn_tlsx443" || e.Field != "cert_files" {
		t.Fatalf("lb_tls: %+v", e)
	}
	if f.failures != 0 || f.reloads != 1 {
		t.Fatalf("%d reloads, %d failed; want 1 and 0", f.reloads, f.failures)
	}
}

// A certificate whose pair does not load holds back only the load balancers
// using it, at what they serve; its file keeps the pair HAProxy can load.
func TestBadCertificateHoldsOnlyItsUsers(t *testing.T) {
	a, f := testAgent(t, "")
	c1 := testcerts.New(t, testcerts.Spec{Hosts: []string{"www.example.test"}})
	c2 := testcerts.New(t, testcerts.Spec{Hosts: []string{"www.example.test"}})
	tlsLB := lbWith("lb_tls", "127.0.0.2", 443)
	tlsLB.Listeners[0].Protocol, tlsLB.Listeners[0].CertificateIds = "https", []string{"cert_1"}
	other := lbWith("lb_other", "127.0.0.3", 80)
	snap := snapshot(1, tlsLB, other)
	snap.Certificates = []openapi.SnapshotCertificate{{Id: "cert_1", Certificate: c1.CertPEM, PrivateKey: c1.KeyPEM}}
	if err := a.Apply(context.Background(), snap); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(a.path("certs"), "cert_1.pem")
	before, _ := os.ReadFile(file)
	// The key of another pair: it does not load.
	other2 := lbWith("lb_other", "127.0.0.3", 80, 81)
	snap = snapshot(2, tlsLB, other2)
	snap.Certificates = []openapi.SnapshotCertificate{{Id: "cert_1", Certificate: c1.CertPEM, PrivateKey: c2.KeyPEM}}
	if err := a.Apply(context.Background(), snap); err != nil {
		t.Fatal(err)
	}
	if e := a.lbErrors["lb_tls"]; e.ObjectID != "cert_1" {
		t.Fatalf("lb_tls: %+v", e)
	}
	if _, ok := a.lbErrors["lb_other"]; ok || len(a.live.LoadBalancers) != 2 || len(a.live.LoadBalancers[0].Listeners) != 2 {
		t.Fatalf("lb_other should apply: %v %+v", a.lbErrors, a.live.LoadBalancers)
	}
	if after, _ := os.ReadFile(file); string(after) != string(before) {
		t.Fatal("the file of a pair that does not load was overwritten")
	}
	if f.failures != 0 {
		t.Fatalf("%d failed reloads", f.failures)
	}
}
