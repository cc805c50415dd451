// Package teststack runs a whole Fulcrum stack inside a test process: a fresh
// Postgres database (internal/pgtest), the API on a loopback port, a node group
// with its own loopback VIP range, tokens, and agents each supervising a real
// HAProxy. Only tests import it.
package teststack

import (
	"context"
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

// vipBlock hands each stack its own /24 of loopback VIPs (127.200.0.0 upwards,
// clear of the acceptance package's) so parallel stacks never collide.
var vipBlock atomic.Int32

// Stack is a running control plane with one tenant and node group.
type Stack struct {
	tb          testing.TB
	Endpoint    string
	Store       *store.Store
	TenantID    string
	TenantToken string
	AdminToken  string
	NodeToken   string
	NodeGroupID string
	VIPRange    string

	cancel context.CancelFunc
	done   chan struct{}
	mu     sync.Mutex
	agents []*agent.Agent
}

// Logger is quiet unless FULCRUM_TEST_VERBOSE is set.
func Logger() *slog.Logger {
	if os.Getenv("FULCRUM_TEST_VERBOSE") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// Start runs the API on a fresh database; call StartAgent for a dataplane.
func Start(tb testing.TB) *Stack {
	tb.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, pgtest.NewDatabase(tb))
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := store.Migrate(ctx, st.Pool); err != nil {
		tb.Fatal(err)
	}
	key, _ := secretbox.GenerateKey()
	raw, _ := secretbox.LoadKey(key)
	box, err := secretbox.New(raw)
	if err != nil {
		tb.Fatal(err)
	}
	srv, err := api.New(api.Config{ShutdownTimeout: 5 * time.Second}, st, box, Logger(), nil)
	if err != nil {
		tb.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	s := &Stack{tb: tb, Endpoint: "http://" + ln.Addr().String(), Store: st, done: make(chan struct{})}
	actx, cancel := context.WithCancel(ctx)
	s.cancel = cancel
	go func() {
		defer close(s.done)
		_ = srv.Serve(actx, ln)
	}()
	n := vipBlock.Add(1)
	s.VIPRange = fmt.Sprintf("127.%d.%d.0/24", 200+n/250, n%250)
	err = st.Write(ctx, false, func(tx *store.Tx) error {
		tn, err := api.CreateTenantTx(ctx, tx, &store.Tenant{Name: "acme", Quotas: store.DefaultQuotas})
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
	tb.Cleanup(func() {
		cancel()
		<-s.done
		st.Close()
	})
	return s
}

// StartAgent runs an agent with its own HAProxy until the test ends.
func (s *Stack) StartAgent(name string) *agent.Agent {
	s.tb.Helper()
	dir, err := os.MkdirTemp("", "fulcrum-agent-"+name+"-")
	if err != nil {
		s.tb.Fatal(err)
	}
	a, err := agent.New(agent.Config{Endpoint: s.Endpoint, Token: s.NodeToken, NodeName: name, StateDir: dir,
		PollWait: 10 * time.Second, ReportInterval: 300 * time.Millisecond, HardStopAfter: 5 * time.Second,
		Logger: Logger(), HTTPClient: &http.Client{Timeout: 20 * time.Second}})
	if err != nil {
		s.tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	s.tb.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			s.tb.Errorf("agent %s did not stop", name)
		}
		os.RemoveAll(dir)
	})
	s.mu.Lock()
	s.agents = append(s.agents, a)
	s.mu.Unlock()
	return a
}

// Backend is an HTTP server on loopback answering with its name.
type Backend struct {
	Name string
	Port int
	Hits atomic.Int64
}

// StartBackend serves until the test ends.
func StartBackend(tb testing.TB, name string) *Backend {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	b := &Backend{Name: name, Port: ln.Addr().(*net.TCPAddr).Port}
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.Hits.Add(1)
		fmt.Fprintf(w, "%s\n", b.Name)
	})}
	go srv.Serve(ln) //nolint:errcheck
	tb.Cleanup(func() { _ = srv.Close() })
	return b
}

// Get fetches url on a fresh connection and returns the trimmed body.
func Get(url string) (string, error) {
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
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

// WriteFile is a helper for tests writing config files.
func WriteFile(tb testing.TB, dir, name, content string) string {
	tb.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		tb.Fatal(err)
	}
	return p
}
