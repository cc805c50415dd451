package api_test

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fulcrumlb/fulcrum/api"
	"github.com/fulcrumlb/fulcrum/api/store"
	"github.com/fulcrumlb/fulcrum/internal/pgcluster"
	"github.com/fulcrumlb/fulcrum/internal/pgtest"
)

// outageTimeout is the request deadline of the outage tests' API.
const outageTimeout = 2 * time.Second

// setupOwnCluster runs the API on a Postgres cluster of the test's own, which
// the test may stop, restart or freeze.
func setupOwnCluster(t *testing.T) (*bundle, *pgcluster.Cluster) {
	t.Helper()
	c := pgtest.NewCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := c.CreateDatabase(ctx, "fulcrum"); err != nil {
		t.Fatal(err)
	}
	q := store.DefaultQuotas
	q.LoadBalancers = 100000
	b := setup(t, withDatabase(c.URL("fulcrum"), store.Options{StatementTimeout: time.Second, LockTimeout: time.Second, ConnectTimeout: time.Second}),
		withQuotas(q), withConfig(func(cfg *api.Config) {
			cfg.RateLimits = noRateLimits
			cfg.RequestTimeout = outageTimeout
		}))
	return b, c
}

// checkUnavailable asserts an answer is the 503 of an unavailable database:
// problem+json, Retry-After, no WWW-Authenticate.
func checkUnavailable(t *testing.T, what string, res response) {
	t.Helper()
	if res.Status != http.StatusServiceUnavailable {
		t.Errorf("%s: status %d, want 503: %s", what, res.Status, res.Raw)
		return
	}
	if ra, err := strconv.Atoi(res.Header.Get("Retry-After")); err != nil || ra < 1 {
		t.Errorf("%s: Retry-After %q, want whole seconds ≥ 1", what, res.Header.Get("Retry-After"))
	}
	if ct := res.Header.Get("Content-Type"); ct != "application/problem+json" {
		t.Errorf("%s: Content-Type %q, want application/problem+json", what, ct)
	}
	if w := res.Header.Get("WWW-Authenticate"); w != "" {
		t.Errorf("%s: WWW-Authenticate %q during an outage", what, w)
	}
}

// waitHealthy waits until an authenticated read succeeds again.
func waitHealthy(t *testing.T, b *bundle) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		res, err := b.send(b.TokenA, http.MethodGet, "/v1/load-balancers", nil)
		if err == nil && res.Status == http.StatusOK {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the API did not recover: %v %d %s", err, res.Status, res.Raw)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestOutageStopped: with the database stopped, reads, writes and
// authentication answer 503 with Retry-After (never 500 or 401), /readyz
// reads 503, and the API recovers when the database is back.
func TestOutageStopped(t *testing.T) {
	b, c := setupOwnCluster(t)
	b.create(b.TokenA, "/v1/load-balancers", map[string]any{"name": "before"})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := c.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	checkUnavailable(t, "GET /readyz", b.do("", http.MethodGet, "/readyz", nil))
	checkUnavailable(t, "GET /v1/load-balancers", b.do(b.TokenA, http.MethodGet, "/v1/load-balancers", nil))
	checkUnavailable(t, "POST /v1/load-balancers", b.do(b.TokenA, http.MethodPost, "/v1/load-balancers", map[string]any{"name": "during"}))
	checkUnavailable(t, "GET /v1/tenants (admin)", b.do(b.Admin, http.MethodGet, "/v1/tenants", nil))
	checkUnavailable(t, "PUT /v1/nodes/n1 (node)", b.do(b.Node, http.MethodPut, "/v1/nodes/n1", map[string]any{"node_group_id": b.GroupID}))
	if res := b.do("", http.MethodGet, "/healthz", nil); res.Status != http.StatusOK {
		t.Errorf("/healthz (liveness) during the outage: %d", res.Status)
	}
	// A malformed token needs no database to be refused: still 401.
	if res := b.do("garbage", http.MethodGet, "/v1/load-balancers", nil); res.Status != http.StatusUnauthorized {
		t.Errorf("malformed token during the outage: %d, want 401", res.Status)
	}

	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	waitHealthy(t, b)
	if res := b.do("", http.MethodGet, "/readyz", nil); res.Status != http.StatusOK {
		t.Errorf("/readyz after the outage: %d", res.Status)
	}
}

// TestOutageFrozen: with the database frozen (SIGSTOP of the test's own
// postmaster and its backends), requests answer 503 with Retry-After within
// the request deadline instead of hanging.
func TestOutageFrozen(t *testing.T) {
	b, c := setupOwnCluster(t)
	b.create(b.TokenA, "/v1/load-balancers", map[string]any{"name": "before"})
	thaw, err := c.Freeze()
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	doThaw := func() {
		once.Do(func() {
			if err := thaw(); err != nil {
				t.Error(err)
			}
		})
	}
	t.Cleanup(doThaw)

	type call struct {
		what, token, method, path string
		body                      any
	}
	calls := []call{
		{"GET /readyz", "", http.MethodGet, "/readyz", nil},
		{"GET /v1/load-balancers", b.TokenA, http.MethodGet, "/v1/load-balancers", nil},
		{"POST /v1/load-balancers", b.TokenB, http.MethodPost, "/v1/load-balancers", map[string]any{"name": "during"}},
		{"GET /v1/tenants", b.Admin, http.MethodGet, "/v1/tenants", nil},
		{"GET /v1/nodes/n1/snapshot", b.Node, http.MethodGet, "/v1/nodes/n1/snapshot?wait=1s", nil},
	}
	// The deadline, plus the snapshot's wait, plus slack for a loaded machine.
	bound := outageTimeout + time.Second + 5*time.Second
	var wg sync.WaitGroup
	for _, cl := range calls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			// A request that hangs is cut off by thawing the database.
			hung := time.AfterFunc(bound+10*time.Second, func() {
				t.Errorf("%s still hangs after %v; thawing the database", cl.what, time.Since(start))
				doThaw()
			})
			defer hung.Stop()
			res, err := b.send(cl.token, cl.method, cl.path, cl.body)
			took := time.Since(start)
			t.Logf("%s while frozen: %d in %v", cl.what, res.Status, took.Round(time.Millisecond))
			if err != nil {
				t.Errorf("%s: %v", cl.what, err)
				return
			}
			checkUnavailable(t, cl.what, res)
			if took > bound {
				t.Errorf("%s took %v, more than %v", cl.what, took, bound)
			}
		}()
	}
	wg.Wait()
	doThaw()
	waitHealthy(t, b)
}

// TestOutageRestartUnderWriters: 20 writers create load balancers while the
// test's own Postgres restarts (pg_ctl restart -m fast). Every answer is 201
// or 503 with Retry-After — never 500 — and every load balancer acknowledged
// with 201 exists afterwards.
func TestOutageRestartUnderWriters(t *testing.T) {
	b, c := setupOwnCluster(t)
	var (
		mu                      sync.Mutex
		acked                   []string
		created, unavailable    atomic.Int64
		noRetryAfter, otherCode atomic.Int64
		others                  []string
		readyz503               atomic.Int64
	)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				res, err := b.send(b.TokenA, http.MethodPost, "/v1/load-balancers", map[string]any{"name": fmt.Sprintf("w%d-%d", w, i)})
				switch {
				case err != nil:
					otherCode.Add(1)
					mu.Lock()
					others = append(others, err.Error())
					mu.Unlock()
				case res.Status == http.StatusCreated:
					created.Add(1)
					mu.Lock()
					acked = append(acked, res.Body["id"].(string))
					mu.Unlock()
				case res.Status == http.StatusServiceUnavailable:
					unavailable.Add(1)
					if res.Header.Get("Retry-After") == "" {
						noRetryAfter.Add(1)
					}
					time.Sleep(20 * time.Millisecond)
				default:
					otherCode.Add(1)
					mu.Lock()
					others = append(others, fmt.Sprintf("%d %s", res.Status, res.Raw))
					mu.Unlock()
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			if res, err := b.send("", http.MethodGet, "/readyz", nil); err == nil && res.Status == http.StatusServiceUnavailable {
				readyz503.Add(1)
			}
		}
	}()

	time.Sleep(time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	start := time.Now()
	if err := c.Restart(ctx); err != nil {
		close(stop)
		wg.Wait()
		t.Fatal(err)
	}
	t.Logf("pg_ctl restart -m fast took %v", time.Since(start).Round(time.Millisecond))
	time.Sleep(2 * time.Second)
	close(stop)
	wg.Wait()

	t.Logf("answers: %d × 201, %d × 503 (%d without Retry-After), %d other; /readyz read 503 %d times",
		created.Load(), unavailable.Load(), noRetryAfter.Load(), otherCode.Load(), readyz503.Load())
	for i, o := range others {
		if i == 10 {
			break
		}
		t.Errorf("unexpected answer: %s", o)
	}
	if noRetryAfter.Load() > 0 {
		t.Errorf("%d × 503 without Retry-After", noRetryAfter.Load())
	}
	if unavailable.Load() == 0 {
		t.Error("no request saw the restart (no 503)")
	}
	if created.Load() == 0 {
		t.Fatal("no load balancer was created")
	}

	// Every acknowledged write survived the restart.
	waitHealthy(t, b)
	var found int
	err := b.Store.PoolForTests().QueryRow(ctx, "SELECT count(*) FROM load_balancers WHERE id = ANY($1)", acked).Scan(&found)
	if err != nil {
		t.Fatal(err)
	}
	if found != len(acked) {
		t.Errorf("%d load balancers acknowledged with 201, %d exist after the restart", len(acked), found)
	}
	t.Logf("%d acknowledged load balancers, %d found", len(acked), found)
}
