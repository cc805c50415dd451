package haproxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"text/template"
	"time"

	"github.com/fulcrumlb/fulcrum/internal/testenv"
)

// ---- helpers shared by the process and runtime tests (prefix ht) ----

// htBinary finds haproxy or fails the test (internal/testenv).
func htBinary(t *testing.T) string {
	t.Helper()
	return testenv.RequireHAProxy(t)
}

// htDir is a short runtime directory (unix socket paths are limited).
func htDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "fhp")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// htMember is an HTTP server on loopback answering its name.
func htMember(t *testing.T, name string) *httptest.Server {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Member", name)
		io.WriteString(w, name)
	}))
	t.Cleanup(s.Close)
	return s
}

func htPort(s *httptest.Server) int { return s.Listener.Addr().(*net.TCPAddr).Port }

func htHostPort(s *httptest.Server) string { return strings.TrimPrefix(s.URL, "http://") }

type htServer struct{ Name, Addr string }

type htConf struct {
	Dir     string
	Port    int
	Gen     int
	Servers []htServer
	Global  string // appended to the global section verbatim
	Extra   string // appended verbatim
}

var htTemplate = template.Must(template.New("cfg").Parse(`# test config generation {{.Gen}}
global
    maxconn 4000
    stats socket {{.Dir}}/stats.sock mode 600 level admin expose-fd listeners
    stats timeout 10s
    hard-stop-after 10s
{{- if .Global}}
    {{.Global}}
{{- end}}

defaults
    mode http
    timeout connect 2s
    timeout client 10s
    timeout server 10s
    timeout http-keep-alive 5s

frontend lsn_web
    bind 127.0.0.1:{{.Port}}
    http-response set-header X-Config-Gen {{.Gen}}
    default_backend pool_web

backend pool_web
    balance roundrobin
{{- range .Servers}}
    server {{.Name}} {{.Addr}} check inter 1s
{{- end}}

backend pool_static
    balance static-rr
    server mbr_s1 127.0.0.1:9 disabled
{{.Extra}}
`))

func (c htConf) render(t *testing.T) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := htTemplate.Execute(&b, c); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// htWriteFile replaces path atomically, as the agent does.
func htWriteFile(t *testing.T, path string, data []byte) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// htLog collects a Process's logs and prints them if the test failed.
type htLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *htLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *htLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func htLogger(t *testing.T) (*slog.Logger, *htLog) {
	l := &htLog{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("process log:\n%s", l.String())
		}
	})
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug})), l
}

type htEnv struct {
	conf htConf
	cfg  string
	proc *Process
	rt   Runtime
	url  string
	logs *htLog
}

// htStart writes conf and starts a Process on it; Stop runs at cleanup.
func htStart(t *testing.T, conf htConf, tweak func(*ProcessConfig)) *htEnv {
	t.Helper()
	bin := htBinary(t)
	if conf.Dir == "" {
		conf.Dir = htDir(t)
	}
	if conf.Port == 0 {
		conf.Port = freePort(t)
	}
	cfgPath := filepath.Join(conf.Dir, "haproxy.cfg")
	htWriteFile(t, cfgPath, conf.render(t))
	logger, logs := htLogger(t)
	pc := ProcessConfig{Binary: bin, ConfigPath: cfgPath, Dir: conf.Dir, Logger: logger, StopTimeout: 3 * time.Second}
	if tweak != nil {
		tweak(&pc)
	}
	p := NewProcess(pc)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := p.Start(ctx); err != nil {
		t.Fatalf("Start: %v\nlog:\n%s", err, logs.String())
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		if err := p.Stop(ctx); err != nil {
			t.Errorf("Stop: %v", err)
		}
	})
	return &htEnv{
		conf: conf, cfg: cfgPath, proc: p, logs: logs,
		rt:  Runtime{Socket: filepath.Join(conf.Dir, "stats.sock")},
		url: fmt.Sprintf("http://127.0.0.1:%d/", conf.Port),
	}
}

func htClient(keepAlive bool) *http.Client {
	tr := &http.Transport{
		DisableKeepAlives:   !keepAlive,
		MaxIdleConnsPerHost: 4,
		DialContext:         (&net.Dialer{Timeout: 2 * time.Second}).DialContext,
	}
	return &http.Client{Transport: tr, Timeout: 5 * time.Second}
}

// htGet fetches url and returns the member that answered.
func htGet(c *http.Client, url string) (string, http.Header, error) {
	resp, err := c.Get(url)
	if err != nil {
		return "", nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return "", resp.Header, fmt.Errorf("status %d: %s", resp.StatusCode, body)
	}
	return string(body), resp.Header, nil
}

// htSpread sends n requests and counts answers per member.
func htSpread(t *testing.T, c *http.Client, url string, n int) map[string]int {
	t.Helper()
	got := map[string]int{}
	for i := 0; i < n; i++ {
		m, _, err := htGet(c, url)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		got[m]++
	}
	return got
}

// htEventually polls f every 50ms until it returns nil or timeout passes.
func htEventually(t *testing.T, timeout time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v: %v", what, timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func htCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func htCurrentWorkers(t *testing.T, p *Process) []Worker {
	t.Helper()
	ws, err := p.Workers(htCtx(t, 5*time.Second))
	if err != nil {
		t.Fatalf("Workers: %v", err)
	}
	var cur []Worker
	for _, w := range ws {
		if !w.Old {
			cur = append(cur, w)
		}
	}
	return cur
}

// ---- tests ----

func TestProcessStartTrafficStop(t *testing.T) {
	a, b := htMember(t, "a"), htMember(t, "b")
	env := htStart(t, htConf{Servers: []htServer{{"mbr_a", htHostPort(a)}, {"mbr_b", htHostPort(b)}}}, nil)
	p := env.proc

	if !p.Running() || p.PID() == 0 {
		t.Fatalf("Running=%v PID=%d after Start", p.Running(), p.PID())
	}
	// A second Start is a no-op.
	pid := p.PID()
	if err := p.Start(htCtx(t, 5*time.Second)); err != nil || p.PID() != pid {
		t.Fatalf("second Start: err=%v pid %d→%d", err, pid, p.PID())
	}
	if b, err := os.ReadFile(p.PIDFile()); err != nil || strings.TrimSpace(string(b)) != fmt.Sprint(pid) {
		t.Fatalf("pid file: %q, %v; want %d", b, err, pid)
	}

	got := htSpread(t, htClient(true), env.url, 20)
	if got["a"] != 10 || got["b"] != 10 {
		t.Fatalf("round robin over 20 requests: %v", got)
	}

	ws, err := p.Workers(htCtx(t, 5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if len(ws) != 1 || ws[0].Old || ws[0].PID <= 0 || ws[0].PID == pid || ws[0].Reloads != 0 || ws[0].Uptime == "" {
		t.Fatalf("Workers = %+v; want one current worker", ws)
	}
	out, err := p.MasterCommand(htCtx(t, 5*time.Second), fmt.Sprintf("@!%d show info", ws[0].PID))
	if err != nil || !strings.Contains(out, fmt.Sprintf("Pid: %d\n", ws[0].PID)) {
		t.Fatalf("MasterCommand @!pid show info: %v\n%s", err, out)
	}
	if _, err := p.MasterCommand(htCtx(t, 5*time.Second), "no such command"); err == nil {
		t.Fatal("MasterCommand of an unknown command: no error")
	}
	if _, err := p.MasterCommand(htCtx(t, 5*time.Second), "show proc\nreload"); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("MasterCommand with a newline: %v; want ErrInvalidArgument", err)
	}
	// The output is followed from a file: give the follower a moment.
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(env.logs.String(), "Loading success") && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(env.logs.String(), "Loading success") {
		t.Errorf("HAProxy's output did not reach the logger:\n%s", env.logs.String())
	}

	// Stop: soft stop, everything gone, port closed.
	if err := p.Stop(htCtx(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	if p.Running() || p.PID() != 0 {
		t.Fatal("still running after Stop")
	}
	for _, proc := range []int{pid, ws[0].PID} {
		if processAlive(proc) {
			t.Errorf("process %d still alive after Stop", proc)
		}
	}
	if c, err := net.DialTimeout("tcp", strings.TrimSuffix(strings.TrimPrefix(env.url, "http://"), "/"), time.Second); err == nil {
		c.Close()
		t.Error("frontend still accepts connections after Stop")
	}
	if err := p.Stop(htCtx(t, time.Second)); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	if err := p.Reload(htCtx(t, time.Second)); !errors.Is(err, ErrNotRunning) {
		t.Errorf("Reload when stopped: %v; want ErrNotRunning", err)
	}
}

func TestProcessStartFailure(t *testing.T) {
	bin := htBinary(t)
	dir := htDir(t)
	cfg := filepath.Join(dir, "haproxy.cfg")
	htWriteFile(t, cfg, []byte("global\n    maxconn 4000\nfrontend lsn_x\n    bind 127.0.0.1:1\n    bogus_keyword\n"))
	logger, _ := htLogger(t)
	p := NewProcess(ProcessConfig{Binary: bin, ConfigPath: cfg, Dir: dir, Logger: logger})
	err := p.Start(htCtx(t, 10*time.Second))
	if err == nil {
		p.Stop(htCtx(t, 5*time.Second))
		t.Fatal("Start with a broken config succeeded")
	}
	if p.Running() {
		t.Fatal("Running after a failed Start")
	}
	if !strings.Contains(err.Error(), "bogus_keyword") || !strings.Contains(err.Error(), "frontend lsn_x") {
		t.Fatalf("Start error does not carry the alert: %v", err)
	}
}

func TestProcessReloadUnderLoad(t *testing.T) {
	a, b := htMember(t, "a"), htMember(t, "b")
	conf := htConf{Servers: []htServer{{"mbr_a", htHostPort(a)}, {"mbr_b", htHostPort(b)}}}
	env := htStart(t, conf, nil)
	p := env.proc
	conf = env.conf

	const reloads = 50
	var ok, failed atomic.Int64
	var errMu sync.Mutex
	var errs []string
	stop := make(chan struct{})
	var wg sync.WaitGroup
	loadDeadline := time.Now().Add(90 * time.Second)
	for g := 0; g < 4; g++ {
		keepAlive := g%2 == 0
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := htClient(keepAlive)
			defer c.CloseIdleConnections()
			for i := 0; i < 100000 && time.Now().Before(loadDeadline); i++ {
				select {
				case <-stop:
					return
				default:
				}
				if _, _, err := htGet(c, env.url); err != nil {
					failed.Add(1)
					errMu.Lock()
					if len(errs) < 10 {
						errs = append(errs, fmt.Sprintf("keepalive=%v: %v", keepAlive, err))
					}
					errMu.Unlock()
					continue
				}
				ok.Add(1)
			}
		}()
	}

	before := htCurrentWorkers(t, p)
	st0, err := p.showProc(htCtx(t, 5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	done := 0
	start := time.Now()
	for i := 1; i <= reloads; i++ {
		conf.Gen = i
		htWriteFile(t, env.cfg, conf.render(t))
		if err := p.Reload(htCtx(t, 20*time.Second)); err != nil {
			close(stop)
			wg.Wait()
			t.Fatalf("reload %d: %v", i, err)
		}
		done++
	}
	elapsed := time.Since(start)
	// Keep the load on a little after the last reload, then stop it.
	time.Sleep(200 * time.Millisecond)
	close(stop)
	wg.Wait()

	st1, err := p.showProc(htCtx(t, 5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d reloads in %v; %d requests ok, %d failed", done, elapsed.Round(time.Millisecond), ok.Load(), failed.Load())
	if failed.Load() != 0 {
		t.Errorf("%d requests failed during reloads; first: %q", failed.Load(), errs)
	}
	if done != reloads || st1.Reloads-st0.Reloads != reloads || st1.FailedReloads != 0 {
		t.Errorf("reloads: done %d, master counter %d→%d (failed %d); want %d", done, st0.Reloads, st1.Reloads, st1.FailedReloads, reloads)
	}
	if ok.Load() < 100 {
		t.Errorf("only %d requests went through: the load loop did not run", ok.Load())
	}
	after := htCurrentWorkers(t, p)
	if len(after) != 1 || after[0].PID == before[0].PID {
		t.Errorf("workers before %+v, after %+v: want one new worker", before, after)
	}
	_, h, err := htGet(htClient(false), env.url)
	if err != nil || h.Get("X-Config-Gen") != fmt.Sprint(reloads) {
		t.Errorf("after the reloads: X-Config-Gen %q, err %v; want %d", h.Get("X-Config-Gen"), err, reloads)
	}
}

func TestProcessReloadFailureKeepsServing(t *testing.T) {
	a := htMember(t, "a")
	conf := htConf{Servers: []htServer{{"mbr_a", htHostPort(a)}}}
	env := htStart(t, conf, nil)
	p := env.proc
	conf = env.conf
	c := htClient(false)
	before := htCurrentWorkers(t, p)

	// 1. A configuration HAProxy cannot parse.
	broken := conf
	broken.Extra = "backend pool_broken\n    balance roundrobin\n    bogus_directive on\n"
	text := broken.render(t)
	htWriteFile(t, env.cfg, text)
	err := p.Reload(htCtx(t, 20*time.Second))
	var re *ReloadError
	if !errors.As(err, &re) {
		t.Fatalf("Reload of a broken config: %v; want *ReloadError", err)
	}
	wantLine := bytes.Count(text[:bytes.Index(text, []byte("bogus_directive"))], []byte("\n")) + 1
	if len(re.Alerts) == 0 || re.Alerts[0].Line != wantLine || re.Alerts[0].Section != "backend pool_broken" ||
		!strings.Contains(re.Alerts[0].Message, "bogus_directive") {
		t.Fatalf("alerts %+v; want line %d in backend pool_broken\noutput:\n%s", re.Alerts, wantLine, re.Output)
	}
	if m, _, err := htGet(c, env.url); err != nil || m != "a" {
		t.Fatalf("traffic after a failed reload: %q %v", m, err)
	}
	if cur := htCurrentWorkers(t, p); len(cur) != 1 || cur[0].PID != before[0].PID {
		t.Fatalf("workers after a failed reload: %+v; want the old one %d", cur, before[0].PID)
	}

	// 2. A configuration that parses but whose new listener cannot bind.
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	unbindable := conf
	unbindable.Extra = fmt.Sprintf("frontend lsn_busy\n    bind %s\n    default_backend pool_web\n", busy.Addr())
	htWriteFile(t, env.cfg, unbindable.render(t))
	if err := Check(htCtx(t, 10*time.Second), p.cfg.Binary, env.cfg); err != nil {
		t.Fatalf("the unbindable config should pass haproxy -c: %v", err)
	}
	err = p.Reload(htCtx(t, 20*time.Second))
	if !errors.As(err, &re) {
		t.Fatalf("Reload with a busy port: %v; want *ReloadError", err)
	}
	found := false
	for _, a := range re.Alerts {
		if a.Section == "frontend lsn_busy" && strings.Contains(a.Message, "cannot bind") {
			found = true
		}
	}
	if !found {
		t.Fatalf("alerts %+v; want a bind failure of frontend lsn_busy\noutput:\n%s", re.Alerts, re.Output)
	}
	if m, _, err := htGet(c, env.url); err != nil || m != "a" {
		t.Fatalf("traffic after a failed reload: %q %v", m, err)
	}

	// 3. Back to a good configuration: the reload goes through.
	conf.Gen = 7
	htWriteFile(t, env.cfg, conf.render(t))
	if err := p.Reload(htCtx(t, 20*time.Second)); err != nil {
		t.Fatalf("Reload after fixing the config: %v", err)
	}
	cur := htCurrentWorkers(t, p)
	if len(cur) != 1 || cur[0].PID == before[0].PID {
		t.Fatalf("workers after the good reload: %+v", cur)
	}
	if _, h, err := htGet(c, env.url); err != nil || h.Get("X-Config-Gen") != "7" {
		t.Fatalf("after the good reload: gen %q err %v", h.Get("X-Config-Gen"), err)
	}
}

func TestProcessSuperviseRestartsKilledMaster(t *testing.T) {
	a := htMember(t, "a")
	env := htStart(t, htConf{Servers: []htServer{{"mbr_a", htHostPort(a)}}}, func(pc *ProcessConfig) {
		pc.RestartBackoff = 100 * time.Millisecond
		pc.MaxRestartBackoff = time.Second
		pc.HealthyAfter = time.Minute // every death below counts as a crash loop
	})
	p := env.proc
	ctx, cancel := context.WithCancel(context.Background())
	supervised := make(chan struct{})
	go func() {
		defer close(supervised)
		p.Supervise(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-supervised:
		case <-time.After(10 * time.Second):
			t.Error("Supervise did not return after its context ended")
		}
	})

	c := htClient(false)
	if _, _, err := htGet(c, env.url); err != nil {
		t.Fatal(err)
	}
	// Rounds 1 and 2 kill the master; round 3 kills the worker, after which
	// the master exits too (HAProxy's default exit-on-failure).
	for round := 1; round <= 3; round++ {
		old := p.PID()
		oldWorkers := htCurrentWorkers(t, p)
		victim := old
		if round == 3 {
			victim = oldWorkers[0].PID
		}
		if err := syscall.Kill(victim, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		htEventually(t, 15*time.Second, "restart after SIGKILL", func() error {
			if pid := p.PID(); pid == 0 || pid == old {
				return fmt.Errorf("master pid %d", pid)
			}
			m, _, err := htGet(c, env.url)
			if err != nil {
				return err
			}
			if m != "a" {
				return fmt.Errorf("answered by %q", m)
			}
			return nil
		})
		cur := htCurrentWorkers(t, p)
		if len(cur) != 1 || cur[0].PID == oldWorkers[0].PID {
			t.Fatalf("round %d: workers %+v (old %+v)", round, cur, oldWorkers)
		}
		htEventually(t, 5*time.Second, "old worker gone", func() error {
			if processAlive(oldWorkers[0].PID) {
				return fmt.Errorf("worker %d alive", oldWorkers[0].PID)
			}
			return nil
		})
	}
	if !strings.Contains(env.logs.String(), "exited unexpectedly") || !strings.Contains(env.logs.String(), "haproxy restarted") {
		t.Errorf("restart not logged:\n%s", env.logs.String())
	}
	// The first three crashes in a row were restarted at once; a fourth is a
	// crash loop and waits RestartBackoff.
	for i := 1; i <= 3; i++ {
		if want := fmt.Sprintf(`msg="restarting haproxy" component=haproxy in=0s crashes_in_a_row=%d`, i); !strings.Contains(env.logs.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, env.logs.String())
		}
	}
	old := p.PID()
	if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	htEventually(t, 15*time.Second, "restart after a fourth SIGKILL", func() error {
		if pid := p.PID(); pid == 0 || pid == old {
			return fmt.Errorf("master pid %d", pid)
		}
		return nil
	})
	if want := `in=100ms crashes_in_a_row=4`; !strings.Contains(env.logs.String(), want) {
		t.Errorf("log lacks %q:\n%s", want, env.logs.String())
	}

	// Stop is not undone by Supervise.
	if err := p.Stop(htCtx(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond) // several backoff periods
	if p.Running() {
		t.Fatal("Supervise restarted a stopped process")
	}
}

// A master that lived HealthyAfter resets the crash count: however many
// times it dies, each death is restarted at once.
func TestProcessSuperviseBackoffResetsAfterHealth(t *testing.T) {
	a := htMember(t, "a")
	env := htStart(t, htConf{Servers: []htServer{{"mbr_a", htHostPort(a)}}}, func(pc *ProcessConfig) {
		pc.HealthyAfter = 300 * time.Millisecond
		pc.CrashLoopRestarts = 1
		pc.RestartBackoff = 5 * time.Second
	})
	p := env.proc
	ctx, cancel := context.WithCancel(context.Background())
	supervised := make(chan struct{})
	go func() {
		defer close(supervised)
		p.Supervise(ctx)
	}()
	t.Cleanup(func() { cancel(); <-supervised })
	for i := 0; i < 4; i++ {
		time.Sleep(500 * time.Millisecond) // healthy for longer than HealthyAfter
		old := p.PID()
		if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		htEventually(t, 4*time.Second, "restart at once", func() error {
			if pid := p.PID(); pid == 0 || pid == old {
				return fmt.Errorf("master pid %d", pid)
			}
			return nil
		})
	}
	if got := strings.Count(env.logs.String(), "in=0s crashes_in_a_row=1"); got != 4 {
		t.Errorf("%d immediate restarts logged, want 4:\n%s", got, env.logs.String())
	}
}

// htPrev starts an HAProxy the way an earlier agent run did and left it
// behind (in its own process group), with its master socket at sock, and
// waits until it serves.
func htPrev(t *testing.T, conf htConf, sock string) (*exec.Cmd, <-chan struct{}) {
	t.Helper()
	cfg := filepath.Join(conf.Dir, "haproxy.cfg")
	prev := exec.Command(htBinary(t), "-W", "-db", "-S", sock+",level,admin",
		"-f", cfg, "-p", filepath.Join(conf.Dir, "haproxy.pid"))
	prev.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := prev.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { prev.Wait(); close(done) }()
	t.Cleanup(func() {
		syscall.Kill(-prev.Process.Pid, syscall.SIGKILL)
		<-done
	})
	htEventually(t, 10*time.Second, "previous haproxy up", func() error {
		out, err := cliExchange(htCtx(t, time.Second), sock, "show proc")
		if err != nil {
			return err
		}
		st, err := parseShowProc(out)
		if err != nil {
			return err
		}
		if st.MasterPID != prev.Process.Pid || len(st.current()) == 0 {
			return fmt.Errorf("not ready: %+v", st)
		}
		return nil
	})
	return prev, done
}

// htLoad sends requests on fresh connections until stop is called, which
// returns how many were sent and how many failed.
func htLoad(t *testing.T, url string) (stop func() (sent, failed int64)) {
	var sent, failed atomic.Int64
	var firstErr atomic.Value
	quit := make(chan struct{})
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := htClient(false)
			for {
				select {
				case <-quit:
					return
				default:
				}
				sent.Add(1)
				if _, _, err := htGet(c, url); err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
				}
				time.Sleep(2 * time.Millisecond)
			}
		}()
	}
	return func() (int64, int64) {
		close(quit)
		wg.Wait()
		if e := firstErr.Load(); e != nil {
			t.Logf("first failed request: %v", e)
		}
		return sent.Load(), failed.Load()
	}
}

// A master left by an earlier run is taken over — adopted and reloaded with
// the current configuration — without refusing a request; Release leaves it
// serving for the next Process.
func TestProcessTakesOverPreviousRun(t *testing.T) {
	a := htMember(t, "a")
	conf := htConf{Dir: htDir(t), Port: freePort(t), Gen: 1, Servers: []htServer{{"mbr_a", htHostPort(a)}}}
	htWriteFile(t, filepath.Join(conf.Dir, "haproxy.cfg"), conf.render(t))
	prev, prevDone := htPrev(t, conf, filepath.Join(conf.Dir, "master.sock"))
	url := fmt.Sprintf("http://127.0.0.1:%d/", conf.Port)
	stopLoad := htLoad(t, url)

	conf.Gen = 2
	env := htStart(t, conf, nil) // writes generation 2, then takes over
	p := env.proc
	if p.PID() != prev.Process.Pid {
		t.Fatalf("master %d, want the previous one (%d) taken over", p.PID(), prev.Process.Pid)
	}
	if _, h, err := htGet(htClient(false), url); err != nil || h.Get("X-Config-Gen") != "2" {
		t.Fatalf("after takeover: generation %q, %v; want the current configuration", h.Get("X-Config-Gen"), err)
	}

	// The agent exits and leaves HAProxy; the next one takes over again.
	p.Release()
	if p.PID() != 0 || !processAlive(prev.Process.Pid) {
		t.Fatal("Release did not leave the master running")
	}
	logger, _ := htLogger(t)
	p2 := NewProcess(ProcessConfig{Binary: htBinary(t), ConfigPath: env.cfg, Dir: conf.Dir, Logger: logger, StopTimeout: 3 * time.Second})
	if err := p2.Start(htCtx(t, 20*time.Second)); err != nil {
		t.Fatal(err)
	}
	if p2.PID() != prev.Process.Pid {
		t.Fatalf("second takeover: master %d, want %d", p2.PID(), prev.Process.Pid)
	}
	if err := p2.Reload(htCtx(t, 20*time.Second)); err != nil {
		t.Fatalf("Reload after takeover: %v", err)
	}
	time.Sleep(300 * time.Millisecond)
	sent, failed := stopLoad()
	t.Logf("requests during two takeovers and reloads: %d sent, %d failed", sent, failed)
	if failed != 0 || sent == 0 {
		t.Fatalf("%d of %d requests failed", failed, sent)
	}
	// An adopted master is supervised: Stop stops it, and its end is seen.
	if err := p2.Stop(htCtx(t, 15*time.Second)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-prevDone:
	case <-time.After(10 * time.Second):
		t.Fatal("the adopted master did not stop")
	}
	if !strings.Contains(env.logs.String(), "took over the running haproxy") {
		t.Errorf("takeover not logged:\n%s", env.logs.String())
	}
}

// TakeOver adopts the master an earlier run left as it runs: not reloaded
// (the configuration file, changed meanwhile, is not loaded), supervised, and
// every other master of the configuration stopped. Without a master to take
// over it reports false and starts nothing.
func TestProcessTakeOverKeepsWhatRuns(t *testing.T) {
	a := htMember(t, "a")
	conf := htConf{Dir: htDir(t), Port: freePort(t), Gen: 1, Servers: []htServer{{"mbr_a", htHostPort(a)}}}
	cfgPath := filepath.Join(conf.Dir, "haproxy.cfg")
	sock := filepath.Join(conf.Dir, "master.sock")
	logger, logs := htLogger(t)
	newProc := func() *Process {
		return NewProcess(ProcessConfig{Binary: htBinary(t), ConfigPath: cfgPath, Dir: conf.Dir, Logger: logger, StopTimeout: 3 * time.Second})
	}

	htWriteFile(t, cfgPath, conf.render(t))
	none := newProc()
	if ok, err := none.TakeOver(htCtx(t, 20*time.Second)); ok || err != nil {
		t.Fatalf("TakeOver without a master: %v, %v; want false, nil", ok, err)
	}
	if none.Running() || len(none.Masters()) != 0 {
		t.Fatalf("TakeOver without a master started one: %v", none.Masters())
	}

	older, olderDone := htPrev(t, conf, sock)
	prev, prevDone := htPrev(t, conf, sock) // rebinds the master socket
	url := fmt.Sprintf("http://127.0.0.1:%d/", conf.Port)
	before, err := cliExchange(htCtx(t, 5*time.Second), sock, "show proc")
	if err != nil {
		t.Fatal(err)
	}
	stBefore, err := parseShowProc(before)
	if err != nil {
		t.Fatal(err)
	}

	conf.Gen = 2 // what this run would serve: not loaded by TakeOver
	htWriteFile(t, cfgPath, conf.render(t))
	p := newProc()
	ok, err := p.TakeOver(htCtx(t, 20*time.Second))
	if !ok || err != nil {
		t.Fatalf("TakeOver: %v, %v\n%s", ok, err, logs.String())
	}
	t.Cleanup(func() { p.Stop(context.Background()) })
	if p.PID() != prev.Process.Pid || !p.Running() {
		t.Fatalf("master %d (running %v), want %d taken over", p.PID(), p.Running(), prev.Process.Pid)
	}
	after, err := p.showProc(htCtx(t, 5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if after.Reloads != stBefore.Reloads {
		t.Fatalf("the master reloaded %d times at TakeOver", after.Reloads-stBefore.Reloads)
	}
	if _, h, err := htGet(htClient(false), url); err != nil || h.Get("X-Config-Gen") != "1" {
		t.Fatalf("after TakeOver: generation %q, %v; want 1 (what ran)", h.Get("X-Config-Gen"), err)
	}
	select {
	case <-olderDone:
	case <-time.After(15 * time.Second):
		t.Fatalf("the stale master %d was not stopped", older.Process.Pid)
	}
	// Then a reload brings the current configuration.
	stopLoad := htLoad(t, url)
	if err := p.Reload(htCtx(t, 20*time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, h, err := htGet(htClient(false), url); err != nil || h.Get("X-Config-Gen") != "2" {
		t.Fatalf("after the reload: generation %q, %v; want 2", h.Get("X-Config-Gen"), err)
	}
	sent, failed := stopLoad()
	t.Logf("requests across the reload after TakeOver: %d sent, %d failed", sent, failed)
	if failed != 0 || sent == 0 {
		t.Fatalf("%d of %d requests failed", failed, sent)
	}
	// Supervised: a second TakeOver is a no-op, Stop stops it.
	if ok, err := p.TakeOver(htCtx(t, 5*time.Second)); !ok || err != nil {
		t.Fatalf("TakeOver while running: %v, %v", ok, err)
	}
	if err := p.Stop(htCtx(t, 15*time.Second)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-prevDone:
	case <-time.After(10 * time.Second):
		t.Fatal("the master taken over did not stop")
	}
}

// Every other HAProxy of the same configuration is stopped at Start: one
// whose master socket was taken by a later one, or (when none answers on
// the master socket) one that cannot be controlled.
func TestProcessStopsStaleMasters(t *testing.T) {
	t.Run("two_masters", func(t *testing.T) {
		a := htMember(t, "a")
		conf := htConf{Dir: htDir(t), Port: freePort(t), Servers: []htServer{{"mbr_a", htHostPort(a)}}}
		htWriteFile(t, filepath.Join(conf.Dir, "haproxy.cfg"), conf.render(t))
		sock := filepath.Join(conf.Dir, "master.sock")
		older, olderDone := htPrev(t, conf, sock)
		newer, _ := htPrev(t, conf, sock) // rebinds the master socket
		env := htStart(t, conf, nil)
		if env.proc.PID() != newer.Process.Pid {
			t.Fatalf("took over %d, want %d (the master socket's)", env.proc.PID(), newer.Process.Pid)
		}
		select {
		case <-olderDone:
		case <-time.After(15 * time.Second):
			t.Fatalf("the stale master %d was not stopped", older.Process.Pid)
		}
		if got := env.proc.Masters(); fmt.Sprint(got) != fmt.Sprint([]int{newer.Process.Pid}) {
			t.Fatalf("masters %v, want only %d", got, newer.Process.Pid)
		}
	})
	for _, global := range []string{"", "noreuseport"} {
		t.Run("unreachable"+global, func(t *testing.T) {
			a := htMember(t, "a")
			conf := htConf{Dir: htDir(t), Port: freePort(t), Servers: []htServer{{"mbr_a", htHostPort(a)}}, Global: global}
			htWriteFile(t, filepath.Join(conf.Dir, "haproxy.cfg"), conf.render(t))
			prev, prevDone := htPrev(t, conf, filepath.Join(conf.Dir, "other.sock"))
			stopLoad := htLoad(t, fmt.Sprintf("http://127.0.0.1:%d/", conf.Port))
			env := htStart(t, conf, nil)
			if env.proc.PID() == prev.Process.Pid || env.proc.PID() == 0 {
				t.Fatalf("master %d", env.proc.PID())
			}
			select {
			case <-prevDone:
			case <-time.After(15 * time.Second):
				t.Fatal("the unreachable haproxy was not stopped")
			}
			// Not adopted: a new master next to the old one (or after it,
			// without SO_REUSEPORT). Not hitless; the figure is for comparison.
			sent, failed := stopLoad()
			t.Logf("new master instead of a takeover (%q): %d requests, %d failed", global, sent, failed)
			if m, _, err := htGet(htClient(false), env.url); err != nil || m != "a" {
				t.Fatalf("traffic: %q %v", m, err)
			}
			if got := env.proc.Masters(); fmt.Sprint(got) != fmt.Sprint([]int{env.proc.PID()}) {
				t.Fatalf("masters %v, want only %d", got, env.proc.PID())
			}
		})
	}
}

func TestProcessParseShowProc(t *testing.T) {
	out := "#<PID>          <type>          <reloads>       <uptime>        <version>      \n" +
		"9865            master          3 [failed: 1]   0d00h01m07s     2.6.12-1+deb12u4\n" +
		"# workers\n" +
		"12018           worker          0               0d00h00m01s     2.6.12-1+deb12u4\n" +
		"# old workers\n" +
		"11522           worker          1               0d00h00m42s     2.6.12-1+deb12u4\n" +
		"# programs\n" +
		"1244            foo             0               0d00h00m00s     -\n\n"
	st, err := parseShowProc(out)
	if err != nil {
		t.Fatal(err)
	}
	want := procStatus{MasterPID: 9865, Reloads: 3, FailedReloads: 1, Workers: []Worker{
		{PID: 12018, Reloads: 0, Uptime: "0d00h00m01s", Version: "2.6.12-1+deb12u4"},
		{PID: 11522, Reloads: 1, Uptime: "0d00h00m42s", Version: "2.6.12-1+deb12u4", Old: true},
	}}
	if fmt.Sprint(st) != fmt.Sprint(want) {
		t.Fatalf("got %+v\nwant %+v", st, want)
	}
	if cur := st.current(); len(cur) != 1 || cur[0].PID != 12018 {
		t.Fatalf("current = %+v", cur)
	}
	if _, err := parseShowProc("Unknown command.\n"); err == nil {
		t.Fatal("no error for a non-`show proc` answer")
	}
}

func TestProcessOutputRing(t *testing.T) {
	r := newOutputRing(3)
	s0 := r.seq()
	for i := 0; i < 5; i++ {
		r.add(fmt.Sprint(i))
	}
	if got := r.since(s0); fmt.Sprint(got) != "[2 3 4]" {
		t.Fatalf("since(0) = %v", got)
	}
	if got := r.since(4); fmt.Sprint(got) != "[4]" {
		t.Fatalf("since(4) = %v", got)
	}
	if got := r.since(5); len(got) != 0 {
		t.Fatalf("since(5) = %v", got)
	}
	// Wrapped many times: still the last three, in order, and a full ring
	// takes a line without allocating.
	for i := 5; i < 1000; i++ {
		r.add(fmt.Sprint(i))
	}
	if got := r.since(0); fmt.Sprint(got) != "[997 998 999]" {
		t.Fatalf("since(0) after 1000 lines = %v", got)
	}
	if got := r.since(998); fmt.Sprint(got) != "[998 999]" {
		t.Fatalf("since(998) = %v", got)
	}
	if n := testing.AllocsPerRun(100, func() { r.add("x") }); n != 0 {
		t.Fatalf("add allocates %v times", n)
	}
}
