package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
	"golang.org/x/sync/semaphore"

	"github.com/fulcrumlb/fulcrum/api/auth"
	"github.com/fulcrumlb/fulcrum/api/problem"
	"github.com/fulcrumlb/fulcrum/api/reqcheck"
	"github.com/fulcrumlb/fulcrum/api/snapshot"
	"github.com/fulcrumlb/fulcrum/api/store"
	"github.com/fulcrumlb/fulcrum/api/validate"
	"github.com/fulcrumlb/fulcrum/internal/secretbox"
	"github.com/fulcrumlb/fulcrum/internal/telemetry"
	"github.com/fulcrumlb/fulcrum/openapi"
)

// Config configures the API server.
type Config struct {
	// Addr is the listen address. Defaults to 127.0.0.1:8080.
	Addr string
	// BodyLimit bounds request bodies. Defaults to 1M.
	BodyLimit string
	// ShutdownTimeout bounds the graceful shutdown. Defaults to 30s.
	ShutdownTimeout time.Duration
	// HAProxy is the haproxy binary (a path, or a name looked up on PATH)
	// that dry runs of load balancers, listeners, pools, members and routing
	// rules check the affected load balancer's rendered configuration with
	// (haproxy -c). Empty, or not found when the server is built: dry runs
	// skip that check and validate everything else.
	HAProxy string
	// RequestTimeout bounds every request: a request not answered by then
	// fails with 503 and Retry-After (its database work is cancelled).
	// Snapshot long-polls get their wait on top. Defaults to 10s.
	RequestTimeout time.Duration
	// RateLimits are the request rate limits per token kind (store.TokenAdmin,
	// TokenTenant, TokenNode), one token bucket per token in each replica; a
	// kind left out gets its default (RateLimitTenantDefault, …), a zero
	// RateLimit means no limit.
	RateLimits map[string]RateLimit
	// NodeJanitorInterval is how often the server looks for nodes down past
	// their group's cleanup time. Defaults to NodeJanitorInterval.
	NodeJanitorInterval time.Duration
	// DeriveInterval is how often, at most, a node group's statuses are
	// derived from its nodes' reports. Defaults to DeriveIntervalDefault.
	DeriveInterval time.Duration
	// DeriveSweepInterval is how often every group with reporting nodes is
	// derived even without a report changing anything (statuses that change
	// with time alone). Defaults to DeriveSweepIntervalDefault.
	DeriveSweepInterval time.Duration
	// PurgeInterval is how often deleted objects every node dropped are
	// purged. Defaults to PurgeIntervalDefault.
	PurgeInterval time.Duration
	// NodeTokenTTL is how long a replica trusts a node or tenant token it
	// checked against the database (a revoked or expired one, or one whose
	// tenant was deleted, works that long at most on other replicas).
	// Defaults to auth.NodeTokenTTLDefault; negative: no caching.
	NodeTokenTTL time.Duration
}

// Defaults for Config.
const (
	AddrDefault            = "127.0.0.1:8080"
	BodyLimitDefault       = "1M"
	ShutdownTimeoutDefault = 30 * time.Second
	RequestTimeoutDefault  = 10 * time.Second
)

// RetryAfterUnavailable is the Retry-After, in seconds, of a 503 for an
// unavailable database.
const RetryAfterUnavailable = 2

func (c *Config) setDefaults() {
	if c.Addr == "" {
		c.Addr = AddrDefault
	}
	if c.BodyLimit == "" {
		c.BodyLimit = BodyLimitDefault
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = ShutdownTimeoutDefault
	}
	if c.RequestTimeout == 0 {
		c.RequestTimeout = RequestTimeoutDefault
	}
	c.RateLimits = rateLimitsWithDefaults(c.RateLimits)
	if c.NodeJanitorInterval == 0 {
		c.NodeJanitorInterval = NodeJanitorInterval
	}
	if c.DeriveInterval == 0 {
		c.DeriveInterval = DeriveIntervalDefault
	}
	if c.DeriveSweepInterval == 0 {
		c.DeriveSweepInterval = DeriveSweepIntervalDefault
	}
	if c.PurgeInterval == 0 {
		c.PurgeInterval = PurgeIntervalDefault
	}
}

// Server is the API server.
type Server struct {
	cfg    Config
	st     *store.Store
	box    *secretbox.Box
	log    *slog.Logger
	tel    *telemetry.Telemetry
	echo   *echo.Echo
	notify *Notifier
	// deriver derives node groups' statuses after reports.
	deriver *deriver
	// limiters are the per-token request rate limits.
	limiters *limiters
	// reports and largeReports bound the bytes of the node reports being
	// processed (admit.go).
	reports, largeReports *semaphore.Weighted
	// reportw writes nodes' reports in batches (reportwriter.go).
	reportw *reportWriter
	// auth resolves bearer tokens, caching node and tenant tokens for a few
	// seconds.
	auth *auth.Authenticator
}

// New builds the server; tel may be nil (no tracing, no metrics endpoint).
func New(cfg Config, st *store.Store, box *secretbox.Box, log *slog.Logger, tel *telemetry.Telemetry) (*Server, error) {
	cfg.setDefaults()
	if cfg.HAProxy != "" {
		path, err := exec.LookPath(cfg.HAProxy)
		if err != nil {
			log.Warn("HAProxy not found: dry runs are not checked with haproxy -c", "haproxy", cfg.HAProxy, "err", err)
			path = ""
		}
		cfg.HAProxy = path
	}
	s := &Server{cfg: cfg, st: st, box: box, log: log, tel: tel, limiters: newLimiters(cfg.RateLimits),
		auth: auth.NewAuthenticator(st, cfg.NodeTokenTTL)}
	s.reports, s.largeReports = newReportBudgets()
	e := echo.New()
	e.HideBanner = true
	e.HidePort = true
	e.HTTPErrorHandler = s.handleError
	// Only trust the peer address: X-Forwarded-For is the client's to forge.
	e.IPExtractor = echo.ExtractIPDirect()

	// A token over its rate limit is refused first of all, before routing
	// and telemetry, so that a flood costs as little as possible.
	e.Pre(s.rateLimitEarly)
	if tel != nil {
		e.Use(tel.EchoMiddleware())
	} else {
		e.Use(middleware.RequestID())
	}
	e.Use(middleware.Recover())
	// A node's stream (node_stream.go) is one request for as long as the
	// node stays: its messages are bounded one by one, not in total.
	e.Use(middleware.BodyLimitWithConfig(middleware.BodyLimitConfig{Limit: cfg.BodyLimit,
		Skipper: func(c echo.Context) bool { return isStreamRequest(c.Request()) }}))
	e.Use(s.deadline)
	e.Use(s.authenticate)
	e.Use(s.rateLimit)
	e.Use(s.admitReports)
	check, err := reqcheck.New(openapi.Document)
	if err != nil {
		return nil, fmt.Errorf("load API document: %w", err)
	}
	h := &handlers{}
	e.Use(s.checkRequests(check, h)) // reportbody.go: node reports take a cheaper, exact check

	e.GET("/healthz", func(c echo.Context) error { return c.String(http.StatusOK, "ok\n") })
	e.GET("/readyz", func(c echo.Context) error {
		ctx, cancel := context.WithTimeout(c.Request().Context(), 2*time.Second)
		defer cancel()
		if err := st.Ping(ctx); err != nil {
			p := problem.Unavailable(RetryAfterUnavailable, "The database is unreachable.")
			p.Type, p.Title = "not-ready", "Not ready"
			return p
		}
		return c.String(http.StatusOK, "ok\n")
	})
	if tel != nil {
		e.GET("/metrics", echo.WrapHandler(tel.MetricsHandler()))
	}
	s.notify = NewNotifier()
	s.deriver = newDeriver(st, log, cfg.DeriveInterval, cfg.DeriveSweepInterval)
	// The report writer's two lanes and its flushes of heartbeats and
	// counters have connections of their own.
	rst, err := st.OwnPool(4)
	if err != nil {
		return nil, err
	}
	s.reportw = newReportWriter(rst, log)
	builder := newSnapshotBuilder(box)
	*h = handlers{st: st, box: box, log: log, notify: s.notify,
		haproxy: cfg.HAProxy, checks: make(chan struct{}, dryRunChecksMax), requestTimeout: cfg.RequestTimeout,
		snapshots: builder, snapcache: snapshot.NewCache(builder, st, cfg.RequestTimeout), deriver: s.deriver, reportw: s.reportw,
		views: snapshot.NewViews(st, s.notify, cfg.RequestTimeout, 0), auth: s.auth, tokenTTL: cfg.NodeTokenTTL}
	s.reportw.ackJob = h.ackJob // ackbatch.go
	h.feeds.h = h               // node_streamfeed.go
	s.reportw.ackMarked = func(g string) { s.deriver.mark(g, nil, true) }
	openapi.RegisterHandlers(e, openapi.NewStrictHandler(h, nil))
	s.echo = e
	return s, nil
}

// Start runs the server's background work until ctx ends: the LISTEN
// connection waking long-polls, the janitor expiring idempotency keys and
// old revision records, the deriver of statuses and the purge janitor. Serve
// calls it; tests using Handler call it themselves.
func (s *Server) Start(ctx context.Context) {
	go s.notify.Run(ctx, s.st, s.log)
	context.AfterFunc(ctx, registerStoreMetrics(s.tel, s.st, s.log)) // metrics.go
	go s.janitor(ctx)
	go s.nodeJanitor(ctx)
	go s.deriver.run(ctx)                       // deriver.go
	go s.reportw.run(ctx)                       // reportwriter.go
	go s.purgeJanitor(ctx, s.cfg.PurgeInterval) // deriver.go
}

func (s *Server) janitor(ctx context.Context) {
	t := time.NewTicker(10 * time.Minute)
	defer t.Stop()
	for {
		if err := s.st.ExpireIdempotencyKeys(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("expire idempotency keys", "err", err)
		}
		if err := s.st.RevisionsExpire(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("expire revisions", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Handler is the whole API as an http.Handler.
func (s *Server) Handler() http.Handler { return s.echo }

// Serve serves on ln until ctx ends, then shuts down gracefully: in-flight
// requests finish (bounded by ShutdownTimeout), new ones are refused.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	// HTTP/1.1 and HTTP/2 on the same port: HTTP/2 cleartext with prior
	// knowledge (the agents' streams, node_stream.go) next to HTTP/1.1
	// (curl, the provider, polls of agents from before); behind TLS the
	// same through ALPN.
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetHTTP2(true)
	protocols.SetUnencryptedHTTP2(true)
	srv := &http.Server{
		Handler:           s.echo,
		Protocols:         &protocols,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       60 * time.Second,
		// Long-polls hold responses for up to a minute.
		WriteTimeout:   90 * time.Second,
		IdleTimeout:    120 * time.Second,
		MaxHeaderBytes: 64 << 10,
		ErrorLog:       slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		BaseContext:    func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	bg, stopBackground := context.WithCancel(ctx)
	defer stopBackground()
	s.Start(bg)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(bufferedListener{ln}) }() // bufconn.go
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	s.log.Info("shutting down", "timeout", s.cfg.ShutdownTimeout)
	sctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	return nil
}

// ListenAndServe listens on the configured address and serves until ctx ends.
func (s *Server) ListenAndServe(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	s.log.Info("API listening", "addr", ln.Addr().String())
	return s.Serve(ctx, ln)
}

// public paths need no token.
func public(path string) bool {
	switch path {
	case "/healthz", "/readyz", "/metrics", "/openapi.yaml":
		return true
	}
	return false
}

// deadline bounds every request by RequestTimeout; a snapshot long-poll gets
// its wait on top.
func (s *Server) deadline(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		req := c.Request()
		if isStreamRequest(req) {
			// A stream lasts while the node stays; it is bounded by its
			// keep-alives and the read and write deadlines of each frame
			// and message (node_stream.go).
			return next(c)
		}
		d := s.cfg.RequestTimeout
		if req.Method == http.MethodGet && isSnapshotPath(req.URL.Path) {
			d += snapshotWait(req.URL.Query().Get("wait"))
		}
		ctx, cancel := context.WithTimeout(req.Context(), d)
		defer cancel()
		c.SetRequest(req.WithContext(ctx))
		return next(c)
	}
}

// isSnapshotPath matches /v1/nodes/{id}/snapshot.
func isSnapshotPath(path string) bool {
	rest, ok := strings.CutPrefix(path, "/v1/nodes/")
	if !ok {
		return false
	}
	id, ok := strings.CutSuffix(rest, "/snapshot")
	return ok && id != "" && !strings.Contains(id, "/")
}

// snapshotWait is the long-poll wait a snapshot request asks for (the
// handler refuses values it cannot parse, so they get the maximum here).
func snapshotWait(s string) time.Duration {
	if s == "" {
		return SnapshotWaitDefault
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 || d > SnapshotWaitMax {
		return SnapshotWaitMax
	}
	return d
}

// authenticate resolves the bearer token of every /v1 request into a Principal.
// Only a token that is missing, malformed, unknown, revoked or expired gets
// 401 with WWW-Authenticate; a lookup that fails because the database is
// unavailable is a 503.
func (s *Server) authenticate(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if public(c.Request().URL.Path) {
			return next(c)
		}
		p, err := s.auth.Authenticate(c.Request().Context(), c.Request().Header.Get(echo.HeaderAuthorization))
		if err != nil {
			var pr *problem.Problem
			if errors.As(err, &pr) && pr.Status == http.StatusUnauthorized {
				c.Response().Header().Set(echo.HeaderWWWAuthenticate, `Bearer realm="fulcrum"`)
			}
			return err
		}
		c.SetRequest(c.Request().WithContext(auth.WithPrincipal(c.Request().Context(), p)))
		return next(c)
	}
}

// handleError writes every error as application/problem+json.
func (s *Server) handleError(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	ctx := c.Request().Context()
	p := s.toProblem(ctx, err)
	switch {
	case p.Status == http.StatusServiceUnavailable:
		// The database is away: one line per request, not an error each.
		s.log.WarnContext(ctx, "request failed: unavailable", "method", c.Request().Method, "path", c.Request().URL.Path, "err", err)
	case p.Status >= 500:
		s.log.ErrorContext(ctx, "request failed", "method", c.Request().Method, "path", c.Request().URL.Path, "err", err)
	}
	body := map[string]any{"type": p.TypeURI(), "title": p.Title, "status": p.Status}
	if p.Detail != "" {
		body["detail"] = p.Detail
	}
	if len(p.Errors) > 0 {
		body["errors"] = p.Errors
	}
	rid := telemetry.RequestIDFrom(ctx)
	if rid == "" {
		rid = c.Response().Header().Get(echo.HeaderXRequestID)
	}
	if rid != "" {
		body["request_id"] = rid
	}
	for k, v := range p.Headers {
		c.Response().Header().Set(k, v)
	}
	c.Response().Header().Set(echo.HeaderContentType, "application/problem+json")
	if c.Request().Method == http.MethodHead {
		_ = c.NoContent(p.Status)
		return
	}
	_ = c.JSON(p.Status, body)
}

// toProblem maps errors to problems: the store's errors as storeProblem
// says, an unavailable database (down, restarting, frozen, too slow) to 503
// with Retry-After, never 500.
func (s *Server) toProblem(ctx context.Context, err error) *problem.Problem {
	var p *problem.Problem
	if errors.As(err, &p) {
		return p
	}
	if p := storeProblem(err); p != nil {
		return p
	}
	var he *echo.HTTPError
	var ve *validate.Error
	if !errors.As(err, &he) && !errors.As(err, &ve) && (store.Unavailable(err) || s.databaseDown(ctx)) {
		return problem.Unavailable(RetryAfterUnavailable, "The database is unavailable or too slow; retry after the Retry-After seconds.")
	}
	return echoProblem(err)
}

// databaseDown checks, for an error nothing else explains, whether the
// database answers at all.
func (s *Server) databaseDown(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
	defer cancel()
	return s.st.Ping(ctx) != nil
}

// echoProblem maps echo's own errors (routing, body limit, parameter binding) to problems.
func echoProblem(err error) *problem.Problem {
	var he *echo.HTTPError
	if errors.As(err, &he) {
		msg := fmt.Sprint(he.Message)
		switch he.Code {
		case http.StatusNotFound:
			return problem.New(http.StatusNotFound, "not-found", "Not found", "No such route.")
		case http.StatusMethodNotAllowed:
			return problem.New(http.StatusMethodNotAllowed, "method-not-allowed", "Method not allowed", "This route does not take that method.")
		case http.StatusRequestEntityTooLarge:
			return problem.New(http.StatusRequestEntityTooLarge, "body-too-large", "Request body too large", "The request body exceeds the limit.",
				validate.FieldError{Field: "body", Message: "exceeds the size limit"})
		case http.StatusBadRequest, http.StatusUnsupportedMediaType:
			field := "body"
			if strings.HasPrefix(msg, "Invalid format for parameter ") {
				rest := strings.TrimPrefix(msg, "Invalid format for parameter ")
				field, _, _ = strings.Cut(rest, ":")
			}
			p := problem.BadRequest(field, "%s", msg)
			p.Status = he.Code
			return p
		}
		if he.Code >= 400 && he.Code < 500 {
			return problem.New(he.Code, "bad-request", http.StatusText(he.Code), msg)
		}
	}
	// A body that is not JSON, or not sent as JSON, could not be read at all:
	// 400 or 415, not the 422 of a readable request with invalid fields.
	var ve *validate.Error
	if errors.As(err, &ve) {
		for _, f := range ve.Fields {
			if f.Field != "body" {
				continue
			}
			p := problem.Invalid(ve.Fields...)
			switch {
			case strings.HasPrefix(f.Message, "is not valid JSON"):
				p.Status, p.Type, p.Title = http.StatusBadRequest, "bad-request", "Malformed request"
				return p
			case strings.HasPrefix(f.Message, "must be sent with Content-Type"):
				p.Status, p.Type, p.Title = http.StatusUnsupportedMediaType, "unsupported-media-type", "Unsupported media type"
				return p
			}
		}
	}
	return problem.From(err)
}
