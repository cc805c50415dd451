package acceptance

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fulcrumlb/fulcrum/internal/teststack"
)

const (
	// reloadBenchClients keep-alive connections send requests back to back.
	reloadBenchClients = 8
	// reloadBenchReloads reloads are made per phase.
	reloadBenchReloads = 10
	// reloadBenchSettle is the pause after each reload, so one reload's
	// errors are counted before the next starts.
	reloadBenchSettle = 300 * time.Millisecond
)

// BenchmarkReloadKeepAlive counts the client errors a reload costs under
// keep-alive load, as wrk counts them: each client holds one connection and
// sends requests back to back on it; a request whose response cannot be read
// (the connection closed under it) or that is not a 200 is an error, and the
// client reconnects. Unlike net/http, which retries an idempotent request on a
// reused connection that closed, nothing is retried.
//
// Two phases of reloadBenchReloads reloads each: the agent's (a listener
// created on another load balancer forces a reload) and a hand reload of the
// same configuration through the master CLI (haproxy.Process.Reload, the path
// the agent uses, with no render and no check). The figure is errors per
// reload; the target (issue 10) is none, and never more than a hand reload.
func BenchmarkReloadKeepAlive(b *testing.B) {
	s := startStack(b, teststack.Options{Quotas: benchQuotas})
	const node = "bench-reload"
	ag := s.StartAgent(node)
	benchWait(b, "the agent's first snapshot", func() bool { return ag.AppliedRevision() > 0 })
	be := teststack.StartBackend(b, "a")
	lb := s.Create("/v1/load-balancers", map[string]any{"name": "served"})
	pool := s.Create("/v1/pools", map[string]any{"load_balancer_id": lb["id"], "protocol": "http"})
	s.Create("/v1/members", map[string]any{"pool_id": pool["id"], "address": "127.0.0.1", "port": be.Port})
	l := s.Create("/v1/listeners", map[string]any{"load_balancer_id": lb["id"], "protocol": "http", "port": benchPort,
		"default_pool_id": pool["id"]})
	s.benchWaitActive("/v1/listeners/" + l["id"].(string))
	other := s.Create("/v1/load-balancers", map[string]any{"name": "reloaded"})
	s.benchWaitActive("/v1/load-balancers/" + other["id"].(string))
	addr := fmt.Sprintf("%s:%d", lb["vip_address"], benchPort)

	load := startKeepAliveLoad(b, addr, reloadBenchClients)
	defer load.stop()
	benchWait(b, "keep-alive traffic", func() bool { return load.ok.Load() > 100 })

	var agentErrs, handErrs, agentOK, handOK int64
	for b.Loop() {
		// The agent's reloads: each new listener is a reload.
		e0, ok0 := load.errs.Load(), load.ok.Load()
		for i := range reloadBenchReloads {
			nl := s.Create("/v1/listeners", map[string]any{"load_balancer_id": other["id"], "protocol": "tcp",
				"port": 9000 + i})
			s.benchWaitActive("/v1/listeners/" + nl["id"].(string))
			time.Sleep(reloadBenchSettle)
			s.MustCall(http.StatusAccepted, http.MethodDelete, "/v1/listeners/"+nl["id"].(string), nil)
			benchWait(b, "the listener's delete", func() bool {
				code, _ := s.Call(http.MethodGet, "/v1/listeners/"+nl["id"].(string), nil)
				return code == http.StatusNotFound
			})
			time.Sleep(reloadBenchSettle)
		}
		agentErrs += load.errs.Load() - e0
		agentOK += load.ok.Load() - ok0

		// Hand reloads of the configuration the agent last wrote.
		e0, ok0 = load.errs.Load(), load.ok.Load()
		for range 2 * reloadBenchReloads {
			ctx, cancel := context.WithTimeout(context.Background(), benchBound)
			err := ag.Process().Reload(ctx)
			cancel()
			if err != nil {
				b.Fatalf("hand reload: %v", err)
			}
			time.Sleep(reloadBenchSettle)
		}
		handErrs += load.errs.Load() - e0
		handOK += load.ok.Load() - ok0
	}
	load.stop()
	// Each agent round is two reloads (the listener's create and delete).
	agentReloads := float64(2 * reloadBenchReloads * b.N)
	handReloads := float64(2 * reloadBenchReloads * b.N)
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(float64(agentErrs)/agentReloads, "agent-errors/reload")
	b.ReportMetric(float64(handErrs)/handReloads, "hand-errors/reload")
	b.Logf("keep-alive load, %d connections: agent reloads %v, %d errors in %d requests (%.2f per reload); hand reloads %v, %d errors in %d requests (%.2f per reload)",
		reloadBenchClients, agentReloads, agentErrs, agentOK+agentErrs, float64(agentErrs)/agentReloads,
		handReloads, handErrs, handOK+handErrs, float64(handErrs)/handReloads)
	fmt.Printf("reload-keepalive: clients=%d agent_errors_per_reload=%.2f hand_errors_per_reload=%.2f reloads=%v\n",
		reloadBenchClients, float64(agentErrs)/agentReloads, float64(handErrs)/handReloads, agentReloads)
}

// keepAliveLoad is n clients each sending requests back to back over one
// kept-alive connection, counting answered requests and errors.
type keepAliveLoad struct {
	ok, errs atomic.Int64
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	once     sync.Once
}

func startKeepAliveLoad(tb testing.TB, addr string, n int) *keepAliveLoad {
	ctx, cancel := context.WithCancel(context.Background())
	l := &keepAliveLoad{cancel: cancel}
	for range n {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			l.client(ctx, addr)
		}()
	}
	tb.Cleanup(l.stop)
	return l
}

func (l *keepAliveLoad) stop() {
	l.once.Do(func() {
		l.cancel()
		l.wg.Wait()
	})
}

// client runs until ctx ends; every loop is bounded by it and by one-second
// deadlines on each request.
func (l *keepAliveLoad) client(ctx context.Context, addr string) {
	req := []byte("GET / HTTP/1.1\r\nHost: bench\r\nUser-Agent: fulcrum-bench\r\n\r\n")
	var conn net.Conn
	var br *bufio.Reader
	defer func() {
		if conn != nil {
			conn.Close()
		}
	}()
	for ctx.Err() == nil {
		if conn == nil {
			c, err := net.DialTimeout("tcp", addr, time.Second)
			if err != nil {
				l.errs.Add(1)
				time.Sleep(10 * time.Millisecond)
				continue
			}
			conn, br = c, bufio.NewReader(c)
		}
		_ = conn.SetDeadline(time.Now().Add(time.Second))
		ok := false
		if _, err := conn.Write(req); err == nil {
			if res, err := http.ReadResponse(br, nil); err == nil {
				_, err = io.Copy(io.Discard, res.Body)
				res.Body.Close()
				ok = err == nil && res.StatusCode == http.StatusOK
				if ok && res.Close {
					// The server announced the close: a clean end of the
					// connection, not an error; reconnect.
					l.ok.Add(1)
					conn.Close()
					conn = nil
					continue
				}
			}
		}
		if ctx.Err() != nil {
			return
		}
		if ok {
			l.ok.Add(1)
			continue
		}
		l.errs.Add(1)
		conn.Close()
		conn = nil
	}
}
