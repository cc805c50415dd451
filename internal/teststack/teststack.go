// Package teststack runs a whole Fulcrum stack inside a test process: a
// Postgres database (a fresh one from internal/pgtest unless the test brings
// its own), the API on a loopback port, a node group with its own loopback VIP
// range, a tenant, tokens, and agents each supervising a real HAProxy. The API
// can be stopped and started again on the same address, an agent on the same
// state directory.
//
// Imports: only tests import it (and provider/internal/acctest, which only
// tests import): no program depends on a test stack. internal/importrules
// enforces this.
package teststack

import (
	"bytes"
	"context"
	"encoding/json"
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
	"syscall"
	"testing"
	"time"

	"github.com/fulcrumlb/fulcrum/api"
	"github.com/fulcrumlb/fulcrum/api/store"
	"github.com/fulcrumlb/fulcrum/dataplane/agent"
	"github.com/fulcrumlb/fulcrum/internal/pgtest"
	"github.com/fulcrumlb/fulcrum/internal/secretbox"
	"github.com/fulcrumlb/fulcrum/internal/telemetry"
	"github.com/fulcrumlb/fulcrum/internal/testenv"
)

// DefaultVIPBase is the second octet of the VIP blocks of stacks whose
// Options leave VIPBase out: 127.200.0.0 upwards. Test binaries run at the same
// time under `go test ./...` and each numbers its blocks from zero, so each
// package sharing this package needs a base of its own: the acceptance tests
// use 127.100 upwards.
const DefaultVIPBase = 200

// vipBlocks is the next free /24 of VIPs in this process, counted from the
// stacks' base.
var vipBlocks atomic.Int32

// Options configure Start. The zero value runs on a fresh database with the
// default quotas, a /24 of VIPs from DefaultVIPBase and agents long-polling
// for 10s.
type Options struct {
	// DatabaseURL is the database to run on (migrated at every start of the
	// API); "" for a fresh one from internal/pgtest.
	DatabaseURL string
	// Quotas are the tenant's; zero for store.DefaultQuotas.
	Quotas store.Quotas
	// Store are the API's store options (store.OpenWith).
	Store store.Options
	// RateLimits are the API's (api.Config); nil for the defaults.
	RateLimits map[string]api.RateLimit
	// VIPBase is the second octet where this process's VIP blocks start; 0
	// for DefaultVIPBase.
	VIPBase int
	// VIPPrefixLen is the length of the node group's VIP prefix, 16 to 24; 0
	// for 24 (254 VIPs).
	VIPPrefixLen int
	// PollWait is the agents' long-poll wait; 0 for 10s. Their HTTP client
	// times out after twice as long.
	PollWait time.Duration
	// ListenAddr is where the API listens; "" for 127.0.0.1 on a free port.
	// Network-namespace tests use an address of their bridge.
	ListenAddr string
	// HAProxy is the haproxy binary the API checks dry runs with (a path or
	// a name on PATH, as `fulcrum api -haproxy`); "" for none: dry runs are
	// then not checked with haproxy -c.
	HAProxy string
	// Telemetry instruments the API (server spans, metrics endpoint); nil for
	// none. The test owns it: Start neither installs nor shuts it down.
	Telemetry *telemetry.Telemetry
	// AgentConfig, when set, adjusts each agent's configuration before
	// StartAgent starts it (e.g. its access log outputs).
	AgentConfig func(*agent.Config)
}

// Stack is a running control plane with one tenant and node group.
type Stack struct {
	tb          testing.TB
	opts        Options
	box         *secretbox.Box
	addr        string // the API's listen address, the same across restarts
	client      *http.Client
	Endpoint    string
	Store       *store.Store // the running API's; replaced by StartAPI
	TenantID    string
	TenantToken string
	AdminToken  string
	NodeToken   string
	NodeGroupID string
	VIPRange    string

	mu        sync.Mutex
	apiCancel context.CancelFunc
	apiDone   chan struct{}
	agents    map[string]*runningAgent
}

type runningAgent struct {
	agent  *agent.Agent
	cancel context.CancelFunc // nil once stopped
	done   chan error
	dir    string
}

// Logger is quiet unless FULCRUM_TEST_VERBOSE is set.
func Logger() *slog.Logger {
	if os.Getenv("FULCRUM_TEST_VERBOSE") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// Start runs the API on the database of o with a tenant, a node group and
// tokens; call StartAgent for a dataplane. Everything stops when the test ends.
func Start(tb testing.TB, o Options) *Stack {
	tb.Helper()
	if o.DatabaseURL == "" {
		o.DatabaseURL = pgtest.NewDatabase(tb)
	}
	if o.Quotas == (store.Quotas{}) {
		o.Quotas = store.DefaultQuotas
	}
	if o.VIPBase == 0 {
		o.VIPBase = DefaultVIPBase
	}
	if o.VIPPrefixLen == 0 {
		o.VIPPrefixLen = 24
	}
	if o.VIPPrefixLen < 16 || o.VIPPrefixLen > 24 {
		tb.Fatalf("teststack.Start: VIPPrefixLen %d is not within 16 to 24", o.VIPPrefixLen)
	}
	if o.PollWait == 0 {
		o.PollWait = 10 * time.Second
	}
	ctx := context.Background()
	key, _ := secretbox.GenerateKey()
	raw, _ := secretbox.LoadKey(key)
	box, err := secretbox.New(raw)
	if err != nil {
		tb.Fatal(err)
	}
	if o.ListenAddr == "" {
		o.ListenAddr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", o.ListenAddr)
	if err != nil {
		tb.Fatal(err)
	}
	s := &Stack{tb: tb, opts: o, box: box, addr: ln.Addr().String(), client: &http.Client{Timeout: 30 * time.Second},
		agents: map[string]*runningAgent{}, VIPRange: vipRange(o.VIPBase, o.VIPPrefixLen)}
	s.Endpoint = "http://" + s.addr
	// Registered first, so it runs after every agent's cleanup.
	tb.Cleanup(s.StopAPI)
	s.startAPI(ln)
	err = s.Store.Write(ctx, false, func(tx *store.Tx) error {
		tn, err := api.CreateTenantTx(ctx, tx, &store.Tenant{Name: "acme", Quotas: o.Quotas})
		if err != nil {
			return err
		}
		s.TenantID = tn.ID
		g, err := api.CreateNodeGroupTx(ctx, tx, "default", "", nil, s.VIPRange)
		if err != nil {
			return err
		}
		s.NodeGroupID = g.ID
		if _, s.TenantToken, err = api.IssueToken(ctx, tx, store.TokenTenant, tn.ID, "", "tenant", "", nil); err != nil {
			return err
		}
		if _, s.AdminToken, err = api.IssueToken(ctx, tx, store.TokenAdmin, "", "", "admin", "", nil); err != nil {
			return err
		}
		_, s.NodeToken, err = api.IssueToken(ctx, tx, store.TokenNode, "", g.ID, "node", "", nil)
		return err
	})
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// vipRange takes the next free block of 2^(24-prefixLen) /24s, aligned to
// its size, and returns it as a prefix of 127.base.0.0 upwards. Test binaries
// run at the same time under `go test ./...`, so a block is also claimed with
// an flock on a file named for it, held until the process exits: two processes
// never serve the same VIPs (HAProxy's SO_REUSEPORT would let both bind them).
func vipRange(base, prefixLen int) string {
	size := int32(1) << (24 - prefixLen)
	for {
		next := vipBlocks.Load()
		first := (next + size - 1) / size * size
		if !vipBlocks.CompareAndSwap(next, first+size) {
			continue
		}
		cidr := fmt.Sprintf("127.%d.%d.0/%d", base+int(first/256), first%256, prefixLen)
		// Each /24 of the block is claimed, so that blocks of different
		// sizes in different processes (a /22 here, a /24 there) never
		// overlap either.
		var held []*os.File
		ok := true
		for i := int32(0); i < size && ok; i++ {
			var f *os.File
			if f, ok = claimBlock(fmt.Sprintf("127.%d.%d.0/24", base+int((first+i)/256), (first+i)%256)); f != nil {
				held = append(held, f)
			}
		}
		if ok {
			claimedMu.Lock()
			claimed = append(claimed, held...)
			claimedMu.Unlock()
			return cidr
		}
		for _, f := range held {
			f.Close() // releases its lock
		}
	}
}

// claimed keeps the lock files of this process's VIP blocks open.
var (
	claimedMu sync.Mutex
	claimed   []*os.File
)

// claimBlock locks the file named for cidr: ok when this process holds it
// (f, to keep open) or no locking is possible (nil f).
func claimBlock(cidr string) (f *os.File, ok bool) {
	dir := filepath.Join(os.TempDir(), "fulcrum-test-vips")
	if err := os.MkdirAll(dir, 0o777); err != nil {
		return nil, true // no locking possible: fall back to this process's numbering
	}
	f, err := os.OpenFile(filepath.Join(dir, strings.NewReplacer(".", "_", "/", "-").Replace(cidr)), os.O_CREATE|os.O_RDWR, 0o666)
	if err != nil {
		return nil, true
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, false
	}
	return f, true
}

// StartAPI serves the API again on the same address after StopAPI.
func (s *Stack) StartAPI() {
	s.tb.Helper()
	var ln net.Listener
	var err error
	for i := 0; i < 50; i++ { // the port may linger briefly after a stop
		if ln, err = net.Listen("tcp", s.addr); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		s.tb.Fatal(err)
	}
	s.startAPI(ln)
}

// startAPI opens the store, migrates it and serves the API on ln.
func (s *Stack) startAPI(ln net.Listener) {
	s.tb.Helper()
	ctx := context.Background()
	st, err := store.OpenWith(ctx, s.opts.DatabaseURL, s.opts.Store)
	if err != nil {
		ln.Close()
		s.tb.Fatal(err)
	}
	if _, err := st.Migrate(ctx); err != nil {
		ln.Close()
		st.Close()
		s.tb.Fatal(err)
	}
	srv, err := api.New(api.Config{ShutdownTimeout: 5 * time.Second, HAProxy: s.opts.HAProxy, RateLimits: s.opts.RateLimits}, st, s.box, Logger(), s.opts.Telemetry)
	if err != nil {
		ln.Close()
		st.Close()
		s.tb.Fatal(err)
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

// StopAPI shuts the API down and closes its store; agents keep running.
func (s *Stack) StopAPI() {
	s.mu.Lock()
	cancel, done := s.apiCancel, s.apiDone
	s.apiCancel = nil
	s.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
}

// StartAgent runs an agent named name with its own HAProxy until StopAgent
// or the end of the test. Its state directory survives StopAgent: started
// again, the agent serves the last snapshot it applied. When the test has
// failed, its end logs each agent's haproxy.cfg and HAProxy's server state.
func (s *Stack) StartAgent(name string) *agent.Agent {
	s.tb.Helper()
	testenv.RequireHAProxy(s.tb) // fails, saying what to install, when there is none
	s.mu.Lock()
	ra := s.agents[name]
	s.mu.Unlock()
	if ra != nil && ra.cancel != nil {
		s.tb.Fatalf("agent %s is already running", name)
	}
	first := ra == nil
	var dir string
	if first {
		var err error
		if dir, err = os.MkdirTemp("", "fulcrum-agent-"+name+"-"); err != nil {
			s.tb.Fatal(err)
		}
	} else {
		dir = ra.dir
	}
	cfg := agent.Config{Endpoint: s.Endpoint, Token: s.NodeToken, NodeName: name, StateDir: dir,
		PollWait: s.opts.PollWait, ReportInterval: 300 * time.Millisecond, HardStopAfter: 5 * time.Second,
		Logger: Logger(), HTTPClient: &http.Client{Timeout: 2 * s.opts.PollWait}, StopHAProxyOnExit: true}
	if s.opts.AgentConfig != nil {
		s.opts.AgentConfig(&cfg)
	}
	a, err := agent.New(cfg)
	if err != nil {
		if first {
			os.RemoveAll(dir)
		}
		s.tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ra = &runningAgent{agent: a, cancel: cancel, done: make(chan error, 1), dir: dir}
	go func() { ra.done <- a.Run(ctx) }()
	s.mu.Lock()
	s.agents[name] = ra
	s.mu.Unlock()
	if first {
		s.tb.Cleanup(func() {
			if s.tb.Failed() {
				s.dumpAgent(name)
			}
			s.StopAgent(name)
			os.RemoveAll(dir)
		})
	}
	return a
}

// dumpAgent logs the agent's haproxy.cfg and, if it runs, its servers' state.
func (s *Stack) dumpAgent(name string) {
	s.mu.Lock()
	ra := s.agents[name]
	s.mu.Unlock()
	cfg, _ := os.ReadFile(filepath.Join(ra.dir, "haproxy.cfg"))
	s.tb.Logf("agent %s haproxy.cfg:\n%s", name, cfg)
	if ra.cancel == nil {
		return
	}
	if out, err := ra.agent.Runtime().Command(context.Background(), "show servers state"); err == nil {
		s.tb.Logf("agent %s servers state:\n%s", name, out)
	}
}

// StopAgent stops the agent named name and its HAProxy, keeping its state
// directory for StartAgent.
func (s *Stack) StopAgent(name string) {
	s.mu.Lock()
	ra := s.agents[name]
	var cancel context.CancelFunc
	if ra != nil {
		cancel, ra.cancel = ra.cancel, nil
	}
	s.mu.Unlock()
	if cancel == nil {
		return
	}
	cancel()
	select {
	case <-ra.done:
	case <-time.After(20 * time.Second):
		s.tb.Errorf("agent %s did not stop", name)
	}
}

// Call sends a request to the API with the tenant token and decodes the
// answer's JSON object (a body that is not one reads as {"_raw": body}).
func (s *Stack) Call(method, path string, body any) (int, map[string]any) {
	s.tb.Helper()
	return s.CallAs(s.TenantToken, method, path, body)
}

// CallAs is Call with token.
func (s *Stack) CallAs(token, method, path string, body any) (int, map[string]any) {
	s.tb.Helper()
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
	res, err := s.client.Do(req)
	if err != nil {
		s.tb.Fatalf("%s %s: %v", method, path, err)
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

// MustCall is Call failing the test unless the status is want.
func (s *Stack) MustCall(want int, method, path string, body any) map[string]any {
	s.tb.Helper()
	code, out := s.Call(method, path, body)
	if code != want {
		s.tb.Fatalf("%s %s: %d, want %d: %v", method, path, code, want, out)
	}
	return out
}

// Create POSTs body to path with the tenant token and wants 201.
func (s *Stack) Create(path string, body any) map[string]any {
	s.tb.Helper()
	return s.MustCall(http.StatusCreated, http.MethodPost, path, body)
}

// Active GETs the object at path and reports whether its
// provisioning_status is active.
func (s *Stack) Active(path string) (map[string]any, bool) {
	s.tb.Helper()
	_, obj := s.Call(http.MethodGet, path, nil)
	return obj, obj["provisioning_status"] == "active"
}

// WaitActive waits up to 20s until the object at path is active and returns it.
func (s *Stack) WaitActive(path string) map[string]any {
	s.tb.Helper()
	var last map[string]any
	WaitFor(s.tb, path+" active", 20*time.Second, func() bool {
		var ok bool
		last, ok = s.Active(path)
		return ok
	})
	return last
}

// WaitFor polls cond every 50ms until it holds, failing the test once bound
// has passed.
func WaitFor(tb testing.TB, what string, bound time.Duration, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(bound)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	tb.Fatalf("timed out after %s waiting for %s", bound, what)
}

// Server is an HTTP server on a loopback port that can stop and start again
// on the same port.
type Server struct {
	Port    int
	handler http.Handler
	mu      sync.Mutex
	srv     *http.Server
}

// StartServer serves h on 127.0.0.1 until Stop or the end of the test.
func StartServer(tb testing.TB, h http.Handler) *Server {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	s := &Server{Port: ln.Addr().(*net.TCPAddr).Port, handler: h}
	s.serve(ln)
	tb.Cleanup(s.Stop)
	return s
}

func (s *Server) serve(ln net.Listener) {
	srv := &http.Server{Handler: s.handler, ReadHeaderTimeout: 5 * time.Second}
	s.mu.Lock()
	s.srv = srv
	s.mu.Unlock()
	go srv.Serve(ln) //nolint:errcheck
}

// Stop closes the server: connections are refused afterwards.
func (s *Server) Stop() {
	s.mu.Lock()
	srv := s.srv
	s.mu.Unlock()
	_ = srv.Close()
}

// Restart serves again on the same port after Stop.
func (s *Server) Restart(tb testing.TB) {
	tb.Helper()
	var ln net.Listener
	var err error
	for i := 0; i < 50; i++ {
		if ln, err = net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", s.Port)); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		tb.Fatal(err)
	}
	s.serve(ln)
}

// Backend is a Server answering every request with its name (body and
// X-Backend header).
type Backend struct {
	*Server
	Name string
	Hits atomic.Int64
}

// StartBackend serves until Stop or the end of the test.
func StartBackend(tb testing.TB, name string) *Backend {
	tb.Helper()
	b := &Backend{Name: name}
	b.Server = StartServer(tb, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.Hits.Add(1)
		w.Header().Set("X-Backend", b.Name)
		fmt.Fprintf(w, "%s\n", b.Name)
	}))
	return b
}

// NewClient makes a fresh connection for every request, so balancing shows.
func NewClient(jar http.CookieJar) *http.Client {
	return &http.Client{Timeout: 5 * time.Second, Jar: jar, Transport: &http.Transport{DisableKeepAlives: true}}
}

// Fetch GETs url with c and returns the trimmed body of a 200 (a backend's
// name); other statuses are errors.
func Fetch(c *http.Client, url string) (string, error) {
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

// Get is Fetch on a fresh connection.
func Get(url string) (string, error) { return Fetch(NewClient(nil), url) }

// WriteFile is a helper for tests writing config files.
func WriteFile(tb testing.TB, dir, name, content string) string {
	tb.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		tb.Fatal(err)
	}
	return p
}
