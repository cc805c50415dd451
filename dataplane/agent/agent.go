package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/fulcrumlb/fulcrum/dataplane/haproxy"
	"github.com/fulcrumlb/fulcrum/dataplane/keepalived"
	"github.com/fulcrumlb/fulcrum/openapi"
)

// Config configures an agent.
type Config struct {
	// Endpoint is the API's base URL, e.g. http://127.0.0.1:8080.
	Endpoint string
	// Token is a node token.
	Token string
	// NodeName identifies the node (a hostname-like name).
	NodeName string
	// NodeGroupID places a new node; defaults to the token's group.
	NodeGroupID string
	// StateDir holds the last applied snapshot, certificates, the HAProxy
	// config and sockets. Defaults to /var/lib/fulcrum-agent.
	StateDir string
	// HAProxy is the haproxy binary. Defaults to "haproxy".
	HAProxy string
	// PollWait is the long-poll wait. Defaults to 30s.
	PollWait time.Duration
	// ReportInterval is how often health and counters are reported. Defaults to 5s.
	ReportInterval time.Duration
	// MaxConn is HAProxy's global maxconn. Defaults to 4000.
	MaxConn int
	// HardStopAfter bounds old workers after a reload. Defaults to 30s.
	HardStopAfter time.Duration
	// PrometheusAddr, when set (e.g. 127.0.0.1:8405), serves HAProxy's exporter.
	PrometheusAddr string
	// StopHAProxyOnExit stops HAProxy when Run returns. By default Run
	// leaves HAProxy serving, and the next agent on the same state directory
	// takes it over without refusing a connection (restarts and upgrades are
	// hitless). `fulcrum dev` and in-process test stacks set it.
	StopHAProxyOnExit bool
	// Version is reported at registration.
	Version string
	Logger  *slog.Logger
	// HTTPClient talks to the API. Defaults to a client with sane timeouts.
	HTTPClient *http.Client
}

func (c *Config) setDefaults() {
	if c.StateDir == "" {
		c.StateDir = "/var/lib/fulcrum-agent"
	}
	if c.HAProxy == "" {
		c.HAProxy = "haproxy"
	}
	if c.PollWait == 0 {
		c.PollWait = 30 * time.Second
	}
	if c.ReportInterval == 0 {
		c.ReportInterval = 5 * time.Second
	}
	if c.MaxConn == 0 {
		c.MaxConn = 4000
	}
	if c.HardStopAfter == 0 {
		c.HardStopAfter = 30 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{Timeout: c.PollWait + 30*time.Second}
	}
}

// Agent realizes snapshots on one node.
type Agent struct {
	cfg     Config
	log     *slog.Logger
	client  *openapi.ClientWithResponses
	proc    *haproxy.Process
	runtime haproxy.Runtime
	tracer  trace.Tracer
	vips    *keepalived.Manager // VRRP for the group's VIPs

	mu       sync.Mutex
	snap     *openapi.Snapshot // last applied
	live     *haproxy.Config   // what HAProxy runs
	lbErrors map[string]string // LBs left out or kept at their last good version
	reportCh chan struct{}
	drains   drains // members leaving service (drain.go)
}

// Paths inside the state directory.
func (a *Agent) path(name string) string { return filepath.Join(a.cfg.StateDir, name) }

// New builds an agent; Run starts it.
func New(cfg Config) (*Agent, error) {
	cfg.setDefaults()
	if cfg.Endpoint == "" || cfg.Token == "" || cfg.NodeName == "" {
		return nil, errors.New("agent: endpoint, token and node name are required")
	}
	client, err := openapi.NewClientWithResponses(cfg.Endpoint, openapi.WithHTTPClient(cfg.HTTPClient),
		openapi.WithRequestEditorFn(func(ctx context.Context, req *http.Request) error {
			req.Header.Set("Authorization", "Bearer "+cfg.Token)
			otel.GetTextMapPropagator().Inject(ctx, propagation.HeaderCarrier(req.Header))
			return nil
		}))
	if err != nil {
		return nil, err
	}
	a := &Agent{cfg: cfg, log: cfg.Logger, client: client, tracer: otel.Tracer("github.com/fulcrumlb/fulcrum/dataplane/agent"),
		lbErrors: map[string]string{}, reportCh: make(chan struct{}, 1)}
	run := a.path("run")
	a.runtime = haproxy.Runtime{Socket: filepath.Join(run, "stats.sock")}
	a.proc = haproxy.NewProcess(haproxy.ProcessConfig{Binary: cfg.HAProxy, ConfigPath: a.path("haproxy.cfg"), Dir: run, Logger: cfg.Logger})
	a.vips = keepalived.New(keepalived.Config{Dir: a.path("keepalived"), NodeName: cfg.NodeName, Healthy: a.haproxyHealthy, Logger: cfg.Logger})
	return a, nil
}

// Runtime is the HAProxy runtime API the agent uses (for tests and tools).
func (a *Agent) Runtime() haproxy.Runtime { return a.runtime }

// Process is the supervised HAProxy.
func (a *Agent) Process() *haproxy.Process { return a.proc }

// AppliedRevision is the revision HAProxy serves.
func (a *Agent) AppliedRevision() int64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.snap == nil {
		return 0
	}
	return a.snap.Revision
}

func (a *Agent) global() haproxy.Global {
	g := haproxy.Global{MaxConn: a.cfg.MaxConn, StatsSocket: a.runtime.Socket, HardStopAfter: a.cfg.HardStopAfter,
		ServerStateFile: a.path("run/server-state")}
	if a.cfg.PrometheusAddr != "" {
		if ap, err := netip.ParseAddrPort(a.cfg.PrometheusAddr); err == nil {
			g.PrometheusBind = ap
		}
	}
	return g
}

// Run serves until ctx ends: first the last snapshot on disk (static
// stability: traffic flows before the API is reachable), then whatever the API
// sends. It holds an exclusive lock on the state directory (a second agent on
// it fails with ErrStateDirLocked) and takes over the HAProxy an earlier agent
// left running. On return it leaves HAProxy serving, or stops it when
// Config.StopHAProxyOnExit is set.
func (a *Agent) Run(ctx context.Context) error {
	for _, d := range []string{a.cfg.StateDir, a.path("run"), a.path("certs")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return fmt.Errorf("agent: state dir: %w", err)
		}
	}
	lock, err := lockStateDir(a.cfg.StateDir)
	if err != nil {
		return err
	}
	defer lock.Close()
	leave := func() {
		if !a.cfg.StopHAProxyOnExit {
			// keepalived keeps holding the VIPs with HAProxy; the next
			// agent adopts it.
			a.proc.Release()
			return
		}
		a.vips.Stop(5 * time.Second) // give the VIPs up before HAProxy goes
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := a.proc.Stop(sctx); err != nil {
			a.log.Error("stop haproxy", "err", err)
		}
	}
	if err := a.startHAProxy(ctx); err != nil {
		if ctx.Err() != nil { // stopped while starting
			leave()
			return nil
		}
		return err
	}
	defer leave()
	a.updateVIPs(a.snap)
	var wg sync.WaitGroup
	wg.Add(3)
	go func() { defer wg.Done(); a.vips.Run(ctx) }()
	go func() { defer wg.Done(); a.proc.Supervise(ctx) }()
	go func() { defer wg.Done(); a.reportLoop(ctx) }()
	a.pollLoop(ctx)
	wg.Wait()
	return nil
}

// startHAProxy starts HAProxy on the last good snapshot, or on an empty config.
func (a *Agent) startHAProxy(ctx context.Context) error {
	cfg := haproxy.Config{Global: a.global()}
	if snap, err := a.loadSnapshot(); err == nil {
		a.prepareVIPs(snap)
		if applied, lbErrors, err := a.prepare(ctx, snap); err == nil {
			cfg = applied
			a.snap, a.lbErrors = snap, lbErrors
			a.log.Info("serving last snapshot from disk", "revision", snap.Revision, "load_balancers", len(cfg.LoadBalancers))
		} else {
			a.log.Error("last snapshot on disk cannot be served; starting empty", "err", err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		a.log.Error("read last snapshot", "err", err)
	}
	if err := ctx.Err(); err != nil {
		return err // stopping: do not replace the config a running HAProxy may reload
	}
	text, err := haproxy.Render(cfg)
	if err != nil {
		return fmt.Errorf("agent: render: %w", err)
	}
	if err := writeFileAtomic(a.path("haproxy.cfg"), text, 0o600); err != nil {
		return err
	}
	if _, err := os.Stat(a.path("run/server-state")); errors.Is(err, os.ErrNotExist) {
		_ = os.WriteFile(a.path("run/server-state"), []byte("1\n"), 0o600)
	}
	if err := a.proc.Start(ctx); err != nil {
		if !a.proc.Running() {
			return fmt.Errorf("agent: start haproxy: %w", err)
		}
		// A master taken over that refused the reload serves what it had.
		a.log.Error("took over the running haproxy, but it did not reload", "err", err)
	}
	a.live = &cfg
	return nil
}

// pollLoop registers, then long-polls for newer snapshots until ctx ends.
func (a *Agent) pollLoop(ctx context.Context) {
	backoff := time.Second
	registered := false
	wait := a.cfg.PollWait.String()
	for ctx.Err() == nil {
		if !registered {
			if err := a.register(ctx); err != nil {
				a.log.Warn("register with the API failed; serving what we have", "err", err, "retry_in", backoff)
				sleep(ctx, backoff)
				backoff = min(backoff*2, 5*time.Second)
				continue
			}
			registered = true
		}
		after := a.AppliedRevision()
		res, err := a.client.GetNodeSnapshotWithResponse(ctx, a.cfg.NodeName, &openapi.GetNodeSnapshotParams{After: &after, Wait: &wait})
		if err != nil {
			if ctx.Err() == nil {
				a.log.Warn("snapshot poll failed; serving what we have", "err", err, "retry_in", backoff)
				sleep(ctx, backoff)
				backoff = min(backoff*2, 5*time.Second)
			}
			continue
		}
		switch res.StatusCode() {
		case http.StatusOK:
			backoff = time.Second
			if err := a.Apply(ctx, res.JSON200); err != nil {
				a.log.Error("apply snapshot", "revision", res.JSON200.Revision, "err", err)
				a.reportNack(ctx, res.JSON200.Revision, err)
				sleep(ctx, backoff)
			}
		case http.StatusNotModified:
			backoff = time.Second
		case http.StatusNotFound:
			registered = false
		default:
			a.log.Warn("snapshot poll", "status", res.StatusCode(), "body", string(res.Body))
			sleep(ctx, backoff)
			backoff = min(backoff*2, 5*time.Second)
		}
	}
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

func (a *Agent) register(ctx context.Context) error {
	body := openapi.NodeRegistration{AgentVersion: &a.cfg.Version}
	if a.cfg.NodeGroupID != "" {
		body.NodeGroupId = &a.cfg.NodeGroupID
	}
	res, err := a.client.RegisterNodeWithResponse(ctx, a.cfg.NodeName, body)
	if err != nil {
		return err
	}
	if res.StatusCode() != http.StatusOK {
		return fmt.Errorf("register: %d %s", res.StatusCode(), res.Body)
	}
	a.log.Info("registered", "node", a.cfg.NodeName, "node_group_id", res.JSON200.NodeGroupId)
	return nil
}

// Apply realizes a snapshot: older or equal revisions are ignored; load
// balancers HAProxy rejects are left at their last good version (reported as
// errors) so the others still change; member-only changes go through the
// runtime API without a reload.
func (a *Agent) Apply(ctx context.Context, snap *openapi.Snapshot) (err error) {
	var opts []trace.SpanStartOption
	if snap.Traceparent != nil {
		wctx := propagation.TraceContext{}.Extract(context.Background(), propagation.MapCarrier{"traceparent": *snap.Traceparent})
		if sc := trace.SpanContextFromContext(wctx); sc.IsValid() {
			opts = append(opts, trace.WithLinks(trace.Link{SpanContext: sc}))
		}
	}
	opts = append(opts, trace.WithAttributes(attribute.Int64("fulcrum.revision", snap.Revision), attribute.String("fulcrum.node", a.cfg.NodeName)))
	ctx, span := a.tracer.Start(ctx, "agent.apply", opts...)
	defer func() {
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
	}()

	a.mu.Lock()
	defer a.mu.Unlock()
	if a.snap != nil && snap.Revision <= a.snap.Revision {
		return nil
	}
	a.prepareVIPs(snap)
	// Member-only changes skip the candidate check and the reload: they go
	// through the runtime API, and only member fields the API validated differ
	// from the config HAProxy already accepted.
	var cfg haproxy.Config
	lbErrors := map[string]string{}
	reloaded := true
	if a.live != nil && len(a.lbErrors) == 0 {
		if next, err := a.convert(snap); err == nil {
			if ops, ok := memberOps(*a.live, next); ok {
				if err := a.applyRuntime(ctx, ops); err == nil {
					cfg, reloaded = next, false
				} else {
					a.log.Warn("runtime change failed; reloading instead", "err", err)
				}
			}
		}
	}
	if reloaded {
		var err error
		if cfg, lbErrors, err = a.prepare(ctx, snap); err != nil {
			return err
		}
	}
	text, err := haproxy.Render(cfg)
	if err != nil {
		return err
	}
	if err := writeFileAtomic(a.path("haproxy.cfg"), text, 0o600); err != nil {
		return err
	}
	if reloaded {
		_, rspan := a.tracer.Start(ctx, "haproxy.reload")
		a.saveServerState(ctx, cfg)
		err := a.proc.Reload(ctx)
		rspan.End()
		if err != nil {
			// Put the old file back so the next reload agrees with what runs.
			if old, rerr := haproxy.Render(*a.live); rerr == nil {
				_ = writeFileAtomic(a.path("haproxy.cfg"), old, 0o600)
			}
			return fmt.Errorf("reload: %w", err)
		}
	}
	a.startDrains(ctx, a.live, cfg, reloaded)
	span.SetAttributes(attribute.Bool("fulcrum.reloaded", reloaded), attribute.Int("fulcrum.load_balancer_errors", len(lbErrors)))
	a.live, a.snap, a.lbErrors = &cfg, snap, lbErrors
	a.updateVIPs(snap)
	if err := a.saveSnapshot(snap); err != nil {
		a.log.Error("save snapshot", "err", err)
	}
	a.log.Info("applied snapshot", "revision", snap.Revision, "reloaded", reloaded, "load_balancers", len(cfg.LoadBalancers), "errors", len(lbErrors))
	select {
	case a.reportCh <- struct{}{}:
	default:
	}
	return nil
}

// prepare converts and validates a snapshot. Load balancers whose sections
// HAProxy rejects keep their last good version (or are left out), with
// HAProxy's message, so one tenant's bad object cannot block the node.
func (a *Agent) prepare(ctx context.Context, snap *openapi.Snapshot) (haproxy.Config, map[string]string, error) {
	_, span := a.tracer.Start(ctx, "agent.validate")
	defer span.End()
	cfg, err := a.convert(snap)
	if err != nil {
		return haproxy.Config{}, nil, err
	}
	lbErrors := map[string]string{}
	if err := a.check(ctx, cfg); err == nil {
		return cfg, lbErrors, nil
	}
	// Find the culprits one load balancer at a time.
	previous := map[string]haproxy.LoadBalancer{}
	if a.live != nil {
		for _, lb := range a.live.LoadBalancers {
			previous[lb.ID] = lb
		}
	}
	kept := cfg.LoadBalancers[:0:0]
	for _, lb := range cfg.LoadBalancers {
		text, err := haproxy.RenderLoadBalancer(cfg.Global, lb)
		if err == nil {
			err = a.checkText(ctx, text)
		}
		if err == nil {
			kept = append(kept, lb)
			continue
		}
		lbErrors[lb.ID] = err.Error()
		if old, ok := previous[lb.ID]; ok {
			kept = append(kept, old)
		}
	}
	cfg.LoadBalancers = kept
	if err := a.check(ctx, cfg); err != nil {
		return haproxy.Config{}, nil, fmt.Errorf("config invalid even without the failing load balancers: %w", err)
	}
	return cfg, lbErrors, nil
}

// convert writes the snapshot's certificates and builds the HAProxy model.
func (a *Agent) convert(snap *openapi.Snapshot) (haproxy.Config, error) {
	certFile, err := WriteCertificates(a.path("certs"), snap.Certificates)
	if err != nil {
		return haproxy.Config{}, err
	}
	return ToConfig(snap, a.global(), certFile)
}

func (a *Agent) check(ctx context.Context, cfg haproxy.Config) error {
	text, err := haproxy.Render(cfg)
	if err != nil {
		return err
	}
	return a.checkText(ctx, text)
}

func (a *Agent) checkText(ctx context.Context, text []byte) error {
	f, err := os.CreateTemp(a.path("run"), "candidate-*.cfg")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(text); err != nil {
		f.Close()
		return err
	}
	f.Close()
	return haproxy.Check(ctx, a.cfg.HAProxy, f.Name())
}

// saveServerState dumps servers' state for the next worker to load, so a
// reload does not forget which members are down. The dump's administrative
// fields (maintenance, weight, address) are rewritten to what cfg says: the
// file carries health across reloads, never stale intent.
func (a *Agent) saveServerState(ctx context.Context, cfg haproxy.Config) {
	out, err := a.runtime.Command(ctx, "show servers state")
	if err != nil {
		a.log.Warn("save server state", "err", err)
		return
	}
	if err := writeFileAtomic(a.path("run/server-state"), []byte(rewriteServerState(out, cfg)), 0o600); err != nil {
		a.log.Warn("save server state", "err", err)
	}
}

// rewriteServerState sets srv_addr, srv_admin_state, srv_uweight, srv_iweight
// and srv_port of every known member to the desired values.
func rewriteServerState(dump string, cfg haproxy.Config) string {
	want := map[string]haproxy.Member{}
	for _, lb := range cfg.LoadBalancers {
		for _, p := range lb.Pools {
			for _, m := range p.Members {
				want[p.ID+"/"+m.ID] = m
			}
		}
	}
	lines := strings.Split(dump, "\n")
	for i, line := range lines {
		f := strings.Fields(line)
		if len(f) < 19 || strings.HasPrefix(line, "#") {
			continue
		}
		m, ok := want[f[1]+"/"+f[3]]
		if !ok {
			continue
		}
		if _, err := netip.ParseAddr(m.Address); err == nil {
			f[4] = m.Address
		}
		f[6] = "0"
		if !m.Enabled {
			f[6] = "1"
		}
		f[7], f[8] = strconv.Itoa(m.Weight), strconv.Itoa(m.Weight)
		f[18] = strconv.Itoa(m.Port)
		lines[i] = strings.Join(f, " ")
	}
	return strings.Join(lines, "\n")
}

func (a *Agent) loadSnapshot() (*openapi.Snapshot, error) {
	b, err := os.ReadFile(a.path("snapshot.json"))
	if err != nil {
		return nil, err
	}
	var s openapi.Snapshot
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("decode %s: %w", a.path("snapshot.json"), err)
	}
	return &s, nil
}

func (a *Agent) saveSnapshot(s *openapi.Snapshot) error {
	b, err := json.Marshal(s)
	if err != nil {
		return err
	}
	return writeFileAtomic(a.path("snapshot.json"), b, 0o600)
}
