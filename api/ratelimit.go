package api

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	"golang.org/x/time/rate"

	"github.com/fulcrumlb/fulcrum/api/auth"
	"github.com/fulcrumlb/fulcrum/api/problem"
	"github.com/fulcrumlb/fulcrum/api/store"
)

// RateLimit is a token bucket: PerSecond requests a second on average, up to
// Burst at once. PerSecond 0 means no limit.
type RateLimit struct {
	PerSecond float64
	Burst     int
}

// String is the flag form, "<per second>:<burst>", or "0" for no limit.
func (l RateLimit) String() string {
	if l.PerSecond <= 0 {
		return "0"
	}
	return strconv.FormatFloat(l.PerSecond, 'f', -1, 64) + ":" + strconv.Itoa(l.Burst)
}

// ParseRateLimit reads "<per second>:<burst>" (e.g. "50:100"), "<per second>"
// (burst twice the rate) or "0" (no limit).
func ParseRateLimit(s string) (RateLimit, error) {
	perSecond, burst, hasBurst := strings.Cut(strings.TrimSpace(s), ":")
	r, err := strconv.ParseFloat(perSecond, 64)
	if err != nil || r < 0 || math.IsInf(r, 0) || math.IsNaN(r) {
		return RateLimit{}, fmt.Errorf("rate limit %q: want <requests per second>[:<burst>], e.g. 50:100, or 0 for none", s)
	}
	if r == 0 {
		return RateLimit{}, nil
	}
	l := RateLimit{PerSecond: r, Burst: int(math.Ceil(2 * r))}
	if hasBurst {
		b, err := strconv.Atoi(burst)
		if err != nil || b < 1 {
			return RateLimit{}, fmt.Errorf("rate limit %q: the burst must be a whole number of requests ≥ 1", s)
		}
		l.Burst = b
	}
	return l, nil
}

// Default rate limits per token kind. A node token may be shared by every
// agent of its group, so its limit applies per node (the token and the node
// its protocol request names: limiterKey), and admins automate.
var (
	RateLimitTenantDefault = RateLimit{PerSecond: 50, Burst: 100}
	RateLimitNodeDefault   = RateLimit{PerSecond: 200, Burst: 400}
	RateLimitAdminDefault  = RateLimit{PerSecond: 200, Burst: 400}
)

// limiters holds one token bucket per token id, in this replica: limits are
// per replica, so N replicas admit up to N times the rate.
type limiters struct {
	limits map[string]RateLimit // by token kind

	// pauses holds a slot per refused request pausing (refusePause).
	pauses chan struct{}

	mu        sync.Mutex
	byToken   map[string]*tokenLimiter
	lastSweep time.Time
}

type tokenLimiter struct {
	kind     string
	lim      *rate.Limiter
	lastUsed time.Time
}

// limiterIdle is how long a token's bucket is kept without requests; a
// bucket idle that long is full again anyway.
const limiterIdle = 10 * time.Minute

func newLimiters(limits map[string]RateLimit) *limiters {
	return &limiters{limits: limits, byToken: map[string]*tokenLimiter{}, lastSweep: time.Now(), pauses: make(chan struct{}, refusePausesMax)}
}

// wait returns 0 when the principal may make a request now, else how long
// until it may.
func (l *limiters) wait(p auth.Principal, path string) time.Duration {
	limit, ok := l.limits[p.Kind]
	if !ok || limit.PerSecond <= 0 {
		return 0
	}
	now := time.Now()
	l.mu.Lock()
	if now.Sub(l.lastSweep) > time.Minute {
		for id, t := range l.byToken {
			if now.Sub(t.lastUsed) > limiterIdle {
				delete(l.byToken, id)
			}
		}
		l.lastSweep = now
	}
	key := p.TokenID
	if p.Kind == store.TokenNode {
		key = limiterKey(p.TokenID, path)
	}
	t := l.byToken[key]
	if t == nil {
		t = &tokenLimiter{kind: p.Kind, lim: rate.NewLimiter(rate.Limit(limit.PerSecond), max(limit.Burst, 1))}
		l.byToken[key] = t
	}
	t.lastUsed = now
	l.mu.Unlock()
	r := t.lim.ReserveN(now, 1)
	if !r.OK() {
		return time.Second
	}
	d := r.DelayFrom(now)
	if d > 0 {
		r.CancelAt(now)
	}
	return d
}

// exhausted returns how long until the bucket of tokenID holds a request
// again, without taking one: 0 when it does, or when the token has none yet.
func (l *limiters) exhausted(tokenID string) (time.Duration, string) {
	l.mu.Lock()
	t := l.byToken[tokenID]
	l.mu.Unlock()
	if t == nil {
		return 0, ""
	}
	now := time.Now()
	tokens := t.lim.TokensAt(now)
	if tokens >= 1 || t.lim.Limit() <= 0 {
		return 0, ""
	}
	return time.Duration((1 - tokens) / float64(t.lim.Limit()) * float64(time.Second)), t.kind
}

// rateLimitEarly refuses, before authenticating it, a request of a token
// whose bucket is empty, so a flood costs no database round trip. It only
// reads the bucket: a request with a forged secret cannot empty another's.
func (s *Server) rateLimitEarly(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if public(c.Request().URL.Path) {
			return next(c)
		}
		id, ok := bearerTokenID(c.Request().Header.Get(echo.HeaderAuthorization))
		if !ok {
			return next(c)
		}
		if d, kind := s.limiters.exhausted(limiterKey(id, c.Request().URL.Path)); d > 0 {
			return s.tooMany(c.Request().Context(), kind, d)
		}
		return next(c)
	}
}

// limiterKey is the bucket of a request of token tokenID to path: the
// token's own, or, for the node protocol (/v1/nodes/{name} and its snapshot
// and reports), the token's for that node: every agent of a group may share
// one node token, and one node's polls and reports must not use up another's.
// Only node tokens are admitted to those paths' node protocol, so a tenant's
// or an admin's token keeps one bucket (wait uses this key only for nodes).
func limiterKey(tokenID, path string) string {
	if name, sub, ok := nodeProtocolPath(path); ok && (sub == "" || sub == "snapshot" || sub == "reports") {
		return tokenID + " " + name
	}
	return tokenID
}

// nodeProtocolPath splits /v1/nodes/{name}[/{sub}] into name and sub; ok is
// false for any other path.
func nodeProtocolPath(path string) (name, sub string, ok bool) {
	rest, ok := strings.CutPrefix(path, "/v1/nodes/")
	if !ok {
		return "", "", false
	}
	name, sub, _ = strings.Cut(rest, "/")
	return name, sub, name != ""
}

// bearerTokenID is the (unverified) token id of an Authorization header.
func bearerTokenID(header string) (string, bool) {
	const scheme = "Bearer "
	if len(header) < len(scheme) || !strings.EqualFold(header[:len(scheme)], scheme) {
		return "", false
	}
	id, _, ok := strings.Cut(strings.TrimSpace(header[len(scheme):]), ".")
	return id, ok && id != ""
}

// refusePause is how long a refused request waits before its 429: a client
// that ignores Retry-After and asks again at once (a flood over a few
// connections) then costs the server a few cheap answers a second per
// connection, not thousands. refusePausesMax bounds the requests pausing at
// once; beyond that they are answered at once.
const (
	refusePause     = 250 * time.Millisecond
	refusePausesMax = 1024
)

func (s *Server) tooMany(ctx context.Context, kind string, d time.Duration) error {
	select {
	case s.limiters.pauses <- struct{}{}:
		t := time.NewTimer(refusePause)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
		<-s.limiters.pauses
	default:
	}
	limit := s.limiters.limits[kind]
	return problem.TooManyRequests(int(math.Ceil(d.Seconds())),
		fmt.Sprintf("This %s token is over its limit of %s requests a second (burst %d); retry after the Retry-After seconds.",
			kind, strconv.FormatFloat(limit.PerSecond, 'f', -1, 64), limit.Burst))
}

// rateLimit answers 429 with Retry-After when the request's token is over
// its kind's limit. It runs after authenticate, so only a token's holder can
// use up its bucket.
func (s *Server) rateLimit(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		p, ok := auth.PrincipalFrom(c.Request().Context())
		if !ok {
			return next(c)
		}
		if d := s.limiters.wait(p, c.Request().URL.Path); d > 0 {
			return s.tooMany(c.Request().Context(), p.Kind, d)
		}
		return next(c)
	}
}

// rateLimitsWithDefaults fills the kinds missing from m with the defaults.
func rateLimitsWithDefaults(m map[string]RateLimit) map[string]RateLimit {
	out := map[string]RateLimit{store.TokenTenant: RateLimitTenantDefault, store.TokenNode: RateLimitNodeDefault, store.TokenAdmin: RateLimitAdminDefault}
	for k, v := range m {
		out[k] = v
	}
	return out
}
