package acceptance

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/fulcrumlb/fulcrum/internal/pgtest"
	"github.com/fulcrumlb/fulcrum/internal/teststack"
)

// drainBackend is a member whose /slow requests answer at once with headers
// and a first line, then wait until the test releases them and sleep a while
// before the last line: a request that is cut in between reads a truncated
// body. Every other request (and every request when sleep is 0) answers its
// name at once.
type drainBackend struct {
	*teststack.Server
	started chan struct{} // a /slow request is in flight here
	release chan struct{} // closed by the test once the member left service
}

func startDrainBackend(t *testing.T, name string, sleep time.Duration) *drainBackend {
	t.Helper()
	b := &drainBackend{started: make(chan struct{}, 16), release: make(chan struct{})}
	b.Server = teststack.StartServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Backend", name)
		if r.URL.Path != "/slow" || sleep == 0 {
			fmt.Fprintf(w, "%s\n", name)
			return
		}
		fmt.Fprintf(w, "%s started\n", name)
		w.(http.Flusher).Flush()
		b.started <- struct{}{}
		select {
		case <-b.release:
		case <-time.After(30 * time.Second):
		}
		select {
		case <-time.After(sleep):
		case <-r.Context().Done():
			return
		}
		fmt.Fprintf(w, "%s done\n", name)
	}))
	return b
}

// slowResult is how an in-flight /slow request ended.
type slowResult struct {
	body    string
	err     error
	ended   time.Time
	elapsed time.Duration
}

// inFlightOn starts /slow requests on fresh connections until one is in
// flight on the member answering as name, and returns where its end will be
// reported. Requests answered by another member are read and dropped.
func inFlightOn(t *testing.T, url, name string) <-chan slowResult {
	t.Helper()
	c := &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	for i := 0; i < 10; i++ {
		res, err := c.Get(url + "slow")
		if err != nil {
			t.Fatalf("GET %sslow: %v", url, err)
		}
		if res.Header.Get("X-Backend") != name {
			io.Copy(io.Discard, res.Body)
			res.Body.Close()
			continue
		}
		out := make(chan slowResult, 1)
		start := time.Now()
		go func() {
			defer res.Body.Close()
			b, err := io.ReadAll(res.Body)
			out <- slowResult{body: string(b), err: err, ended: time.Now(), elapsed: time.Since(start)}
		}()
		return out
	}
	t.Fatalf("no /slow request reached %s in 10 tries", name)
	return nil
}

// TestDrainTimeout: a member that is disabled or deleted finishes its requests
// in flight for up to its pool's drain_timeout_ms, then HAProxy closes them;
// new requests never reach it meanwhile.
func TestDrainTimeout(t *testing.T) {
	t.Parallel()
	s := newStack(t, pgtest.NewDatabase(t))
	s.StartAgent("node-1")

	type drainCase struct {
		name      string
		port      int
		algorithm string // static_round_robin: deleting a member takes a reload
		timeoutMS int
		remove    string // "disable" or "delete"
		sleep     time.Duration
		cut       bool
	}
	// The requests in flight last 6 s after the member left service. On the
	// reload path they are 4 s: the old worker that holds them ends after
	// the stack's hard-stop-after (5 s) anyway, and a request cut only by
	// that would prove nothing.
	runtimeCases := []drainCase{
		{"disable_cut", 9201, "round_robin", 1000, "disable", 6 * time.Second, true},
		{"disable_completes", 9202, "round_robin", 20000, "disable", 6 * time.Second, false},
		{"delete_cut", 9203, "round_robin", 1000, "delete", 6 * time.Second, true},
		{"delete_completes", 9204, "round_robin", 20000, "delete", 6 * time.Second, false},
	}
	reloadCase := drainCase{"delete_with_reload_cut", 9205, "static_round_robin", 1000, "delete", 4 * time.Second, true}

	type setup struct {
		drainCase
		lb         *lbSetup
		slow, fast *drainBackend
	}
	// Everything is built first: building reloads HAProxy, and a reload
	// while a case runs would move its request to an old worker.
	var setups []*setup
	for _, c := range append(runtimeCases, reloadCase) {
		slow, fast := startDrainBackend(t, "slow", c.sleep), startDrainBackend(t, "fast", 0)
		lb := s.newLB(c.port, map[string]any{"algorithm": c.algorithm, "drain_timeout_ms": c.timeoutMS},
			&teststack.Backend{Server: slow.Server, Name: "slow"}, &teststack.Backend{Server: fast.Server, Name: "fast"})
		setups = append(setups, &setup{drainCase: c, lb: lb, slow: slow, fast: fast})
	}

	// run takes the cases' members out of service together, each with a
	// request in flight, and checks how each request ended.
	run := func(cases []*setup) {
		t.Helper()
		done := make([]<-chan slowResult, len(cases))
		for i, su := range cases {
			done[i] = inFlightOn(t, su.lb.URL, "slow")
			<-su.slow.started
		}
		changed := time.Now()
		for _, su := range cases {
			member := su.lb.Members["slow"]
			switch su.remove {
			case "disable":
				s.MustCall(200, "PATCH", "/v1/members/"+member, map[string]any{"enabled": false})
			case "delete":
				s.MustCall(202, "DELETE", "/v1/members/"+member, nil)
			}
			close(su.slow.release)
		}
		for _, su := range cases {
			member := su.lb.Members["slow"]
			if su.remove == "disable" {
				s.WaitActive("/v1/members/" + member)
			} else {
				teststack.WaitFor(t, su.name+": member gone", 20*time.Second, func() bool {
					code, _ := s.Call("GET", "/v1/members/"+member, nil)
					return code == http.StatusNotFound
				})
			}
			// New requests never reach the member leaving service.
			cl := teststack.NewClient(nil)
			for i := 0; i < 10; i++ {
				name, err := teststack.Fetch(cl, su.lb.URL)
				if err != nil || name != "fast" {
					t.Fatalf("%s: request %d while the member drains: %q, %v", su.name, i, name, err)
				}
			}
		}
		for i, su := range cases {
			var r slowResult
			select {
			case r = <-done[i]:
			case <-time.After(40 * time.Second):
				t.Fatalf("%s: the request in flight neither completed nor was cut", su.name)
			}
			t.Logf("%s: request in flight ended %v after the change (%v in all): err=%v body=%q",
				su.name, r.ended.Sub(changed).Round(time.Millisecond), r.elapsed.Round(time.Millisecond), r.err, r.body)
			completed := r.err == nil && strings.Contains(r.body, "slow done")
			if su.cut && completed {
				t.Errorf("%s: drain_timeout_ms %d: the request in flight completed; it should have been cut", su.name, su.timeoutMS)
			}
			if !su.cut && !completed {
				t.Errorf("%s: drain_timeout_ms %d: the request in flight was cut (err %v, body %q); it should have completed", su.name, su.timeoutMS, r.err, r.body)
			}
			if !strings.HasPrefix(r.body, "slow started") {
				t.Errorf("%s: the request in flight lost its first line: %q", su.name, r.body)
			}
		}
	}
	run(setups[:len(runtimeCases)])
	run(setups[len(runtimeCases):])
}

// TestCookieTTLSendsMaxAge: cookie_ttl_seconds is the Max-Age of the
// inserted cookie (and HAProxy's maxlife).
func TestCookieTTLSendsMaxAge(t *testing.T) {
	t.Parallel()
	s := newStack(t, pgtest.NewDatabase(t))
	s.StartAgent("node-1")
	a, b := teststack.StartBackend(t, "a"), teststack.StartBackend(t, "b")
	lb := s.newLB(9210, map[string]any{"session_persistence": map[string]any{"type": "cookie_insert", "cookie_name": "SRV", "cookie_ttl_seconds": 3600}}, a, b)
	code, _, hdr, err := get(teststack.NewClient(nil), lb.URL, nil)
	if err != nil || code != 200 {
		t.Fatalf("GET %s: %d %v", lb.URL, code, err)
	}
	var cookie *http.Cookie
	for _, c := range (&http.Response{Header: hdr}).Cookies() {
		if c.Name == "SRV" {
			cookie = c
		}
	}
	if cookie == nil {
		t.Fatalf("no SRV cookie in %q", hdr.Values("Set-Cookie"))
	}
	if cookie.MaxAge != 3600 {
		t.Fatalf("Set-Cookie %q: Max-Age %d, want 3600", hdr.Values("Set-Cookie"), cookie.MaxAge)
	}
	// The cookie still pins the client to its member.
	c := teststack.NewClient(nil)
	for i := 0; i < 6; i++ {
		code, body, _, err := get(c, lb.URL, map[string]string{"Cookie": cookie.Name + "=" + cookie.Value})
		if err != nil || code != 200 || body != strings.TrimSpace(hdr.Get("X-Backend")) {
			t.Fatalf("request %d with the cookie: %d %q %v, want %q", i, code, body, err, hdr.Get("X-Backend"))
		}
	}
}
