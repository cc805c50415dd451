package writebench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/fulcrumlb/fulcrum/api"
	"github.com/fulcrumlb/fulcrum/api/store"
	"github.com/fulcrumlb/fulcrum/internal/pgcluster"
	"github.com/fulcrumlb/fulcrum/internal/pgtest"
	"github.com/fulcrumlb/fulcrum/internal/teststack"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// statement is one statement a connection ran.
type statement struct {
	conn any
	sql  string
	args []any
}

// capture records statements while on.
type capture struct {
	mu    sync.Mutex
	on    bool
	stmts []statement
}

func (c *capture) log(conn any, sql string, args []any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.on {
		c.stmts = append(c.stmts, statement{conn: conn, sql: sql, args: append([]any(nil), args...)})
	}
}

// transaction returns the statements, begin to commit, of the transaction
// that ran an SQL statement containing marker.
func (c *capture) transaction(marker string) ([]statement, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	byConn := map[any][]statement{}
	for _, s := range c.stmts {
		byConn[s.conn] = append(byConn[s.conn], s)
	}
	for _, ss := range byConn {
		start := -1
		for i, s := range ss {
			switch strings.ToLower(strings.TrimSpace(s.sql)) {
			case "begin":
				start = i
			case "commit":
				if start < 0 {
					continue
				}
				tx := ss[start : i+1]
				for _, t := range tx {
					if strings.Contains(t.sql, marker) {
						return tx, nil
					}
				}
				start = -1
			}
		}
	}
	return nil, fmt.Errorf("no captured transaction runs %q", marker)
}

// literal writes v as an SQL constant pgbench leaves alone: strings as E”
// with ':' escaped (pgbench would read ":x" as a variable).
func literal(v any) string {
	switch x := v.(type) {
	case nil:
		return "NULL"
	case string:
		return quote(x)
	case int, int32, int64, float64:
		return fmt.Sprint(x)
	case bool:
		return strconv.FormatBool(x)
	case time.Time:
		return quote(x.UTC().Format(time.RFC3339Nano))
	case []string:
		b, _ := json.Marshal(x) // ["a","b"]
		return quote("{" + strings.Trim(string(b), "[]") + "}")
	case []byte:
		return quote(string(x))
	default:
		b, err := json.Marshal(x)
		if err != nil {
			return quote(fmt.Sprint(x))
		}
		return quote(string(b))
	}
}

func quote(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `'`, `\'`, `:`, `\x3a`)
	return "E'" + r.Replace(s) + "'"
}

var param = regexp.MustCompile(`\$(\d+)`)

// pgbenchScript turns a captured create transaction into a pgbench script.
// vary maps argument values that must differ per transaction to pgbench
// expressions; the revision rev becomes :revision, set by \gset from the
// statement that takes it (INSERT INTO revisions … RETURNING revision).
func pgbenchScript(tx []statement, rev int64, vary map[string]string) (string, error) {
	var b strings.Builder
	gset := false
	for _, s := range tx {
		q := param.ReplaceAllStringFunc(strings.TrimSpace(s.sql), func(m string) string {
			n, _ := strconv.Atoi(m[1:])
			a := s.args[n-1]
			if r, ok := a.(int64); ok && r == rev {
				return ":revision"
			}
			if str, ok := a.(string); ok && vary[str] != "" {
				return vary[str]
			}
			return literal(a)
		})
		if strings.Contains(q, "nextval('revision_seq')") {
			if !strings.HasSuffix(q, "RETURNING revision") {
				return "", fmt.Errorf("the revision is not returned as revision: %s", q)
			}
			b.WriteString(q + " \\gset\n")
			gset = true
			continue
		}
		b.WriteString(q + ";\n")
	}
	if !gset {
		return "", fmt.Errorf("the transaction takes no revision")
	}
	return b.String(), nil
}

// apiCreates runs clients loops of POST /v1/members for d; each client
// creates into its own pool. It returns the creates per second.
func apiCreates(t *testing.T, s *teststack.Stack, pools []string, clients int, d time.Duration, seq *atomic.Int64) float64 {
	t.Helper()
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: clients}}
	var n atomic.Int64
	var failed atomic.Value
	var wg sync.WaitGroup
	start := time.Now()
	deadline := start.Add(d)
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				i := seq.Add(1)
				body, _ := json.Marshal(map[string]any{"pool_id": pools[c], "address": fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255), "port": 80})
				req, _ := http.NewRequest(http.MethodPost, s.Endpoint+"/v1/members", bytes.NewReader(body))
				req.Header.Set("Authorization", "Bearer "+s.TenantToken)
				req.Header.Set("Content-Type", "application/json")
				res, err := client.Do(req)
				if err != nil {
					failed.Store(err.Error())
					return
				}
				raw, _ := io.ReadAll(res.Body)
				res.Body.Close()
				if res.StatusCode != http.StatusCreated {
					failed.Store(fmt.Sprintf("status %d: %s", res.StatusCode, raw))
					return
				}
				n.Add(1)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if f := failed.Load(); f != nil {
		t.Fatalf("create member: %v", f)
	}
	return float64(n.Load()) / elapsed.Seconds()
}

var tpsLine = regexp.MustCompile(`tps = ([0-9.]+) \(without initial connection time\)`)

// pgbenchCreates runs script with clients connections for d and returns its
// transactions per second.
func pgbenchCreates(t *testing.T, bin, url, script string, clients int, d time.Duration) float64 {
	t.Helper()
	jobs := min(clients, 2)
	secs := max(1, int(d.Round(time.Second)/time.Second))
	cmd := exec.Command(bin, "-n", "-M", "prepared", "-c", strconv.Itoa(clients), "-j", strconv.Itoa(jobs), "-T", strconv.Itoa(secs), "-f", script, url)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", cmd, err, out)
	}
	m := tpsLine.FindSubmatch(out)
	if m == nil {
		t.Fatalf("pgbench printed no tps:\n%s", out)
	}
	if bytes.Contains(out, []byte("failed: ")) && !bytes.Contains(out, []byte("failed: 0 ")) {
		t.Fatalf("pgbench transactions failed:\n%s", out)
	}
	tps, _ := strconv.ParseFloat(string(m[1]), 64)
	return tps
}

// TestWrites measures API creates/s and pgbench's, 1 and 8 clients, and
// prints `writes:` lines. Without FULCRUM_WRITES it is a short smoke run.
func TestWrites(t *testing.T) {
	full := os.Getenv("FULCRUM_WRITES") != ""
	d, rounds := time.Second, 1.0
	if full {
		d, rounds = 5*time.Second, 3
		if v, err := time.ParseDuration(os.Getenv("FULCRUM_WRITES_DURATION")); err == nil && v > 0 {
			d = v
		}
	}
	dir, err := pgcluster.BinDir()
	if err != nil {
		t.Skipf("no PostgreSQL binaries: %v", err)
	}
	bin := filepath.Join(dir, "pgbench")
	if _, err := os.Stat(bin); err != nil {
		t.Skipf("no pgbench next to postgres: %v", err)
	}
	url := pgtest.NewDatabase(t)
	c := &capture{}
	s := teststack.Start(t, teststack.Options{DatabaseURL: url,
		Quotas:     store.Quotas{LoadBalancers: 100, Listeners: 100, Pools: 100, Members: 1000000, RoutingRules: 100, Certificates: 100},
		Store:      store.Options{StatementLog: c.log},
		RateLimits: map[string]api.RateLimit{store.TokenTenant: {}}})
	const clientsMax = 8
	var pools []string
	for i := 0; i < clientsMax; i++ {
		lb := s.Create("/v1/load-balancers", map[string]any{"name": fmt.Sprintf("bench-%d", i)})
		pools = append(pools, s.Create("/v1/pools", map[string]any{"load_balancer_id": lb["id"], "protocol": "http"})["id"].(string))
	}

	// Capture one create's transaction and write it as a pgbench script.
	c.mu.Lock()
	c.on = true
	c.mu.Unlock()
	const address = "10.255.255.254"
	m := s.Create("/v1/members", map[string]any{"pool_id": pools[0], "address": address, "port": 80})
	c.mu.Lock()
	c.on = false
	c.mu.Unlock()
	tx, err := c.transaction("INSERT INTO members")
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var rev int64
	if err := conn.QueryRow(context.Background(), "SELECT revision FROM members WHERE id = $1", m["id"]).Scan(&rev); err != nil {
		t.Fatal(err)
	}
	script, err := pgbenchScript(tx, rev, map[string]string{
		m["id"].(string): "'mbr_pgbench_' || :revision",
		address:          "'11.' || (:revision::bigint / 65536 % 256) || '.' || (:revision::bigint / 256 % 256) || '.' || (:revision::bigint % 256)",
	})
	if err != nil {
		t.Fatal(err)
	}
	scriptFile := filepath.Join(t.TempDir(), "create_member.sql")
	if err := os.WriteFile(scriptFile, []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("pgbench script (%d statements, as the API ran them):\n%s", len(tx), script)
	if full {
		if dst := os.Getenv("FULCRUM_WRITES_SCRIPT"); dst != "" {
			_ = os.WriteFile(dst, []byte(script), 0o644)
		}
	}

	// Each phase starts from the same rows: the members a phase created are
	// removed before the next (the quota check counts the tenant's members).
	reset := func() {
		if _, err := conn.Exec(context.Background(), "DELETE FROM members WHERE id <> $1", m["id"]); err != nil {
			t.Fatal(err)
		}
		if _, err := conn.Exec(context.Background(), "VACUUM ANALYZE members"); err != nil {
			t.Fatal(err)
		}
	}
	var seq atomic.Int64
	ratios := map[int]float64{}
	for _, clients := range []int{1, clientsMax} {
		// Rounds alternate the API and pgbench, so that both see the same
		// load from whatever else runs on the machine.
		var apiSum, pgSum float64
		for r := 0; r < int(rounds); r++ {
			reset()
			apiSum += apiCreates(t, s, pools, clients, d, &seq)
			reset()
			pgSum += pgbenchCreates(t, bin, url, scriptFile, clients, d)
		}
		apiRate, pgRate := apiSum/rounds, pgSum/rounds
		ratios[clients] = apiRate / pgRate
		fmt.Printf("writes: clients=%d api_per_s=%.0f pgbench_per_s=%.0f ratio=%.2f\n", clients, apiRate, pgRate, ratios[clients])
	}
	fmt.Printf("writes: ratio_1=%.2f ratio_8=%.2f\n", ratios[1], ratios[clientsMax])
}
