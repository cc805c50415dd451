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
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
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
	seq  int // order of capture
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
		c.stmts = append(c.stmts, statement{conn: conn, sql: sql, args: append([]any(nil), args...), seq: len(c.stmts)})
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
				if i > 0 && ss[i-1].sql == "-- pipeline" { // begun in one round trip with what follows
					start = i - 1
				}
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

// all returns every statement captured.
func (c *capture) all() []statement {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]statement(nil), c.stmts...)
}

// roundTrips counts the round trips of stmts: one per statement, one per
// pipeline of statements.
func roundTrips(stmts []statement) int {
	n, in := 0, map[any]bool{} // in a pipeline, by connection
	for _, s := range stmts {
		switch s.sql {
		case "-- pipeline":
			in[s.conn] = true
			n++
		case "-- end pipeline":
			in[s.conn] = false
		default:
			if !in[s.conn] {
				n++
			}
		}
	}
	return n
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
// statement that takes it (INSERT INTO revisions … RETURNING revision, or
// SELECT nextval alone).
func pgbenchScript(tx []statement, rev int64, vary map[string]string) (string, error) {
	var b strings.Builder
	gset := false
	for _, s := range tx {
		switch s.sql {
		case "-- pipeline": // statements the API sent in one round trip
			b.WriteString("\\startpipeline\n")
			continue
		case "-- end pipeline":
			b.WriteString("\\endpipeline\n")
			continue
		}
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
			if q == "SELECT nextval('revision_seq')" { // the revision taken alone (before 011)
				q += " AS revision"
			} else if !strings.HasSuffix(q, "RETURNING revision") {
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

// target is where one client creates members: a pool, with its tenant's
// token, and the pgbench script creating there.
type target struct {
	token, tenant, lb, pool string
	script                  string // file
}

// processCPU is the CPU time this process (the API and its HTTP clients)
// has used so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// apiCreates runs one loop of POST /v1/members per target for d. It returns
// the creates per second and the creates.
func apiCreates(t *testing.T, s *teststack.Stack, targets []target, d time.Duration, seq *atomic.Int64) (float64, int64) {
	clients := len(targets)
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
				body, _ := json.Marshal(map[string]any{"pool_id": targets[c].pool, "address": fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255), "port": 80})
				req, _ := http.NewRequest(http.MethodPost, s.Endpoint+"/v1/members", bytes.NewReader(body))
				req.Header.Set("Authorization", "Bearer "+targets[c].token)
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
	return float64(n.Load()) / elapsed.Seconds(), n.Load()
}

var tpsLine = regexp.MustCompile(`tps = ([0-9.]+) \(without initial connection time\)`)

// pgbenchCreates runs one pgbench per target, at once, each running the
// target's script on one connection for d (the API's clients: one each). It
// returns the transactions per second of them all.
func pgbenchCreates(t *testing.T, bin, url string, targets []target, d time.Duration) float64 {
	t.Helper()
	secs := max(1, int(d.Round(time.Second)/time.Second))
	tps := make([]float64, len(targets))
	errs := make([]error, len(targets))
	var wg sync.WaitGroup
	for i, tg := range targets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cmd := exec.Command(bin, "-n", "-M", "prepared", "-c", "1", "-T", strconv.Itoa(secs), "-f", tg.script, url)
			out, err := cmd.CombinedOutput()
			if err != nil {
				errs[i] = fmt.Errorf("%s: %v\n%s", cmd, err, out)
				return
			}
			m := tpsLine.FindSubmatch(out)
			if m == nil {
				errs[i] = fmt.Errorf("pgbench printed no tps:\n%s", out)
				return
			}
			if bytes.Contains(out, []byte("failed: ")) && !bytes.Contains(out, []byte("failed: 0 ")) {
				errs[i] = fmt.Errorf("pgbench transactions failed:\n%s", out)
				return
			}
			tps[i], _ = strconv.ParseFloat(string(m[1]), 64)
		}()
	}
	wg.Wait()
	sum := 0.0
	for i := range targets {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		sum += tps[i]
	}
	return sum
}

// created POSTs body to path with token and returns the answer, wanting 201.
func created(t *testing.T, s *teststack.Stack, token, path string, body any) map[string]any {
	t.Helper()
	code, out := s.CallAs(token, http.MethodPost, path, body)
	if code != http.StatusCreated {
		t.Fatalf("POST %s: %d %v", path, code, out)
	}
	return out
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
	// One group: one tenant (the stack's), one load balancer and pool per
	// client, in the stack's node group.
	var oneGroup []target
	for i := 0; i < clientsMax; i++ {
		lb := s.Create("/v1/load-balancers", map[string]any{"name": fmt.Sprintf("bench-%d", i)})["id"].(string)
		pool := s.Create("/v1/pools", map[string]any{"load_balancer_id": lb, "protocol": "http"})["id"].(string)
		oneGroup = append(oneGroup, target{token: s.TenantToken, tenant: s.TenantID, lb: lb, pool: pool})
	}
	// Groups: a tenant and a node group of its own per client.
	var groups []target
	for i := 0; i < clientsMax; i++ {
		tn := created(t, s, s.AdminToken, "/v1/tenants", map[string]any{"name": fmt.Sprintf("bench-%d", i),
			"quotas": map[string]any{"members": 1000000}})["id"].(string)
		token := created(t, s, s.AdminToken, "/v1/tokens", map[string]any{"kind": "tenant", "tenant_id": tn})["secret"].(string)
		g := created(t, s, s.AdminToken, "/v1/node-groups", map[string]any{"name": fmt.Sprintf("bench-%d", i),
			"vip_range": fmt.Sprintf("10.%d.0.0/16", 100+i)})["id"].(string)
		lb := created(t, s, token, "/v1/load-balancers", map[string]any{"node_group_id": g})["id"].(string)
		pool := created(t, s, token, "/v1/pools", map[string]any{"load_balancer_id": lb, "protocol": "http"})["id"].(string)
		groups = append(groups, target{token: token, tenant: tn, lb: lb, pool: pool})
	}

	// Capture one create's transaction and write it as a pgbench script.
	// The token was used just before, as in the loops below.
	base := oneGroup[0]
	if code, out := s.CallAs(base.token, http.MethodGet, "/v1/pools/"+base.pool, nil); code != http.StatusOK {
		t.Fatalf("GET pool: %d %v", code, out)
	}
	c.mu.Lock()
	c.on = true
	c.mu.Unlock()
	const address = "10.255.255.254"
	m := s.Create("/v1/members", map[string]any{"pool_id": base.pool, "address": address, "port": 80})
	c.mu.Lock()
	c.on = false
	c.mu.Unlock()
	tx, err := c.transaction("INSERT INTO members")
	if err != nil {
		t.Fatal(err)
	}
	// Every round trip to Postgres the create made, its transaction's and
	// any other (a token lookup; or background work that ran meanwhile,
	// listed so that it can be told apart).
	// The request's own statements outside its transaction are those on
	// tokens (its token's lookup); any other ran in the background
	// meanwhile (the deriver's sweep, janitors) and is counted apart.
	var outside []string
	own, other := append([]statement(nil), tx...), 0
	for _, st := range c.all() {
		if st.seq < tx[0].seq || st.seq > tx[len(tx)-1].seq || st.conn != tx[0].conn {
			outside = append(outside, strings.Join(strings.Fields(st.sql), " "))
			if strings.Contains(st.sql, " tokens") {
				own = append(own, st)
			} else {
				other++
			}
		}
	}
	fmt.Printf("writes: create_round_trips=%d in_transaction=%d background_statements_meanwhile=%d\n", roundTrips(own), roundTrips(tx), other)
	t.Logf("statements of the create outside its transaction: %q", outside)
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
	t.Logf("pgbench script (%d statements, as the API ran them):\n%s", len(tx), script)
	if dst := os.Getenv("FULCRUM_WRITES_SCRIPT"); dst != "" {
		_ = os.WriteFile(dst, []byte(script), 0o644)
	}
	// Each target's script is the captured one on its own tenant, load
	// balancer and pool.
	dir = t.TempDir()
	for _, ts := range [][]target{oneGroup, groups} {
		for i := range ts {
			own := strings.NewReplacer(base.tenant, ts[i].tenant, base.lb, ts[i].lb, base.pool, ts[i].pool).Replace(script)
			ts[i].script = filepath.Join(dir, fmt.Sprintf("create_member_%s.sql", ts[i].pool))
			if err := os.WriteFile(ts[i].script, []byte(own), 0o644); err != nil {
				t.Fatal(err)
			}
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
	ratios := map[string]float64{}
	for _, run := range []struct {
		name    string
		targets []target
	}{{"clients=1", oneGroup[:1]}, {fmt.Sprintf("clients=%d", clientsMax), oneGroup}, {fmt.Sprintf("clients=%d groups=%d", clientsMax, clientsMax), groups}} {
		// Rounds alternate the API and pgbench, so that both see the same
		// load from whatever else runs on the machine.
		// The API phases' CPU (this process: API and HTTP clients, not
		// Postgres) per create, and, with FULCRUM_WRITES_PROFILE=<prefix>,
		// the last round's CPU profile in <prefix>-<run>.pprof.
		var apiSum, pgSum float64
		var cpu time.Duration
		var creates int64
		prof := os.Getenv("FULCRUM_WRITES_PROFILE")
		var pf *os.File
		if prof != "" {
			if pf, err = os.Create(fmt.Sprintf("%s-%s.pprof", prof, strings.NewReplacer("=", "", " ", "-").Replace(run.name))); err != nil {
				t.Fatal(err)
			}
		}
		for r := 0; r < int(rounds); r++ {
			reset()
			last := r == int(rounds)-1
			if pf != nil && last {
				if err := pprof.StartCPUProfile(pf); err != nil {
					t.Fatal(err)
				}
			}
			before := processCPU()
			rate, n := apiCreates(t, s, run.targets, d, &seq)
			cpu += processCPU() - before
			if pf != nil && last {
				pprof.StopCPUProfile()
			}
			apiSum += rate
			creates += n
			reset()
			pgSum += pgbenchCreates(t, bin, url, run.targets, d)
		}
		if pf != nil {
			pf.Close()
		}
		apiRate, pgRate := apiSum/rounds, pgSum/rounds
		ratios[run.name] = apiRate / pgRate
		fmt.Printf("writes: %s api_per_s=%.0f pgbench_per_s=%.0f ratio=%.2f api_process_cpu_us_per_create=%.0f\n", run.name, apiRate, pgRate, ratios[run.name],
			float64(cpu.Microseconds())/float64(max(creates, 1)))
	}
	fmt.Printf("writes: ratio_1=%.2f ratio_8=%.2f ratio_8_groups=%.2f\n", ratios["clients=1"], ratios[fmt.Sprintf("clients=%d", clientsMax)],
		ratios[fmt.Sprintf("clients=%d groups=%d", clientsMax, clientsMax)])
}
