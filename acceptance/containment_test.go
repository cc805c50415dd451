package acceptance

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fulcrumlb/fulcrum/internal/pgtest"
	"github.com/fulcrumlb/fulcrum/internal/testcerts"
	"github.com/fulcrumlb/fulcrum/internal/teststack"
)

// load runs fn in a loop on workers goroutines until stop is called (or
// maxDuration passes), counting successes and failures.
type steadyLoad struct {
	ok, failed atomic.Int64
	firstErr   atomic.Value
	stopCh     chan struct{}
	wg         sync.WaitGroup
}

func startSteadyLoad(workers int, maxDuration time.Duration, fn func() error) *steadyLoad {
	l := &steadyLoad{stopCh: make(chan struct{})}
	deadline := time.Now().Add(maxDuration)
	for i := 0; i < workers; i++ {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for time.Now().Before(deadline) {
				select {
				case <-l.stopCh:
					return
				default:
				}
				if err := fn(); err != nil {
					if l.failed.Add(1) == 1 {
						l.firstErr.Store(err)
					}
				} else {
					l.ok.Add(1)
				}
				time.Sleep(5 * time.Millisecond)
			}
		}()
	}
	return l
}

// stop ends the loop and returns the counts.
func (l *steadyLoad) stop() (ok, failed int64, first any) {
	close(l.stopCh)
	l.wg.Wait()
	return l.ok.Load(), l.failed.Load(), l.firstErr.Load()
}

// fetchFrom wants a 200 from url answered by one of names.
func fetchFrom(c *http.Client, url string, names ...string) error {
	name, err := teststack.Fetch(c, url)
	if err != nil {
		return err
	}
	for _, n := range names {
		if name == n {
			return nil
		}
	}
	return fmt.Errorf("answered by %q, want one of %v", name, names)
}

// tenant is a second tenant of a stack, acting with its own token.
type tenant struct {
	s     *stack
	ID    string
	Token string
}

// newTenant creates a tenant and a token for it with the admin token.
func (s *stack) newTenant(name string) *tenant {
	s.t.Helper()
	code, tn := s.CallAs(s.AdminToken, "POST", "/v1/tenants", map[string]any{"name": name})
	if code != http.StatusCreated {
		s.t.Fatalf("create tenant: %d %v", code, tn)
	}
	code, tok := s.CallAs(s.AdminToken, "POST", "/v1/tokens", map[string]any{"kind": "tenant", "tenant_id": tn["id"], "name": name})
	if code != http.StatusCreated {
		s.t.Fatalf("create token: %d %v", code, tok)
	}
	return &tenant{s: s, ID: tn["id"].(string), Token: tok["secret"].(string)}
}

func (tn *tenant) create(path string, body any) map[string]any {
	tn.s.t.Helper()
	code, out := tn.s.CallAs(tn.Token, "POST", path, body)
	if code != http.StatusCreated {
		tn.s.t.Fatalf("POST %s: %d %v", path, code, out)
	}
	return out
}

func (tn *tenant) get(path string) map[string]any {
	tn.s.t.Helper()
	_, out := tn.s.CallAs(tn.Token, "GET", path, nil)
	return out
}

func (tn *tenant) waitStatus(path, status string, bound time.Duration) map[string]any {
	tn.s.t.Helper()
	var last map[string]any
	teststack.WaitFor(tn.s.t, path+" "+status, bound, func() bool {
		last = tn.get(path)
		return last["provisioning_status"] == status
	})
	return last
}

// TestContainmentPortClash: another process holds a port; tenant A adds a
// listener on it. A's listener and load balancer read error with the bind
// message and no reload fails, while tenant B's load balancer on the same
// node serves every request under steady load and B's changes keep applying.
// Once the port is free, A's listener comes up by itself.
func TestContainmentPortClash(t *testing.T) {
	t.Parallel()
	s := newStack(t, pgtest.NewDatabase(t))
	ag := s.StartAgent("node-1")
	b1, b2, a1 := teststack.StartBackend(t, "b1"), teststack.StartBackend(t, "b2"), teststack.StartBackend(t, "a1")
	lbB := s.newLB(10401, map[string]any{"algorithm": "round_robin"}, b1)

	a := s.newTenant("tenant-a")
	lbA := a.create("/v1/load-balancers", map[string]any{"name": "a"})
	lbAID, vipA := lbA["id"].(string), lbA["vip_address"].(string)
	poolA := a.create("/v1/pools", map[string]any{"load_balancer_id": lbAID, "protocol": "http"})["id"].(string)
	a.create("/v1/members", map[string]any{"pool_id": poolA, "address": "127.0.0.1", "port": a1.Port})
	lsnA := a.create("/v1/listeners", map[string]any{"load_balancer_id": lbAID, "protocol": "http", "port": 10402, "default_pool_id": poolA})["id"].(string)
	a.waitStatus("/v1/listeners/"+lsnA, "active", 20*time.Second)
	if err := fetchFrom(teststack.NewClient(nil), fmt.Sprintf("http://%s:10402/", vipA), "a1"); err != nil {
		t.Fatalf("tenant A's load balancer: %v", err)
	}

	// Another process holds a port on A's VIP (no SO_REUSEPORT).
	holder, err := net.Listen("tcp", net.JoinHostPort(vipA, "0"))
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close()
	held := holder.Addr().(*net.TCPAddr).Port

	reloadsBefore := masterReloads(t, ag.Process().MasterSocket())
	cl := teststack.NewClient(nil)
	ld := startSteadyLoad(2, 2*time.Minute, func() error { return fetchFrom(cl, lbB.URL, "b1", "b2") })

	bad := a.create("/v1/listeners", map[string]any{"load_balancer_id": lbAID, "protocol": "tcp", "port": held})["id"].(string)
	lsnState := a.waitStatus("/v1/listeners/"+bad, "error", 20*time.Second)
	if msg, _ := lsnState["status_message"].(string); !strings.Contains(msg, "cannot bind") || !strings.Contains(msg, fmt.Sprint(held)) {
		t.Fatalf("A's listener should name the bind failure: %v", lsnState)
	}
	lbState := a.get("/v1/load-balancers/" + lbAID)
	if !showsError(lbState) {
		t.Fatalf("load balancer A should read error or degraded: %v", lbState)
	}
	t.Logf("listener on the held port: %s: %v; its load balancer: %s/%s", lsnState["provisioning_status"], lsnState["status_message"],
		lbState["provisioning_status"], lbState["operating_status"])
	// A keeps serving its last good version.
	if err := fetchFrom(teststack.NewClient(nil), fmt.Sprintf("http://%s:10402/", vipA), "a1"); err != nil {
		t.Fatalf("tenant A's last good version: %v", err)
	}

	// B's changes keep applying.
	mb := s.Create("/v1/members", map[string]any{"pool_id": lbB.Pool, "address": "127.0.0.1", "port": b2.Port})["id"].(string)
	s.WaitActive("/v1/members/" + mb)
	teststack.WaitFor(t, "B's new member to get traffic", 10*time.Second, func() bool {
		return distribution(t, teststack.NewClient(nil), lbB.URL, 6)["b2"] > 0
	})
	s.MustCall(200, "PATCH", "/v1/pools/"+lbB.Pool, map[string]any{"retries": 2}) // needs a reload
	s.WaitActive("/v1/pools/" + lbB.Pool)
	time.Sleep(time.Second) // steady load a while longer, with the agent retrying A's port

	ok, failed, first := ld.stop()
	reloads := masterReloads(t, ag.Process().MasterSocket()) - reloadsBefore
	t.Logf("tenant B under load while A's listener clashed: %d requests, %d failed; %d reloads, none failed", ok, failed, reloads)
	if failed != 0 {
		t.Fatalf("tenant B lost %d of %d requests; first: %v", failed, ok+failed, first)
	}
	if ok < 50 {
		t.Fatalf("the load loop made only %d requests", ok)
	}
	if f := masterFailedReloads(t, ag.Process().MasterSocket()); f != 0 {
		t.Fatalf("%d failed reloads: the clash should be caught before a reload", f)
	}

	// The port is freed: A's listener comes up without anyone touching it.
	holder.Close()
	a.waitStatus("/v1/listeners/"+bad, "active", 20*time.Second)
	a.waitStatus("/v1/load-balancers/"+lbAID, "active", 20*time.Second)
	teststack.WaitFor(t, "A's listener on the freed port", 10*time.Second, func() bool { return !refused(net.JoinHostPort(vipA, fmt.Sprint(held))) })
}

// showsError reports whether a load balancer shows that a node rejected it
// or one of its objects: provisioning error (the load balancer itself), or
// operating degraded (an object of it, which reads error).
func showsError(lb map[string]any) bool {
	return lb["provisioning_status"] == "error" || lb["operating_status"] == "degraded"
}

// masterReloads reads the master's reload counter (`show proc`).
func masterReloads(t *testing.T, sock string) int {
	t.Helper()
	n, _ := showProcCounters(t, sock)
	return n
}

func masterFailedReloads(t *testing.T, sock string) int {
	t.Helper()
	_, f := showProcCounters(t, sock)
	return f
}

func showProcCounters(t *testing.T, sock string) (reloads, failed int) {
	t.Helper()
	c, err := net.DialTimeout("unix", sock, 3*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprint(c, "show proc\n")
	_ = c.(*net.UnixConn).CloseWrite()
	var out bytes.Buffer
	_, _ = out.ReadFrom(c)
	for _, line := range strings.Split(out.String(), "\n") {
		f := strings.Fields(line)
		if len(f) >= 3 && f[1] == "master" {
			fmt.Sscan(f[2], &reloads)
			if i := strings.Index(line, "[failed:"); i >= 0 {
				fmt.Sscan(strings.TrimSuffix(strings.Fields(line[i+len("[failed:"):])[0], "]"), &failed)
			}
			return reloads, failed
		}
	}
	t.Fatalf("show proc: %q", out.String())
	return 0, 0
}

// TestContainmentRejectedLBSurvivesRestart: a load balancer HAProxy rejects
// stays at its last good version across an agent restart, still reading
// error; a deleted one stays deleted.
func TestContainmentRejectedLBSurvivesRestart(t *testing.T) {
	t.Parallel()
	s := newStack(t, pgtest.NewDatabase(t))
	s.StartAgent("node-1")
	a, b := teststack.StartBackend(t, "a"), teststack.StartBackend(t, "b")
	bad := s.newLB(10411, nil, a)
	gone := s.newLB(10412, nil, b)

	// A regex Go's RE2 accepts but HAProxy's PCRE2 (non-UTF mode) rejects.
	rule := s.Create("/v1/routing-rules", map[string]any{"listener_id": bad.Listener, "priority": 1,
		"conditions": []any{map[string]any{"field": "path", "match": "regex", "values": []string{`^/\x{100}`}}},
		"action":     map[string]any{"type": "deny"}})
	ruleID := rule["id"].(string)
	teststack.WaitFor(t, "the rule in error", 20*time.Second, func() bool {
		_, r := s.Call("GET", "/v1/routing-rules/"+ruleID, nil)
		return r["provisioning_status"] == "error"
	})
	s.MustCall(202, "DELETE", "/v1/load-balancers/"+gone.LB+"?cascade=true", nil)
	teststack.WaitFor(t, "deleted load balancer off the node", 20*time.Second, func() bool { return refused(net.JoinHostPort(gone.VIP, "10412")) })

	s.StopAgent("node-1")
	s.StartAgent("node-1")
	teststack.WaitFor(t, "the restarted agent to serve", 20*time.Second, func() bool { return !refused(net.JoinHostPort(bad.VIP, "10411")) })

	cl := teststack.NewClient(nil)
	failed := 0
	for i := 0; i < 40; i++ {
		if err := fetchFrom(cl, bad.URL, "a"); err != nil {
			failed++
			t.Logf("request %d: %v", i, err)
		}
	}
	if failed != 0 {
		t.Fatalf("%d of 40 requests to the rejected load balancer's last good version failed after the restart", failed)
	}
	if !refused(net.JoinHostPort(gone.VIP, "10412")) {
		t.Fatal("a deleted load balancer came back after the restart")
	}
	// Several reports later it still reads error.
	time.Sleep(1500 * time.Millisecond)
	_, r := s.Call("GET", "/v1/routing-rules/"+ruleID, nil)
	_, lb := s.Call("GET", "/v1/load-balancers/"+bad.LB, nil)
	if r["provisioning_status"] != "error" || r["status_message"] == "" || !showsError(lb) {
		t.Fatalf("after the restart the rejected rule should still read error: rule %v, load balancer %v", r, lb)
	}
	t.Logf("after the restart: 40 of 40 requests served by the last good version; rule %v: %v; load balancer %v/%v",
		r["provisioning_status"], r["status_message"], lb["provisioning_status"], lb["operating_status"])
}

// TestContainmentCertificateRotation: a PATCH of a certificate's key pair is
// served to new TLS handshakes within a second or so, with no failed request.
func TestContainmentCertificateRotation(t *testing.T) {
	t.Parallel()
	s := newStack(t, pgtest.NewDatabase(t))
	ag := s.StartAgent("node-1")
	a := teststack.StartBackend(t, "a")
	c1 := testcerts.New(t, testcerts.Spec{Hosts: []string{"www.example.test"}})
	c2 := testcerts.New(t, testcerts.Spec{Hosts: []string{"www.example.test"}})
	cert := s.Create("/v1/certificates", map[string]any{"certificate": c1.CertPEM, "private_key": c1.KeyPEM})["id"].(string)
	lb := s.buildLB("tls", poolSpec{Port: 10421, Members: []int{a.Port}, Listener: map[string]any{"protocol": "https", "certificate_ids": []string{cert}}})

	leaf := func() (*x509.Certificate, error) {
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 3 * time.Second}, "tcp", lb.addr(10421), &tls.Config{ServerName: "www.example.test", InsecureSkipVerify: true})
		if err != nil {
			return nil, err
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0], nil
	}
	if l, err := leaf(); err != nil || !l.Equal(c1.Cert) {
		t.Fatalf("first certificate: %v", err)
	}
	workerBefore := workerPID(t, ag.Runtime().Socket)

	cl := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true,
		TLSClientConfig: &tls.Config{ServerName: "www.example.test", InsecureSkipVerify: true}}}
	ld := startSteadyLoad(2, 2*time.Minute, func() error { return fetchFrom(cl, fmt.Sprintf("https://%s/", lb.addr(10421)), "a") })
	time.Sleep(300 * time.Millisecond)

	start := time.Now()
	s.MustCall(200, "PATCH", "/v1/certificates/"+cert, map[string]any{"certificate": c2.CertPEM, "private_key": c2.KeyPEM})
	var took time.Duration
	teststack.WaitFor(t, "the new certificate to be served", 5*time.Second, func() bool {
		l, err := leaf()
		if err == nil && l.Equal(c2.Cert) {
			took = time.Since(start)
			return true
		}
		return false
	})
	time.Sleep(500 * time.Millisecond)
	ok, failed, first := ld.stop()
	reloaded := workerPID(t, ag.Runtime().Socket) != workerBefore
	t.Logf("new certificate served %s after the PATCH (reload: %v); %d requests, %d failed", took.Round(time.Millisecond), reloaded, ok, failed)
	if failed != 0 {
		t.Fatalf("%d of %d requests failed during the rotation; first: %v", failed, ok+failed, first)
	}
	for i := 0; i < 5; i++ {
		if l, err := leaf(); err != nil || !l.Equal(c2.Cert) {
			t.Fatalf("after the rotation handshake %d: %v", i, err)
		}
	}
}

// workerPID is the pid of the worker answering the stats socket.
func workerPID(t *testing.T, sock string) string {
	t.Helper()
	c, err := net.DialTimeout("unix", sock, 3*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprint(c, "show info\n")
	var out bytes.Buffer
	_, _ = out.ReadFrom(c)
	for _, line := range strings.Split(out.String(), "\n") {
		if strings.HasPrefix(line, "Pid: ") {
			return strings.TrimPrefix(line, "Pid: ")
		}
	}
	return ""
}

// TestContainmentKeyHygiene: private keys live only in their 0600 files,
// never in snapshot.json, and the file goes when its certificate does.
func TestContainmentKeyHygiene(t *testing.T) {
	t.Parallel()
	s := newStack(t, pgtest.NewDatabase(t))
	ag := s.StartAgent("node-1")
	a := teststack.StartBackend(t, "a")
	c1 := testcerts.New(t, testcerts.Spec{Hosts: []string{"www.example.test"}})
	cert := s.Create("/v1/certificates", map[string]any{"certificate": c1.CertPEM, "private_key": c1.KeyPEM})["id"].(string)
	lb := s.buildLB("tls", poolSpec{Port: 10431, Members: []int{a.Port}, Listener: map[string]any{"protocol": "https", "certificate_ids": []string{cert}}})

	file := filepath.Join(ag.StateDir(), "certs", cert+".pem")
	fi, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("%s has mode %v", file, fi.Mode().Perm())
	}
	// snapshot.json is written a moment after the apply (the agent's
	// stateWriteEvery): the check is on the state that holds the certificate.
	var snap []byte
	teststack.WaitFor(t, "snapshot.json with the certificate", 20*time.Second, func() bool {
		snap, _ = os.ReadFile(filepath.Join(ag.StateDir(), "snapshot.json"))
		return bytes.Contains(snap, []byte(cert))
	})
	if bytes.Contains(snap, []byte("PRIVATE KEY")) {
		t.Fatal("snapshot.json holds a private key")
	}

	s.MustCall(202, "DELETE", "/v1/listeners/"+lb.Listeners[0], nil)
	teststack.WaitFor(t, "the listener off the node", 20*time.Second, func() bool { return refused(lb.addr(10431)) })
	// The listener's deletion finishes once the node acked it; until then the
	// certificate is still referred to (409).
	teststack.WaitFor(t, "the certificate to be deleted", 20*time.Second, func() bool {
		code, _ := s.Call("DELETE", "/v1/certificates/"+cert, nil)
		return code/100 == 2
	})
	// A later snapshot (any change) no longer carries it: its file goes.
	s.MustCall(200, "PATCH", "/v1/pools/"+lb.Pools[0], map[string]any{"retries": 2})
	teststack.WaitFor(t, "the key file of the deleted certificate to go", 20*time.Second, func() bool {
		_, err := os.Stat(file)
		return os.IsNotExist(err)
	})
	entries, _ := os.ReadDir(filepath.Join(ag.StateDir(), "certs"))
	for _, e := range entries {
		t.Errorf("left in certs/: %s", e.Name())
	}
}

// TestContainmentNodeErrorDisk: a state dir the agent cannot write is a node
// error of kind disk in /v1/nodes (not "config invalid"); fixing it clears it
// and the change applies. (Needs the API to store node errors.)
func TestContainmentNodeErrorDisk(t *testing.T) {
	t.Parallel()
	s := newStack(t, pgtest.NewDatabase(t))
	ag := s.StartAgent("node-1")
	a := teststack.StartBackend(t, "a")
	s.newLB(10441, nil, a)

	dir := ag.StateDir()
	unlock := makeReadOnly(t, dir)
	t.Cleanup(unlock)
	lb := s.Create("/v1/load-balancers", map[string]any{"name": "later"})["id"].(string)
	pool := s.Create("/v1/pools", map[string]any{"load_balancer_id": lb, "protocol": "http"})["id"].(string)
	s.Create("/v1/listeners", map[string]any{"load_balancer_id": lb, "protocol": "http", "port": 10442, "default_pool_id": pool})

	nodeErrors := func() []any {
		_, n := s.CallAs(s.AdminToken, "GET", "/v1/nodes/node-1", nil)
		errs, _ := n["errors"].([]any)
		return errs
	}
	var errs []any
	defer func() {
		if t.Failed() {
			_, n := s.CallAs(s.AdminToken, "GET", "/v1/nodes/node-1", nil)
			t.Logf("node: %v", n)
		}
	}()
	teststack.WaitFor(t, "a node error of kind disk", 20*time.Second, func() bool {
		errs = nodeErrors()
		for _, e := range errs {
			if e.(map[string]any)["kind"] == "disk" {
				return true
			}
		}
		return false
	})
	t.Logf("node errors with a read-only state dir: %v", errs)

	unlock()
	s.WaitActive("/v1/load-balancers/" + lb)
	teststack.WaitFor(t, "the node error to clear", 20*time.Second, func() bool { return len(nodeErrors()) == 0 })
}

// makeReadOnly makes dir refuse new files — for root too (chattr +i) — and
// returns the undo.
func makeReadOnly(t *testing.T, dir string) func() {
	t.Helper()
	if os.Geteuid() == 0 {
		if out, err := exec.Command("chattr", "+i", dir).CombinedOutput(); err != nil {
			t.Skipf("chattr +i: %v %s", err, out)
		}
		var once sync.Once
		return func() {
			once.Do(func() {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				_ = exec.CommandContext(ctx, "chattr", "-i", dir).Run()
			})
		}
	}
	if err := os.Chmod(dir, 0o500); err != nil {
		t.Fatal(err)
	}
	return func() { _ = os.Chmod(dir, 0o700) }
}
