package acceptance

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/fulcrumlb/fulcrum/internal/pgtest"
	"github.com/fulcrumlb/fulcrum/internal/secretbox"
	"github.com/fulcrumlb/fulcrum/internal/teststack"
)

// replicaPollWait is the agents' long-poll wait in TestHAAPIReplicas: long,
// so an apply well within it was woken by the write (through Postgres
// NOTIFY to the replica the agent waits on), not by its poll running out.
const replicaPollWait = 60 * time.Second

// TestHAAPIReplicas runs three API replicas on one Postgres: A (in this
// process, the agent long-polls it) and B and C (`fulcrum api` processes).
// Writes through B and C wake the agent attached to A: each write is applied
// long before the agent's poll would have ended by itself, and traffic flows.
// The latency from each write's answer to the agent's apply is printed.
func TestHAAPIReplicas(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDatabase(t)
	// Not startStack: that sets the acceptance tests' short poll wait.
	a := &stack{Stack: teststack.Start(t, teststack.Options{DatabaseURL: db, VIPBase: vipBase, PollWait: replicaPollWait}), t: t}
	b, c := startAPIReplica(t, db), startAPIReplica(t, db)
	ag := a.StartAgent("replica-node")
	teststack.WaitFor(t, "the agent to apply its first snapshot", 30*time.Second, func() bool { return ag.AppliedRevision() > 0 })
	be := teststack.StartBackend(t, "be")

	var lat []time.Duration
	// write sends one write through endpoint and waits for the agent to
	// apply a newer revision than it had; it returns the answer's body.
	write := func(via, endpoint, method, path string, body any) map[string]any {
		t.Helper()
		before := ag.AppliedRevision()
		code, out := callAt(t, endpoint, a.TenantToken, method, path, body)
		if code/100 != 2 {
			t.Fatalf("%s %s through %s: %d %v", method, path, via, code, out)
		}
		at := time.Now()
		teststack.WaitFor(t, "the agent (on replica A) to apply a write through "+via, replicaPollWait, func() bool { return ag.AppliedRevision() > before })
		d := time.Since(at)
		lat = append(lat, d)
		t.Logf("%s %s through %s: applied by the agent on A after %s", method, path, via, d.Round(time.Millisecond))
		if d > replicaPollWait/2 {
			t.Errorf("a write through %s took %s to reach the agent on A: its poll was not woken", via, d)
		}
		return out
	}
	lb := write("B", b, http.MethodPost, "/v1/load-balancers", map[string]any{"name": "replicas"})
	lbID, vip := lb["id"].(string), lb["vip_address"].(string)
	pool := write("C", c, http.MethodPost, "/v1/pools", map[string]any{"load_balancer_id": lbID, "protocol": "http"})["id"].(string)
	write("B", b, http.MethodPost, "/v1/members", map[string]any{"pool_id": pool, "address": "127.0.0.1", "port": be.Port})
	lsn := write("C", c, http.MethodPost, "/v1/listeners", map[string]any{"load_balancer_id": lbID, "protocol": "http", "port": 8090,
		"default_pool_id": pool})["id"].(string)
	a.WaitActive("/v1/listeners/" + lsn)
	if got, err := teststack.Get(fmt.Sprintf("http://%s:8090/", vip)); err != nil || got != "be" {
		t.Fatalf("traffic through the LB written via B and C: %q, %v", got, err)
	}
	// A change read back through the other replicas agrees.
	write("B", b, http.MethodPatch, "/v1/listeners/"+lsn, map[string]any{"description": "via B"})
	for _, ep := range []string{a.Endpoint, c} {
		if code, out := callAt(t, ep, a.TenantToken, http.MethodGet, "/v1/listeners/"+lsn, nil); code != http.StatusOK || out["description"] != "via B" {
			t.Fatalf("listener read through %s: %d %v", ep, code, out)
		}
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	line := fmt.Sprintf("api_replicas: writes=%d apply_ms_p50=%d apply_ms_max=%d poll_wait_ms=%d", len(lat),
		lat[len(lat)/2].Milliseconds(), lat[len(lat)-1].Milliseconds(), replicaPollWait.Milliseconds())
	t.Log(line)
	fmt.Println(line)
}

// startAPIReplica runs `fulcrum api` on db on a free loopback port until the
// test ends and returns its endpoint once it is ready. Its secret key is its
// own (no certificate is written here).
func startAPIReplica(t *testing.T, db string) string {
	t.Helper()
	bin := teststack.FulcrumBinary(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	key, err := secretbox.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(t.TempDir(), "api.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "api", "--addr", addr, "--log-level", "debug")
	cmd.Env = append(os.Environ(), "FULCRUM_DATABASE_URL="+db, "FULCRUM_SECRET_KEY="+key)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			if len(b) > 4000 {
				b = b[len(b)-4000:]
			}
			t.Logf("---- API replica %s log (tail):\n%s", addr, b)
		}
		logf.Close()
	})
	endpoint := "http://" + addr
	teststack.WaitFor(t, "API replica "+addr+" ready", 30*time.Second, func() bool {
		select {
		case <-done:
			t.Fatalf("API replica %s exited", addr)
		default:
		}
		res, err := http.Get(endpoint + "/readyz")
		if err != nil {
			return false
		}
		res.Body.Close()
		return res.StatusCode == http.StatusOK
	})
	return endpoint
}

// callAt sends a JSON request to an API endpoint with token.
func callAt(t *testing.T, endpoint, token, method, path string, body any) (int, map[string]any) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, endpoint+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("%s %s at %s: %v", method, path, endpoint, err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	out := map[string]any{}
	if len(strings.TrimSpace(string(raw))) > 0 {
		_ = json.Unmarshal(raw, &out)
	}
	return res.StatusCode, out
}
