package acceptance

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fulcrumlb/fulcrum/api"
	"github.com/fulcrumlb/fulcrum/api/store"
	"github.com/fulcrumlb/fulcrum/dataplane/agent"
	"github.com/fulcrumlb/fulcrum/internal/pgtest"
	"github.com/fulcrumlb/fulcrum/internal/secretbox"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// vipBlock hands each stack its own /24 of loopback VIPs so parallel tests
// never bind the same address.
var vipBlock atomic.Int32

// stack is a running API with one node group, tenant, tokens and agents.
type stack struct {
	t        *testing.T
	dbURL    string
	Store    *store.Store
	box      *secretbox.Box
	addr     string // API listen address, stable across restarts
	Endpoint string
	Tenant   string // tenant bearer token
	Admin    string
	NodeTok  string
	GroupID  string
	VIPRange string

	mu        sync.Mutex
	apiCancel context.CancelFunc
	apiDone   chan struct{}
	agents    map[string]*runningAgent
}

type runningAgent struct {
	Agent  *agent.Agent
	cancel context.CancelFunc
	done   chan error
	dir    string
}

func quietLogger() *slog.Logger {
	if os.Getenv("FULCRUM_TEST_VERBOSE") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// newStack starts the API on dbURL (a fresh database) with one node group.
func newStack(t *testing.T, dbURL string) *stack {
	t.Helper()
	ctx := context.Background()
	s := &stack{t: t, dbURL: dbURL, agents: map[string]*runningAgent{}}
	key, _ := secretbox.GenerateKey()
	raw, _ := secretbox.LoadKey(key)
	box, err := secretbox.New(raw)
	if err != nil {
		t.Fatal(err)
	}
	s.box = box
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.addr = ln.Addr().String()
	s.Endpoint = "http://" + s.addr
	s.startAPI(ln)
	n := vipBlock.Add(1)
	s.VIPRange = fmt.Sprintf("127.%d.%d.0/24", 100+n/250, n%250)
	err = s.Store.Write(ctx, false, func(tx *store.Tx) error {
		tn, err := api.CreateTenantTx(ctx, tx, &store.Tenant{Name: "acme", Quotas: store.DefaultQuotas})
		if err != nil {
			return err
		}
		g, err := api.CreateNodeGroupTx(ctx, tx, "default", "", nil, s.VIPRange)
		if err != nil {
			return err
		}
		s.GroupID = g.ID
		if _, s.Tenant, err = api.IssueToken(ctx, tx, store.TokenTenant, tn.ID, "", "t", "", nil); err != nil {
			return err
		}
		if _, s.Admin, err = api.IssueToken(ctx, tx, store.TokenAdmin, "", "", "a", "", nil); err != nil {
			return err
		}
		_, s.NodeTok, err = api.IssueToken(ctx, tx, store.TokenNode, "", g.ID, "n", "", nil)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.mu.Lock()
		names := make([]string, 0, len(s.agents))
		for n := range s.agents {
			names = append(names, n)
		}
		s.mu.Unlock()
		for _, n := range names {
			s.stopAgent(n)
		}
		s.stopAPI()
	})
	return s
}

// startAPI serves the API on ln (nil: listen again on the same address).
func (s *stack) startAPI(ln net.Listener) {
	s.t.Helper()
	ctx := context.Background()
	var err error
	if ln == nil {
		for i := 0; i < 50; i++ { // the port may linger briefly after a stop
			if ln, err = net.Listen("tcp", s.addr); err == nil {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if err != nil {
			s.t.Fatal(err)
		}
	}
	st, err := store.Open(ctx, s.dbURL)
	if err != nil {
		s.t.Fatal(err)
	}
	if _, err := store.Migrate(ctx, st.Pool); err != nil {
		s.t.Fatal(err)
	}
	srv, err := api.New(api.Config{ShutdownTimeout: 5 * time.Second}, st, s.box, quietLogger(), nil)
	if err != nil {
		s.t.Fatal(err)
	}
	actx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(actx, ln)
		st.Close()
	}()
	s.mu.Lock()
	s.Store, s.apiCancel, s.apiDone = st, cancel, done
	s.mu.Unlock()
}

func (s *stack) stopAPI() {
	s.mu.Lock()
	cancel, done := s.apiCancel, s.apiDone
	s.apiCancel = nil
	s.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
}

// startAgent runs an agent named name with its own HAProxy; its state
// directory survives stopAgent so a restart serves the last snapshot.
func (s *stack) startAgent(name string) *agent.Agent {
	s.t.Helper()
	s.mu.Lock()
	dir := filepath.Join(os.TempDir(), "fulcrum-acceptance", strings.ReplaceAll(s.t.Name(), "/", "_"), name)
	if old, ok := s.agents[name]; ok {
		dir = old.dir
	}
	s.mu.Unlock()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		s.t.Fatal(err)
	}
	a, err := agent.New(agent.Config{Endpoint: s.Endpoint, Token: s.NodeTok, NodeName: name, StateDir: dir,
		PollWait: 5 * time.Second, ReportInterval: 300 * time.Millisecond, HardStopAfter: 5 * time.Second,
		Logger: quietLogger(), HTTPClient: &http.Client{Timeout: 10 * time.Second}})
	if err != nil {
		s.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ra := &runningAgent{Agent: a, cancel: cancel, done: make(chan error, 1), dir: dir}
	go func() { ra.done <- a.Run(ctx) }()
	s.mu.Lock()
	s.agents[name] = ra
	s.mu.Unlock()
	s.t.Cleanup(func() {
		if s.t.Failed() {
			cfg, _ := os.ReadFile(filepath.Join(dir, "haproxy.cfg"))
			s.t.Logf("agent %s haproxy.cfg:\n%s", name, cfg)
			if out, err := a.Runtime().Command(context.Background(), "show servers state"); err == nil {
				s.t.Logf("agent %s servers state:\n%s", name, out)
			}
		}
		os.RemoveAll(dir)
	})
	return a
}

func (s *stack) stopAgent(name string) {
	s.mu.Lock()
	ra := s.agents[name]
	s.mu.Unlock()
	if ra == nil || ra.cancel == nil {
		return
	}
	ra.cancel()
	select {
	case <-ra.done:
	case <-time.After(20 * time.Second):
		s.t.Errorf("agent %s did not stop", name)
	}
	ra.cancel = nil
}

// call sends a request to the API with the tenant token and decodes the answer.
func (s *stack) call(method, path string, body any) (int, map[string]any) {
	s.t.Helper()
	return s.callAs(s.Tenant, method, path, body)
}

// callAs sends a request with token.
func (s *stack) callAs(token, method, path string, body any) (int, map[string]any) {
	s.t.Helper()
	var r io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, s.Endpoint+path, r)
	req.Header.Set("Authorization", "Bearer "+token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	var out map[string]any
	_ = json.Unmarshal(raw, &out)
	if out == nil {
		out = map[string]any{"_raw": string(raw)}
	}
	return res.StatusCode, out
}

func (s *stack) mustCall(want int, method, path string, body any) map[string]any {
	s.t.Helper()
	code, out := s.call(method, path, body)
	if code != want {
		s.t.Fatalf("%s %s: %d, want %d: %v", method, path, code, want, out)
	}
	return out
}

func (s *stack) create(path string, body any) map[string]any {
	s.t.Helper()
	return s.mustCall(http.StatusCreated, http.MethodPost, path, body)
}

// waitFor polls cond every 50ms until it holds or the bound passes.
func waitFor(t *testing.T, what string, bound time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(bound)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("timed out after %s waiting for %s", bound, what)
}

// waitActive waits until the object's provisioning_status is active.
func (s *stack) waitActive(path string) map[string]any {
	s.t.Helper()
	var last map[string]any
	waitFor(s.t, path+" active", 20*time.Second, func() bool {
		_, last = s.call(http.MethodGet, path, nil)
		return last["provisioning_status"] == "active"
	})
	return last
}

// backend is an HTTP server on loopback answering with its name.
type backend struct {
	Name string
	Port int
	srv  *http.Server
	ln   net.Listener
	hits atomic.Int64
}

func startBackend(t *testing.T, name string) *backend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &backend{Name: name, Port: ln.Addr().(*net.TCPAddr).Port, ln: ln}
	b.serve(ln)
	t.Cleanup(b.Stop)
	return b
}

func (b *backend) serve(ln net.Listener) {
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		b.hits.Add(1)
		w.Header().Set("X-Backend", b.Name)
		fmt.Fprintf(w, "%s\n", b.Name)
	})
	b.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go b.srv.Serve(ln) //nolint:errcheck
}

// Stop closes the backend (connections refused afterwards).
func (b *backend) Stop() { _ = b.srv.Close() }

// Restart serves again on the same port.
func (b *backend) Restart(t *testing.T) {
	t.Helper()
	var ln net.Listener
	var err error
	for i := 0; i < 50; i++ {
		if ln, err = net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", b.Port)); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	b.serve(ln)
}

// client makes fresh connections for every request so balancing is visible.
func newClient(jar http.CookieJar) *http.Client {
	return &http.Client{Timeout: 5 * time.Second, Jar: jar, Transport: &http.Transport{DisableKeepAlives: true}}
}

// fetch GETs url and returns the body's first line (the backend's name).
func fetch(c *http.Client, url string) (string, error) {
	res, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusOK {
		return "", fmt.Errorf("status %d: %s", res.StatusCode, b)
	}
	return strings.TrimSpace(string(b)), nil
}

// distribution sends n requests and counts answers per backend.
func distribution(t *testing.T, c *http.Client, url string, n int) map[string]int {
	t.Helper()
	out := map[string]int{}
	for i := 0; i < n; i++ {
		name, err := fetch(c, url)
		if err != nil {
			t.Fatalf("request %d to %s: %v", i, url, err)
		}
		out[name]++
	}
	return out
}

var errNotYet = errors.New("not yet")
