package fulcrum

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/fulcrumlb/fulcrum/openapi"
)

// server answers the i-th request (from 0) with answer(i, w), recording when
// each request came.
type server struct {
	*httptest.Server
	mu    sync.Mutex
	times []time.Time
}

func newServer(t *testing.T, answer func(i int, w http.ResponseWriter)) *server {
	s := &server{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		i := len(s.times)
		s.times = append(s.times, time.Now())
		s.mu.Unlock()
		answer(i, w)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *server) attempts() []time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Time(nil), s.times...)
}

func client(t *testing.T, url string, opts ...Option) *Client {
	t.Helper()
	c, err := NewClient(url, "token", "test", opts...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// busyThenOK answers status with Retry-After: 1 to the first request, then
// ok with an empty object.
func busyThenOK(status, ok int) func(int, http.ResponseWriter) {
	return func(i int, w http.ResponseWriter) {
		if i == 0 {
			w.Header().Set("Retry-After", "1")
			w.Header().Set("Content-Type", "application/problem+json")
			w.WriteHeader(status)
			_, _ = w.Write([]byte(`{"type":"about:blank","title":"busy"}`))
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(ok)
		_, _ = w.Write([]byte(`{}`))
	}
}

// honoursRetryAfter checks there were two attempts at least Retry-After: 1
// apart (the backoff alone would wait 250ms).
func honoursRetryAfter(t *testing.T, s *server) {
	t.Helper()
	at := s.attempts()
	if len(at) != 2 {
		t.Fatalf("%d attempts, want 2", len(at))
	}
	if gap := at[1].Sub(at[0]); gap < 950*time.Millisecond {
		t.Errorf("retried after %v, want Retry-After's 1s", gap)
	}
	t.Logf("retried after %v", at[1].Sub(at[0]))
}

func TestRetry503HonoursRetryAfter(t *testing.T) {
	t.Parallel()
	s := newServer(t, busyThenOK(http.StatusServiceUnavailable, http.StatusOK))
	res, err := client(t, s.URL).API.GetLoadBalancerWithResponse(context.Background(), "lb_1")
	if err != nil || res.StatusCode() != http.StatusOK {
		t.Fatalf("GET: %v %v", err, res)
	}
	honoursRetryAfter(t, s)
}

// A 429 is retried even for a POST without an Idempotency-Key: the API did
// not act on it.
func TestRetry429HonoursRetryAfter(t *testing.T) {
	t.Parallel()
	s := newServer(t, busyThenOK(http.StatusTooManyRequests, http.StatusCreated))
	res, err := client(t, s.URL).API.CreateLoadBalancerWithResponse(context.Background(), nil, openapi.LoadBalancerCreate{})
	if err != nil || res.StatusCode() != http.StatusCreated {
		t.Fatalf("POST: %v %v", err, res)
	}
	honoursRetryAfter(t, s)
}

// Attempts are bounded by max_retries; the last answer is what the caller
// gets, so its problem reaches the diagnostics.
func TestRetryBounded(t *testing.T) {
	t.Parallel()
	s := newServer(t, func(_ int, w http.ResponseWriter) { w.WriteHeader(http.StatusServiceUnavailable) })
	res, err := client(t, s.URL, WithMaxRetries(2)).API.GetLoadBalancerWithResponse(context.Background(), "lb_1")
	if err != nil || res.StatusCode() != http.StatusServiceUnavailable {
		t.Fatalf("GET: %v %v, want the last 503", err, res)
	}
	if n := len(s.attempts()); n != 3 {
		t.Errorf("%d attempts, want 1 + max_retries 2", n)
	}
	s0 := newServer(t, func(_ int, w http.ResponseWriter) { w.WriteHeader(http.StatusServiceUnavailable) })
	if _, err := client(t, s0.URL, WithMaxRetries(0)).API.GetLoadBalancerWithResponse(context.Background(), "lb_1"); err != nil {
		t.Fatal(err)
	}
	if n := len(s0.attempts()); n != 1 {
		t.Errorf("max_retries 0: %d attempts, want 1", n)
	}
}

// reset closes the connection with a TCP reset instead of answering.
func reset(t *testing.T) func(int, http.ResponseWriter) {
	return func(_ int, w http.ResponseWriter) {
		conn, _, err := w.(http.Hijacker).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		if tc, ok := conn.(*net.TCPConn); ok {
			_ = tc.SetLinger(0)
		}
		conn.Close()
	}
}

// A connection reset is retried only for requests that are safe to repeat:
// never for a POST without an Idempotency-Key (or a PATCH), which the API may
// have acted on.
func TestRetryConnectionReset(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cases := map[string]struct {
		call func(c *Client) error
		want int
	}{
		"POST without Idempotency-Key": {func(c *Client) error {
			_, err := c.API.CreateLoadBalancerWithResponse(ctx, nil, openapi.LoadBalancerCreate{})
			return err
		}, 1},
		"PATCH": {func(c *Client) error {
			_, err := c.API.UpdateLoadBalancerWithResponse(ctx, "lb_1", nil, openapi.UpdateLoadBalancerJSONRequestBody{})
			return err
		}, 1},
		"POST with Idempotency-Key": {func(c *Client) error {
			_, err := c.API.CreateLoadBalancerWithResponse(ctx, &openapi.CreateLoadBalancerParams{IdempotencyKey: NewIdempotencyKey()}, openapi.LoadBalancerCreate{})
			return err
		}, 3},
		"GET": {func(c *Client) error {
			_, err := c.API.GetLoadBalancerWithResponse(ctx, "lb_1")
			return err
		}, 3},
		"DELETE": {func(c *Client) error {
			_, err := c.API.DeleteLoadBalancerWithResponse(ctx, "lb_1", nil)
			return err
		}, 3},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			s := newServer(t, reset(t))
			if err := tc.call(client(t, s.URL, WithMaxRetries(2))); err == nil {
				t.Error("no error for a reset connection")
			}
			if n := len(s.attempts()); n != tc.want {
				t.Errorf("%d attempts, want %d", n, tc.want)
			}
		})
	}
}

// Every attempt of a create carries the same Idempotency-Key.
func TestRetryKeepsIdempotencyKey(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var keys []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		keys = append(keys, r.Header.Get("Idempotency-Key"))
		n := len(keys)
		mu.Unlock()
		if n == 1 {
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		w.WriteHeader(http.StatusCreated)
	}))
	defer srv.Close()
	key := NewIdempotencyKey()
	if _, err := client(t, srv.URL).API.CreateLoadBalancerWithResponse(context.Background(), &openapi.CreateLoadBalancerParams{IdempotencyKey: key}, openapi.LoadBalancerCreate{}); err != nil {
		t.Fatal(err)
	}
	if len(keys) != 2 || keys[0] != *key || keys[1] != *key {
		t.Errorf("keys %q, want two attempts with %q", keys, *key)
	}
}
