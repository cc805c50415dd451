package haproxy

import (
	"bufio"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func htServerStat(t *testing.T, rt Runtime, backend, server string) (ServerStat, bool) {
	t.Helper()
	_, servers, err := rt.Stats(htCtx(t, 5*time.Second))
	if err != nil {
		t.Fatalf("Stats: %v", err)
	}
	for _, s := range servers {
		if s.Backend == backend && s.Server == server {
			return s, true
		}
	}
	return ServerStat{}, false
}

func htWaitStatus(t *testing.T, rt Runtime, server, status string) ServerStat {
	t.Helper()
	var st ServerStat
	htEventually(t, 5*time.Second, server+" status "+status, func() error {
		var ok bool
		st, ok = htServerStat(t, rt, "pool_web", server)
		if !ok {
			return errors.New("not in stats")
		}
		if st.Status != status {
			return fmt.Errorf("status %q", st.Status)
		}
		return nil
	})
	return st
}

func TestRuntimeChangesWithoutReload(t *testing.T) {
	a, b, c, d := htMember(t, "a"), htMember(t, "b"), htMember(t, "c"), htMember(t, "d")
	env := htStart(t, htConf{Servers: []htServer{{"mbr_a", htHostPort(a)}, {"mbr_b", htHostPort(b)}}}, nil)
	rt, p := env.rt, env.proc
	cl := htClient(true)
	ctx := htCtx(t, 60*time.Second)

	st0, err := p.showProc(ctx)
	if err != nil {
		t.Fatal(err)
	}
	workers0 := htCurrentWorkers(t, p)
	if len(workers0) != 1 {
		t.Fatalf("workers: %+v", workers0)
	}

	// Stats: frontend, backends, servers.
	proxies, servers, err := rt.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]string{}
	for _, px := range proxies {
		kinds[px.Name] = px.Type
	}
	if kinds["lsn_web"] != "frontend" || kinds["pool_web"] != "backend" {
		t.Fatalf("proxies: %+v", proxies)
	}
	if len(servers) != 3 {
		t.Fatalf("servers: %+v", servers)
	}
	sa := htWaitStatus(t, rt, "mbr_a", "UP")
	if sa.Weight != 1 || sa.Addr != htHostPort(a) || sa.CheckStatus == "" {
		t.Fatalf("mbr_a stat: %+v", sa)
	}

	if got := htSpread(t, cl, env.url, 20); got["a"] != 10 || got["b"] != 10 {
		t.Fatalf("initial spread: %v", got)
	}
	_, servers, _ = rt.Stats(ctx)
	for _, s := range servers {
		if s.Server == "mbr_a" && (s.TotalSessions < 1 || s.HRsp2xx != 10 || s.BytesOut == 0) {
			t.Errorf("mbr_a counters after 10 requests: %+v", s)
		}
	}
	proxies, _, _ = rt.Stats(ctx)
	for _, px := range proxies {
		if px.Name == "lsn_web" && (px.Requests < 20 || px.HRsp2xx < 20 || px.Errors != 0) {
			t.Errorf("lsn_web counters after 20 requests: %+v", px)
		}
	}

	// Weight.
	if err := rt.SetWeight(ctx, "pool_web", "mbr_a", 3); err != nil {
		t.Fatal(err)
	}
	if s, _ := htServerStat(t, rt, "pool_web", "mbr_a"); s.Weight != 3 || s.UserWeight != 3 {
		t.Fatalf("weight after SetWeight 3: %+v", s)
	}
	if got := htSpread(t, cl, env.url, 40); got["a"] < 27 || got["a"] > 33 {
		t.Fatalf("weights 3:1 over 40 requests: %v", got)
	}
	if err := rt.SetWeight(ctx, "pool_web", "mbr_a", 1); err != nil {
		t.Fatal(err)
	}

	// Drain, maint, ready.
	for _, tc := range []struct{ state, status string }{{"drain", "DRAIN"}, {"maint", "MAINT"}} {
		if err := rt.SetState(ctx, "pool_web", "mbr_a", tc.state); err != nil {
			t.Fatal(err)
		}
		htWaitStatus(t, rt, "mbr_a", tc.status)
		if got := htSpread(t, cl, env.url, 10); got["a"] != 0 || got["b"] != 10 {
			t.Fatalf("spread with mbr_a %s: %v", tc.state, got)
		}
	}
	if err := rt.SetState(ctx, "pool_web", "mbr_a", "ready"); err != nil {
		t.Fatal(err)
	}
	htWaitStatus(t, rt, "mbr_a", "UP")
	if got := htSpread(t, cl, env.url, 10); got["a"] == 0 {
		t.Fatalf("spread with mbr_a ready again: %v", got)
	}

	// Address: mbr_b now points at c.
	if err := rt.SetAddr(ctx, "pool_web", "mbr_b", "127.0.0.1", htPort(c)); err != nil {
		t.Fatal(err)
	}
	if s, _ := htServerStat(t, rt, "pool_web", "mbr_b"); s.Addr != htHostPort(c) {
		t.Fatalf("addr after SetAddr: %+v", s)
	}
	if got := htSpread(t, cl, env.url, 20); got["b"] != 0 || got["c"] != 10 || got["a"] != 10 {
		t.Fatalf("spread after SetAddr: %v", got)
	}
	if err := rt.SetAddr(ctx, "pool_web", "mbr_b", "127.0.0.1", 0); err != nil {
		t.Fatalf("SetAddr without a port change: %v", err)
	}

	// Add a server, with a health check.
	if err := rt.AddServer(ctx, "pool_web", "mbr_d", htHostPort(d), "check inter 1s weight 2"); err != nil {
		t.Fatal(err)
	}
	sd := htWaitStatus(t, rt, "mbr_d", "UP")
	if sd.Weight != 2 || sd.Addr != htHostPort(d) {
		t.Fatalf("mbr_d stat: %+v", sd)
	}
	if got := htSpread(t, cl, env.url, 40); got["d"] < 16 || got["d"] > 24 || got["a"]+got["c"]+got["d"] != 40 {
		t.Fatalf("spread with mbr_d (weight 2 of 4): %v", got)
	}
	err = rt.AddServer(ctx, "pool_web", "mbr_d", htHostPort(d), "")
	var ce *CommandError
	if !errors.As(err, &ce) || !strings.Contains(ce.Message, "Already exists") {
		t.Fatalf("adding mbr_d twice: %v", err)
	}

	// Delete it again (the keep-alive client may hold idle connections through it).
	if err := rt.DelServer(ctx, "pool_web", "mbr_d"); err != nil {
		t.Fatal(err)
	}
	if _, ok := htServerStat(t, rt, "pool_web", "mbr_d"); ok {
		t.Fatal("mbr_d still in stats after DelServer")
	}
	if got := htSpread(t, cl, env.url, 20); got["d"] != 0 || got["a"] != 10 || got["c"] != 10 {
		t.Fatalf("spread after DelServer: %v", got)
	}
	if err := rt.DelServer(ctx, "pool_web", "mbr_d"); !errors.As(err, &ce) || !strings.Contains(ce.Message, "No such server") {
		t.Fatalf("deleting mbr_d twice: %v", err)
	}

	// HAProxy's own refusals come back as *CommandError.
	if err := rt.SetWeight(ctx, "pool_web", "mbr_nope", 1); !errors.As(err, &ce) || !strings.Contains(ce.Message, "No such server") {
		t.Fatalf("SetWeight of an unknown server: %v", err)
	}
	if err := rt.SetState(ctx, "pool_nope", "mbr_a", "drain"); !errors.As(err, &ce) {
		t.Fatalf("SetState in an unknown backend: %v", err)
	}
	if err := rt.AddServer(ctx, "pool_static", "mbr_s2", "127.0.0.1:9", ""); !errors.As(err, &ce) || !strings.Contains(ce.Message, "dynamic load balancing") {
		t.Fatalf("add server to a static-rr backend: %v", err)
	}
	if err := rt.AddServer(ctx, "pool_web", "mbr_e", "127.0.0.1:9", "bogus-keyword"); !errors.As(err, &ce) {
		t.Fatalf("add server with an unknown keyword: %v", err)
	}
	if _, ok := htServerStat(t, rt, "pool_web", "mbr_e"); ok {
		t.Fatal("mbr_e exists after a failed add")
	}
	if _, err := rt.Command(ctx, "no such command"); !errors.As(err, &ce) {
		t.Fatalf("unknown command: %v", err)
	}
	if out, err := rt.Command(ctx, "show info"); err != nil || !strings.Contains(out, fmt.Sprintf("Pid: %d", workers0[0].PID)) {
		t.Fatalf("show info: %v\n%s", err, out)
	}

	// None of this reloaded HAProxy.
	st1, err := p.showProc(ctx)
	if err != nil {
		t.Fatal(err)
	}
	workers1 := htCurrentWorkers(t, p)
	if st1.Reloads != st0.Reloads || len(workers1) != 1 || workers1[0].PID != workers0[0].PID {
		t.Fatalf("a reload happened: reloads %d→%d, workers %+v→%+v", st0.Reloads, st1.Reloads, workers0, workers1)
	}
	if ws, _ := p.Workers(ctx); len(ws) != 1 {
		t.Fatalf("old workers appeared: %+v", ws)
	}
}

func TestRuntimeAddServerIPv6AndDisabled(t *testing.T) {
	a := htMember(t, "a")
	env := htStart(t, htConf{Servers: []htServer{{"mbr_a", htHostPort(a)}}}, nil)
	rt := env.rt
	ctx := htCtx(t, 30*time.Second)
	if err := rt.AddServer(ctx, "pool_web", "mbr_v6", "[::1]:9", "disabled weight 5"); err != nil {
		t.Fatal(err)
	}
	s, ok := htServerStat(t, rt, "pool_web", "mbr_v6")
	if !ok || s.Status != "MAINT" || s.UserWeight != 5 || !strings.Contains(s.Addr, "::1") {
		t.Fatalf("mbr_v6: %+v (found %v)", s, ok)
	}
	if got := htSpread(t, htClient(false), env.url, 5); got["a"] != 5 {
		t.Fatalf("a disabled server took traffic: %v", got)
	}
	if err := rt.DelServer(ctx, "pool_web", "mbr_v6"); err != nil {
		t.Fatal(err)
	}
}

func TestRuntimeRefusesBadArguments(t *testing.T) {
	// Nothing listens there: every call must fail before dialing.
	rt := Runtime{Socket: filepath.Join(t.TempDir(), "none.sock")}
	ctx := context.Background()
	bad := []string{"", "pool web", "pool;x", "pool\nx", "pool/x", "pool\x00", "pööl", "a'b", strings.Repeat("x", 129)}
	for _, name := range bad {
		checks := map[string]error{
			"SetWeight backend": rt.SetWeight(ctx, name, "mbr_a", 1),
			"SetWeight server":  rt.SetWeight(ctx, "pool_a", name, 1),
			"SetState":          rt.SetState(ctx, "pool_a", name, "drain"),
			"SetAddr":           rt.SetAddr(ctx, name, "mbr_a", "127.0.0.1", 80),
			"AddServer":         rt.AddServer(ctx, "pool_a", name, "127.0.0.1:80", ""),
			"DelServer":         rt.DelServer(ctx, name, "mbr_a"),
		}
		for what, err := range checks {
			if !errors.Is(err, ErrInvalidArgument) {
				t.Errorf("%s(%q): %v; want ErrInvalidArgument", what, name, err)
			}
		}
	}
	for _, err := range []error{
		rt.SetWeight(ctx, "pool_a", "mbr_a", -1),
		rt.SetWeight(ctx, "pool_a", "mbr_a", 257),
		rt.SetState(ctx, "pool_a", "mbr_a", "up"),
		rt.SetState(ctx, "pool_a", "mbr_a", "ready; shutdown sessions"),
		rt.SetAddr(ctx, "pool_a", "mbr_a", "example.com", 80),
		rt.SetAddr(ctx, "pool_a", "mbr_a", "127.0.0.1 port 1", 80),
		rt.SetAddr(ctx, "pool_a", "mbr_a", "fe80::1%eth0", 80),
		rt.SetAddr(ctx, "pool_a", "mbr_a", "127.0.0.1", 70000),
		rt.AddServer(ctx, "pool_a", "mbr_a", "example.com:80", ""),
		rt.AddServer(ctx, "pool_a", "mbr_a", "127.0.0.1", ""),
		rt.AddServer(ctx, "pool_a", "mbr_a", "127.0.0.1:0", ""),
		rt.AddServer(ctx, "pool_a", "mbr_a", "127.0.0.1:80", "check; shutdown sessions server pool_a/mbr_b"),
		rt.AddServer(ctx, "pool_a", "mbr_a", "127.0.0.1:80", "check\nshutdown frontend lsn_x"),
		rt.AddServer(ctx, "pool_a", "mbr_a", "127.0.0.1:80", "check\rx"),
		rt.AddServer(ctx, "pool_a", "mbr_a", "127.0.0.1:80", "check\tx"),
		rt.AddServer(ctx, "pool_a", "mbr_a", "127.0.0.1:80", `check \; x`),
		rt.AddServer(ctx, "pool_a", "mbr_a", "127.0.0.1:80", "check \u2028 x"),
	} {
		if !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("got %v; want ErrInvalidArgument", err)
		}
	}
	for _, cmd := range []string{"", "show info\nshutdown frontend x", "show stat\r"} {
		if _, err := rt.Command(ctx, cmd); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("Command(%q): %v; want ErrInvalidArgument", cmd, err)
		}
	}
}

func TestRuntimeCLIErrorMessage(t *testing.T) {
	errs := []string{
		"No such server.\n\n",
		"No such backend.\n",
		"Unknown command, but maybe one of the following ones is a better match:\n  add map ...\n",
		"'set server <srv> state' expects 'ready', 'drain' and 'maint'.\n\n",
		"Absolute weight can only be between 0 and 256 inclusive.\n\n",
		"Invalid addr 'foo.invalid' by 'stats socket command'\n\n",
		"Already exists a server with the same name in backend.\n\n",
		"Only servers in maintenance mode can be deleted.\n",
		"unknown keyword 'bogus'.\n\n",
		"Backend must use a dynamic load balancing to support dynamic servers.\n",
		"Server still has connections attached to it, cannot remove it.\n",
		"Permission denied\n",
		"Require 'backend/server'.\n",
		"Can't find the target PID matching the prefix '@!99999'\n",
	}
	for _, e := range errs {
		if _, bad := cliErrorMessage(e); !bad {
			t.Errorf("%q not recognised as an error", e)
		}
	}
	oks := []string{
		"", "\n", "New server registered.\n\n", "Server deleted.\n",
		"IP changed from '127.0.0.1' to '::1', no need to change the port by 'stats socket command'\n\n",
		"no need to change the addr, port changed from '28081' to '28083' by 'stats socket command'\n\n",
		"Name: HAProxy\nVersion: 2.6.12\n",
		"# pxname,svname,qcur\n",
		"#<PID>          <type>          <reloads>\n",
		"1\n# be_id be_name srv_id\n",
	}
	for _, o := range oks {
		if msg, bad := cliErrorMessage(o); bad {
			t.Errorf("%q taken for an error (%q)", o, msg)
		}
	}
}

func TestRuntimeParseStatCSV(t *testing.T) {
	header := strings.Split("pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,wredis,status,weight,act,bck,chkfail,chkdown,lastchg,downtime,qlimit,pid,iid,sid,throttle,lbtot,tracked,type,rate,rate_lim,rate_max,check_status,check_code,check_duration,hrsp_1xx,hrsp_2xx,hrsp_3xx,hrsp_4xx,hrsp_5xx,hrsp_other,hanafail,req_rate,req_rate_max,req_tot,cli_abrt,srv_abrt,comp_in,comp_out,comp_byp,comp_rsp,lastsess,last_chk,last_agt,qtime,ctime,rtime,ttime,agent_status,agent_code,agent_duration,check_desc,agent_desc,check_rise,check_fall,check_health,agent_rise,agent_fall,agent_health,addr,cookie,mode,algo,conn_rate,conn_rate_max,conn_tot,intercepted,dcon,dses,wrew,connect,reuse,cache_lookups,cache_hits,srv_icur,src_ilim,qtime_max,ctime_max,rtime_max,ttime_max,eint,idle_conn_cur,safe_conn_cur,used_conn_cur,need_conn_est,uweight,agg_server_status,agg_server_check_status,agg_check_status,-", ",")
	row := func(vals map[string]string) string {
		var b strings.Builder
		w := csv.NewWriter(&b)
		rec := make([]string, len(header)+1) // HAProxy ends rows with a comma
		for i, h := range header {
			rec[i] = vals[h]
		}
		w.Write(rec)
		w.Flush()
		return b.String()
	}
	out := "# " + strings.Join(header, ",") + ",\n" +
		row(map[string]string{"pxname": "lsn_a", "svname": "FRONTEND", "type": "0", "status": "OPEN", "scur": "1", "stot": "7",
			"bin": "100", "bout": "200", "ereq": "1", "hrsp_2xx": "5", "hrsp_4xx": "1", "req_tot": "6", "mode": "http"}) +
		row(map[string]string{"pxname": "pool_a", "svname": "mbr_1", "type": "2", "status": "DRAIN", "weight": "0", "uweight": "3",
			"check_status": "L4OK", "check_desc": "Layer4, ok", "addr": "127.0.0.1:28081", "stot": "3", "econ": "2",
			"chkfail": "4", "hrsp_2xx": "3", "bck": "0"}) +
		row(map[string]string{"pxname": "pool_a", "svname": "BACKEND", "type": "1", "status": "UP", "act": "2",
			"algo": "roundrobin", "econ": "2", "eresp": "1", "weight": "4"}) +
		"\n"
	proxies, servers, err := parseStatCSV(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(proxies) != 2 || len(servers) != 1 {
		t.Fatalf("proxies %+v servers %+v", proxies, servers)
	}
	fe, be, s := proxies[0], proxies[1], servers[0]
	if fe.Name != "lsn_a" || fe.Type != "frontend" || fe.Status != "OPEN" || fe.CurrentSessions != 1 || fe.TotalSessions != 7 ||
		fe.BytesIn != 100 || fe.BytesOut != 200 || fe.HRsp2xx != 5 || fe.HRsp4xx != 1 || fe.Requests != 6 || fe.Errors != 1 || fe.Mode != "http" {
		t.Errorf("frontend: %+v", fe)
	}
	if be.Name != "pool_a" || be.Type != "backend" || be.Status != "UP" || be.ActiveServers != 2 || be.Algorithm != "roundrobin" ||
		be.Errors != 3 || be.Weight != 4 {
		t.Errorf("backend: %+v", be)
	}
	if s.Backend != "pool_a" || s.Server != "mbr_1" || s.Status != "DRAIN" || s.Weight != 0 || s.UserWeight != 3 ||
		s.CheckStatus != "L4OK" || s.CheckDesc != "Layer4, ok" || s.Addr != "127.0.0.1:28081" || s.TotalSessions != 3 ||
		s.ConnectionErrors != 2 || s.ChecksFailed != 4 || s.HRsp2xx != 3 || s.Backup {
		t.Errorf("server: %+v", s)
	}
	if _, _, err := parseStatCSV("Unknown command.\n"); err == nil {
		t.Error("no error for a non-CSV answer")
	}
}

func TestRuntimeDelServerWaitsForConnections(t *testing.T) {
	a := htMember(t, "a")
	release := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-time.After(5 * time.Second):
		}
		io.WriteString(w, "slow")
	}))
	t.Cleanup(slow.Close)
	env := htStart(t, htConf{Servers: []htServer{{"mbr_a", htHostPort(a)}}}, nil)
	rt := env.rt
	ctx := htCtx(t, 30*time.Second)
	if err := rt.AddServer(ctx, "pool_web", "mbr_slow", htHostPort(slow), ""); err != nil {
		t.Fatal(err)
	}
	if err := rt.SetState(ctx, "pool_web", "mbr_a", "maint"); err != nil {
		t.Fatal(err)
	}
	type result struct {
		body string
		err  error
	}
	res := make(chan result, 1)
	go func() {
		m, _, err := htGet(htClient(false), env.url)
		res <- result{m, err}
	}()
	htEventually(t, 5*time.Second, "request in flight on mbr_slow", func() error {
		if s, _ := htServerStat(t, rt, "pool_web", "mbr_slow"); s.CurrentSessions != 1 {
			return fmt.Errorf("scur %d", s.CurrentSessions)
		}
		return nil
	})
	time.AfterFunc(700*time.Millisecond, func() { close(release) })
	start := time.Now()
	if err := rt.DelServer(ctx, "pool_web", "mbr_slow"); err != nil {
		t.Fatalf("DelServer with a request in flight: %v", err)
	}
	if waited := time.Since(start); waited < 500*time.Millisecond {
		t.Errorf("DelServer returned after %v, while a request was in flight", waited)
	}
	select {
	case r := <-res:
		if r.err != nil || r.body != "slow" {
			t.Fatalf("the in-flight request was cut: %q %v", r.body, r.err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the in-flight request did not finish")
	}
	if _, ok := htServerStat(t, rt, "pool_web", "mbr_slow"); ok {
		t.Fatal("mbr_slow still listed")
	}
}

// slowMember answers "slow" after sleep, with its headers and a first line
// sent at once, so a request cut in between reads a truncated body. started
// gets a value once a request is in flight.
func slowMember(t *testing.T, sleep time.Duration) (*httptest.Server, chan struct{}) {
	started := make(chan struct{}, 4)
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "begin\n")
		w.(http.Flusher).Flush()
		started <- struct{}{}
		select {
		case <-time.After(sleep):
			io.WriteString(w, "slow\n")
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(s.Close)
	return s, started
}

// TestRuntimeShutdownSessions cuts a request in flight on the current worker
// (`shutdown sessions server`) and on an old worker left by a reload, through
// the master CLI (there the proxy is stopping and sessions are shut one by one).
func TestRuntimeShutdownSessions(t *testing.T) {
	a := htMember(t, "a")
	// Shorter than the config's hard-stop-after (10s): an old worker keeps
	// the request until it completes unless ShutdownSessions cuts it.
	slow, started := slowMember(t, 8*time.Second)
	env := htStart(t, htConf{Servers: []htServer{{"mbr_a", htHostPort(a)}}}, nil)
	rt, p := env.rt, env.proc
	ctx := htCtx(t, 60*time.Second)
	if err := rt.AddServer(ctx, "pool_web", "mbr_slow", htHostPort(slow), ""); err != nil {
		t.Fatal(err)
	}
	if err := rt.SetState(ctx, "pool_web", "mbr_a", "maint"); err != nil {
		t.Fatal(err)
	}
	inFlight := func() <-chan error {
		res := make(chan error, 1)
		go func() {
			c := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
			resp, err := c.Get(env.url)
			if err != nil {
				res <- err
				return
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			if err == nil && string(b) != "begin\nslow\n" {
				err = fmt.Errorf("body %q", b)
			}
			res <- err
		}()
		select {
		case <-started:
		case <-time.After(10 * time.Second):
			t.Fatal("the request did not reach mbr_slow")
		}
		return res
	}
	wantCut := func(res <-chan error) {
		t.Helper()
		select {
		case err := <-res:
			if err == nil {
				t.Fatal("the request in flight completed; it should have been cut")
			}
		case <-time.After(20 * time.Second):
			t.Fatal("the request in flight did not end")
		}
	}

	// On the current worker.
	wantCut(func() <-chan error {
		res := inFlight()
		if err := rt.ShutdownSessions(ctx, "pool_web", "mbr_slow"); err != nil {
			t.Fatalf("ShutdownSessions: %v", err)
		}
		return res
	}())

	// On an old worker: the reload's config has no mbr_slow (it was added at
	// runtime), so only the old worker has it.
	res := inFlight()
	old := htCurrentWorkers(t, p)[0].PID
	if err := p.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	if err := rt.ShutdownSessions(ctx, "pool_web", "mbr_slow"); !IsNoSuchServer(err) {
		t.Fatalf("ShutdownSessions on the new worker, which has no mbr_slow: %v", err)
	}
	oldRT := Runtime{Socket: p.MasterSocket(), Worker: old}
	sessions, err := oldRT.Sessions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, s := range sessions {
		found = found || (s.Backend == "pool_web" && s.Server == "mbr_slow" && s.Frontend == "lsn_web")
	}
	if !found {
		t.Fatalf("old worker's sessions: %+v", sessions)
	}
	if err := oldRT.ShutdownSessions(ctx, "pool_web", "mbr_slow"); err != nil {
		t.Fatalf("ShutdownSessions on the old worker: %v", err)
	}
	wantCut(res)
	if err := (Runtime{Socket: p.MasterSocket(), Worker: 1}).ShutdownSessions(ctx, "pool_web", "mbr_slow"); err == nil {
		t.Fatal("no error for a worker pid that does not exist")
	}
}

func TestParseShowSess(t *testing.T) {
	out := "0x55f2ae9b9cb0: proto=tcpv4 src=127.0.0.1:60500 fe=lsn_x be=pool_y srv=mbr_z ts=00 epoch=0 age=1s calls=2 rate=0\n" +
		"0x55f2aeab16a0: proto=sockpair src=unix:2 fe=GLOBAL be=<NONE> srv=<none> ts=00 epoch=0\n\n"
	got := parseShowSess(out)
	want := []Session{{"0x55f2ae9b9cb0", "lsn_x", "pool_y", "mbr_z"}, {"0x55f2aeab16a0", "GLOBAL", "<NONE>", "<none>"}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("parseShowSess: %+v, want %+v", got, want)
	}
	if len(parseShowSess("Unknown command.\n")) != 0 {
		t.Fatal("sessions parsed from an error message")
	}
	if err := (Runtime{Socket: "/nonexistent"}).ShutdownSession(context.Background(), "0x1; show info"); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("ShutdownSession with a bad id: %v", err)
	}
}

// Exchanges counts a Runtime's CLI exchanges across its copies: answered
// ones (an error message is an answer), failed ones, none left in flight.
func TestRuntimeExchangesCounted(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "cli.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			line, _ := bufio.NewReader(c).ReadString('\n')
			if strings.HasPrefix(line, "bad") {
				io.WriteString(c, "Unknown command.\n")
			} else {
				io.WriteString(c, "ok\n")
			}
			c.Close()
		}
	}()
	ctx := context.Background()
	r := Runtime{Socket: sock, Exchanges: &Exchanges{}}
	cp := r // copies count in the same Exchanges
	if _, err := r.Command(ctx, "show info"); err != nil {
		t.Fatal(err)
	}
	var ce *CommandError
	if _, err := cp.Command(ctx, "bad command"); !errors.As(err, &ce) {
		t.Fatalf("want a CommandError, got %v", err)
	}
	if _, err := (Runtime{Socket: sock + ".none", Exchanges: r.Exchanges}).Command(ctx, "show info"); err == nil {
		t.Fatal("no socket: want an error")
	}
	if _, err := (Runtime{Socket: sock}).Command(ctx, "show info"); err != nil { // not counted
		t.Fatal(err)
	}
	if inFlight, answered, failed := r.Exchanges.Counts(); inFlight != 0 || answered != 2 || failed != 1 {
		t.Fatalf("in flight %d, answered %d, failed %d; want 0, 2, 1", inFlight, answered, failed)
	}
}
