package acceptance

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fulcrumlb/fulcrum/internal/pgtest"
	"github.com/fulcrumlb/fulcrum/internal/teststack"
)

// The HAProxy lifecycle on a node (issue 7, items 3–5): `fulcrum agent` as a
// process of its own, a real HAProxy, loopback traffic. These tests are not
// parallel: they count failed requests and measure outages, which other
// tests' load would blur. Short forms run in `make test`; FULCRUM_CHAOS=1
// (`make chaos`) runs the long forms.

// chaos picks the short or the long form of a count.
func chaos(short, long int) int {
	if os.Getenv("FULCRUM_CHAOS") == "1" {
		return long
	}
	return short
}

// lifecycleSetup starts an API, an external agent and one LB with members a
// and b on it.
func lifecycleSetup(t *testing.T) (*stack, *extAgent, *lbSetup) {
	t.Helper()
	s := newStack(t, pgtest.NewDatabase(t))
	ag := newExtAgent(t, s, "node-1")
	ag.Start()
	ag.WaitServing()
	a, b := teststack.StartBackend(t, "a"), teststack.StartBackend(t, "b")
	lb := s.newLB(8080, nil, a, b)
	return s, ag, lb
}

// oneMaster waits (bounded) until exactly one HAProxy master of the agent's
// state dir runs (/proc scan) and it is the one the master CLI names.
func oneMaster(t *testing.T, ag *extAgent) int {
	t.Helper()
	var masters []int
	var cli int
	var cliErr error
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		masters = mastersOf(ag.StateDir)
		cli, cliErr = masterCLIPid(ag.StateDir)
		if len(masters) == 1 && cliErr == nil && cli == masters[0] {
			return cli
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("HAProxy masters of %s: %v (/proc), master CLI: %d %v; want exactly one", ag.StateDir, masters, cli, cliErr)
	return 0
}

// onlyWorkersOf checks with `ss` that every process listening on the LB's
// VIP is a worker of master.
func onlyWorkersOf(t *testing.T, lb *lbSetup, master int) {
	t.Helper()
	addr := lb.VIP + ":8080"
	var pids []int
	deadline := time.Now().Add(20 * time.Second) // old workers of stale masters may still be finishing
	for time.Now().Before(deadline) {
		pids = listenerPIDs(t, addr)
		ok := len(pids) > 0
		for _, pid := range pids {
			ok = ok && ppidOf(pid) == master
		}
		if ok {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	parents := map[int]int{}
	for _, pid := range pids {
		parents[pid] = ppidOf(pid)
	}
	t.Fatalf("listeners on %s (pid → parent): %v; want only workers of master %d", addr, parents, master)
}

// TestLifecycleAgentRestartsAreHitless restarts the agent gracefully
// (SIGTERM) and kills it (SIGKILL) under steady load: HAProxy keeps serving,
// the next agent takes the running master over, and not one request fails.
func TestLifecycleAgentRestartsAreHitless(t *testing.T) {
	n := chaos(2, 10)
	s, ag, lb := lifecycleSetup(t)
	master := oneMaster(t, ag)

	// A second agent on the same state dir refuses to run.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, ag.bin, ag.args...).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "in use by another agent") {
		t.Fatalf("second agent on the same state dir: %v\n%s", err, out)
	}

	load := startLoad(lb.URL, 3)
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL} {
		for i := 0; i < n; i++ {
			ag.Signal(sig)
			time.Sleep(200 * time.Millisecond) // no agent at all for a moment
			ag.Start()
			ag.WaitServing()
			time.Sleep(300 * time.Millisecond)
		}
	}
	// The agent that took over still applies changes.
	s.MustCall(http.StatusOK, "PATCH", "/v1/members/"+lb.Members["b"], map[string]any{"weight": 3})
	s.WaitActive("/v1/members/" + lb.Members["b"])
	sent, failed, errs, d := load.Stop()
	t.Logf("%d graceful + %d kill -9 agent restarts under load: %d requests over %s, %d failed %v",
		n, n, sent, d.Round(time.Millisecond), failed, errs)
	if failed != 0 || sent == 0 {
		t.Fatalf("%d of %d requests failed: %v", failed, sent, errs)
	}
	if got := oneMaster(t, ag); got != master {
		t.Errorf("master %d after the restarts, want %d taken over each time", got, master)
	}
	onlyWorkersOf(t, lb, master)
}

// TestLifecycleKillDuringStart kills the agent (SIGKILL) at random points of
// its start (0–500 ms), M times — and stops it (SIGTERM) at random points M/4
// more times — while the API changes what the node must serve: the next agent
// leaves exactly one HAProxy master, serving the newest config.
func TestLifecycleKillDuringStart(t *testing.T) {
	m := chaos(3, 20)
	s, ag, lb := lifecycleSetup(t)
	ag.Kill()
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	var delays []string
	for i := 0; i < m+max(1, m/4); i++ {
		if i == m/2 {
			// Changed while agents come and go: the survivors must serve it.
			s.MustCall(http.StatusOK, "PATCH", "/v1/members/"+lb.Members["b"], map[string]any{"enabled": false})
		}
		if i%3 == 1 {
			// HAProxy gone too (a node-wide crash): this start launches a
			// master, and the kill may leave it half started.
			for _, pid := range mastersOf(ag.StateDir) {
				_ = syscall.Kill(-pid, syscall.SIGKILL)
			}
		}
		d := time.Duration(rng.IntN(501)) * time.Millisecond
		sig, mark := syscall.SIGKILL, ""
		if i >= m {
			sig, mark = syscall.SIGTERM, "T"
		}
		delays = append(delays, strconv.Itoa(int(d/time.Millisecond))+mark)
		ag.Start()
		time.Sleep(d)
		ag.Signal(sig)
	}
	// And at least two masters on the same state dir, as agents before
	// issue 7 left behind: each new one takes the master socket over.
	for len(mastersOf(ag.StateDir)) < 2 {
		stray := exec.Command("haproxy", "-W", "-db", "-S", filepath.Join(ag.StateDir, "run", "master.sock")+",level,admin",
			"-f", filepath.Join(ag.StateDir, "haproxy.cfg"), "-p", filepath.Join(ag.StateDir, "run", "haproxy.pid"))
		stray.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := stray.Start(); err != nil {
			t.Fatal(err)
		}
		go stray.Wait() //nolint:errcheck // reaped when the agent stops it
		// The stray usually takes the master socket over; a master a killed
		// agent left half started may take it back when it finishes
		// starting. Either way two masters serve this state dir.
		teststack.WaitFor(t, "a stray master", 10*time.Second, func() bool {
			_, err := masterCLIPid(ag.StateDir)
			return err == nil && slices.Contains(mastersOf(ag.StateDir), stray.Process.Pid)
		})
	}
	before := mastersOf(ag.StateDir)
	ag.Start()
	ag.WaitServing()
	// The newest config is the one this agent applied: b's change may have
	// been acknowledged by an earlier agent, and HAProxy may serve an older
	// state (killed with the agent, it started again on the state on disk,
	// which follows a change a second later). A change made now is active
	// only once this agent applied everything up to it.
	s.MustCall(http.StatusOK, "PATCH", "/v1/members/"+lb.Members["a"], map[string]any{"weight": 2})
	s.WaitActive("/v1/members/" + lb.Members["a"])
	s.WaitActive("/v1/members/" + lb.Members["b"])
	master := oneMaster(t, ag)
	log := ag.logTail(1 << 30)
	t.Logf("killed the agent %d times (then stopped it with SIGTERM: T), at %v ms into its start (HAProxy killed too before every third start); "+
		"masters launched %d, taken over %d, stale ones stopped %d; masters before the last start: %v",
		m, delays, strings.Count(log, `"msg":"haproxy master started"`), strings.Count(log, `"msg":"took over the running haproxy"`),
		strings.Count(log, "a stale haproxy"), before)
	cl := teststack.NewClient(nil)
	got := ag.serves(cl, lb.URL, 40)
	if got["b"] != 0 || got["a"] != 40 {
		t.Fatalf("after convergence, with b disabled: %v\n%s", got, ag.diagnose(lb.VIP+":8080"))
	}
	if again := oneMaster(t, ag); again != master {
		t.Fatalf("master changed from %d to %d", master, again)
	}
	onlyWorkersOf(t, lb, master)
	t.Logf("exactly one master (%d) serving the newest config: %v", master, got)
}

// TestLifecycleChaosMasterCrash kills the HAProxy master (SIGKILL) K times,
// 5 s apart, under load: the agent restarts it at once each time. Each
// outage is measured and logged; the test asserts only that traffic resumes.
func TestLifecycleChaosMasterCrash(t *testing.T) {
	k := chaos(2, 10)
	_, ag, lb := lifecycleSetup(t)
	// Restart the agent first: the first kill hits a master it took over (not
	// its child), the next ones masters it started.
	ag.Signal(syscall.SIGTERM)
	ag.Start()
	ag.WaitServing()
	load := startLoad(lb.URL, 3)
	c := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	var outages []time.Duration
	for i := 0; i < k; i++ {
		time.Sleep(5 * time.Second)
		master := oneMaster(t, ag)
		killed := time.Now()
		if err := syscall.Kill(master, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		// Probe until the new master serves. The outage is the span from the
		// kill to the first success after the last failed probe (0 when no
		// probe failed: the killed master's worker still served meanwhile).
		var outage, recovered time.Duration
		failing := false
		for {
			if time.Since(killed) > 10*time.Second {
				t.Fatalf("kill %d: traffic did not resume within 10s (load: %d failed)", i+1, load.failed.Load())
			}
			err := getOK(c, lb.URL)
			switch {
			case err != nil:
				failing = true
			case failing:
				failing, outage = false, time.Since(killed)
			}
			if pid, perr := masterCLIPid(ag.StateDir); err == nil && perr == nil && pid != master {
				recovered = time.Since(killed)
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		outages = append(outages, outage.Round(time.Millisecond))
		t.Logf("master kill %d: outage %s, new master serving after %s", i+1, outage.Round(time.Millisecond), recovered.Round(time.Millisecond))
	}
	sent, failed, errs, d := load.Stop()
	var worst time.Duration
	for _, o := range outages {
		worst = max(worst, o)
	}
	t.Logf("%d master kills 5s apart under load: outages %v (worst %s); load: %d requests over %s, %d failed %v",
		k, fmt.Sprint(outages), worst, sent, d.Round(time.Millisecond), failed, errs)
	onlyWorkersOf(t, lb, oneMaster(t, ag))
}

// TestLifecycleKillRightAfterChange kills the agent (SIGKILL) right after it
// applied a change that needed a reload (a new listener), before the state on
// disk took it, and restarts it while the API is down: the node keeps
// serving what HAProxy ran — every listener, without one failed request —
// and converges once the API is back.
func TestLifecycleKillRightAfterChange(t *testing.T) {
	s, ag, lb := lifecycleSetup(t)
	time.Sleep(1500 * time.Millisecond) // the setup's state on disk
	second := s.Create("/v1/listeners", map[string]any{"load_balancer_id": lb.LB, "protocol": "http", "port": 8081,
		"default_pool_id": lb.Pool})["id"].(string)
	s.WaitActive("/v1/listeners/" + second)
	ag.Kill() // the new listener runs; the state on disk has not taken it yet
	if st, _ := os.ReadFile(filepath.Join(ag.StateDir, "snapshot.json")); strings.Contains(string(st), second) {
		t.Logf("snapshot.json took the new listener before the kill (a slow machine): this run restarts on a current state")
	}
	url2 := fmt.Sprintf("http://%s:8081/", lb.VIP)
	for _, u := range []string{lb.URL, url2} {
		if err := getOK(&http.Client{Timeout: 5 * time.Second}, u); err != nil {
			t.Fatalf("%s before the restart: %v", u, err)
		}
	}

	s.StopAPI() // the restarted agent serves on its own
	load1, load2 := startLoad(lb.URL, 2), startLoad(url2, 2)
	ag.Start()
	teststack.WaitFor(t, "the agent taking HAProxy over", 30*time.Second, func() bool {
		return strings.Contains(ag.runLog(), "took over the running haproxy")
	})
	time.Sleep(3 * time.Second) // longer than the agent's retry interval
	s.StartAPI()
	ag.WaitServing()
	s.MustCall(http.StatusOK, "PATCH", "/v1/members/"+lb.Members["b"], map[string]any{"weight": 2})
	s.WaitActive("/v1/members/" + lb.Members["b"])
	time.Sleep(500 * time.Millisecond)
	for i, l := range []*loadLoop{load1, load2} {
		sent, failed, errs, d := l.Stop()
		t.Logf("listener %d: %d requests over %s across the kill, the restart without the API and its return: %d failed %v",
			i+1, sent, d.Round(time.Millisecond), failed, errs)
		if failed != 0 || sent == 0 {
			t.Errorf("listener %d: %d of %d requests failed: %v", i+1, failed, sent, errs)
		}
	}
	onlyWorkersOf(t, lb, oneMaster(t, ag))
}
