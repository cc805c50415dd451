package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel"
	otellog "go.opentelemetry.io/otel/log"
	logglobal "go.opentelemetry.io/otel/log/global"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/fulcrumlb/fulcrum/dataplane/haproxy"
	"github.com/fulcrumlb/fulcrum/dataplane/keepalived"
	"github.com/fulcrumlb/fulcrum/internal/atomicfile"
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
	// ReportInterval is how often health and counters are reported. Zero
	// (the default) follows the node group's heartbeat interval, which every
	// snapshot carries (DefaultReportInterval until the first one).
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
	// PeerAddress is where this node's HAProxy listens for its group's
	// peers (ip:port on its LAN address); "" takes no part in peers.
	PeerAddress string
	// Version is reported at registration.
	Version string
	Logger  *slog.Logger
	// HTTPClient talks to the API. Defaults to a client with sane timeouts.
	HTTPClient *http.Client
	// TracerProvider makes the agent's spans. Defaults to the otel global.
	TracerProvider trace.TracerProvider
	// MeterProvider makes the agent's metrics (metrics.go). Defaults to the
	// otel global.
	MeterProvider metric.MeterProvider
	// LoggerProvider receives the access log records (accesslog.go) as
	// OpenTelemetry logs. Defaults to the otel global.
	LoggerProvider otellog.LoggerProvider
	// AccessLog, when set, receives the access log records as JSON lines.
	AccessLog io.Writer
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
	if c.TracerProvider == nil {
		c.TracerProvider = otel.GetTracerProvider()
	}
	if c.MeterProvider == nil {
		c.MeterProvider = otel.GetMeterProvider()
	}
	if c.LoggerProvider == nil {
		c.LoggerProvider = logglobal.GetLoggerProvider()
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
	vips    *keepalived.Manager // VRRP for the group's VIPs (vip.go)

	// newest is the newest snapshot handed to Apply (apply.go): applies
	// queued behind a running one apply it.
	newest atomic.Pointer[openapi.Snapshot]

	mu       sync.Mutex
	snap     *openapi.Snapshot    // last applied
	want     *openapi.Snapshot    // newest received (retried when a failure may pass)
	live     *haproxy.Config      // what HAProxy runs
	lbErrors map[string]lbFailure // LBs left out or kept at their last good version
	// nodeErrors are the node-level failures in force, by kind.
	nodeErrors map[openapi.NodeErrorKind]string
	failedRev  int64 // newest revision that failed as a whole: not fetched again
	retry      bool  // whether re-applying the newest snapshot may succeed now
	// certLoaded is the content hash of each certificate file HAProxy loaded.
	certLoaded map[string]string
	// certWritten is the content hash of each certificate file written, by id.
	certWritten map[string]string
	reportCh    chan struct{}
	drains      drains      // members leaving service (drain.go)
	stats       *statsStore // counters across reloads and restarts (stats.go)
	// memberReports: the member health the API acknowledged (members_report.go).
	memberReports memberReports
	quiet         quietReports // heartbeats of an idle node read little (report.go)
	scope         reportScope  // what the applies since the last report changed (report.go); under mu
	metrics       *agentMetrics
	access        *accessLog // tenants' access log (accesslog.go)
	accessSock    string     // its socket, once listening

	// The roles HAProxy plays for Apply (roles.go): New sets the real
	// ones, unit tests fakes.
	checker  checker    // `haproxy -c` of a candidate config
	reloader reloader   // reloads through the master CLI, confirmed
	changes  runtimeAPI // runtime-API changes: members, certificates
	binder   binder     // whether a new VIP:port can be bound

	delta   deltaState // the base of the next delta (delta.go)
	pollAck pollAcks   // acknowledgements carried by polls (pollack.go)
	stream  streams    // the snapshot stream, node protocol 3 (stream.go)
	// streamClient speaks HTTP/2 to the API for streams (stream.go),
	// rawClient HTTP/1.1 for raw streams (streamraw.go).
	streamClient, rawClient *http.Client

	// Under mu as well (apply.go):
	// parked are the members of load balancers without listeners: not in
	// HAProxy's configuration (they serve no traffic), reported no_monitor.
	parked []parkedMember
	// render renders configurations, re-rendering only the load balancers
	// that changed.
	render haproxy.RenderCache
	// swapped: takeChecked left the previous haproxy.cfg at the candidate's
	// path (dropChecked removes it after the reload).
	swapped bool
	// stateJSON encodes snapshot.json, re-encoding only what changed (state.go).
	stateJSON stateEncoder
	// persist (state.go): with persistAsync (while Run runs) an apply
	// marks the state dirty and wakes the writer of snapshot.json instead
	// of writing it itself; stateMu serializes the writes.
	persistAsync bool
	stateDirty   bool
	persist      chan struct{}
	stateMu      sync.Mutex
	stateBuf     []byte // the last snapshot.json flushState wrote, its buffer reused (stateMu)
	// cfgDirty: haproxy.cfg is due to be written from a.live (a change made
	// through the runtime API, members_config.go); cfgWrite wakes configLoop.
	cfgDirty bool
	cfgWrite chan struct{}
	// converted are the load balancers' models by revision (apply.go).
	converted conversions
	// planPrev and planCands are the maps of an apply's plan, reused (apply.go).
	planPrev, planCands map[string]haproxy.LoadBalancer
	// written is the text last written to haproxy.cfg (nil: unknown).
	written []byte
	// cfgMine and cfgSpare are writeConfig's render buffers (apply.go).
	cfgMine, cfgSpare []byte
	// checked is the last candidate `haproxy -c` passed, still on disk at
	// run/candidate.cfg (nil: none is): a reload onto that very text moves
	// the file into place instead of writing haproxy.cfg again (apply.go).
	checked []byte
	// checkedCfg is the configuration checked is the text of (nil when
	// unknown, or when checked holds one load balancer alone).
	checkedCfg *haproxy.Config
	// serverState is the text last written to the server-state file
	// (saveServerState; "": unknown).
	serverState string
	// early is the counters' sample an apply that reloads takes while its
	// candidate is checked (stats.go: sampleEarly), until its first reload.
	early *earlySample
	// liveUnsure: HAProxy was taken over serving a configuration newer
	// than the state on disk (a.live), left as it was (startServing); the
	// next apply reloads, whatever changed, and the first reload clears it.
	liveUnsure bool
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
	a := &Agent{cfg: cfg, log: cfg.Logger, client: client, tracer: cfg.TracerProvider.Tracer("github.com/fulcrumlb/fulcrum/dataplane/agent"),
		lbErrors: map[string]lbFailure{}, nodeErrors: map[openapi.NodeErrorKind]string{}, certLoaded: map[string]string{}, certWritten: map[string]string{},
		reportCh: make(chan struct{}, 1), persist: make(chan struct{}, 1), cfgWrite: make(chan struct{}, 1), streamClient: newStreamClient(cfg), rawClient: newRawStreamClient(cfg)}
	run := a.path("run")
	a.stats = loadStats(a.path("stats.json"))
	a.metrics = newAgentMetrics(a, cfg.MeterProvider)
	a.access = newAccessLog(cfg.NodeName, cfg.Logger, cfg.LoggerProvider, cfg.AccessLog, cfg.MeterProvider)
	a.runtime = haproxy.Runtime{Socket: filepath.Join(run, "stats.sock"), Exchanges: &haproxy.Exchanges{}}
	a.proc = haproxy.NewProcess(haproxy.ProcessConfig{Binary: cfg.HAProxy, ConfigPath: a.path("haproxy.cfg"), Dir: run, Logger: cfg.Logger})
	a.checker, a.reloader, a.changes, a.binder = haproxyChecker{binary: cfg.HAProxy}, a.proc, a.runtime, socketBinder{}
	a.vips = keepalived.New(keepalived.Config{Dir: a.path("keepalived"), NodeName: cfg.NodeName, Healthy: a.haproxyHealthy, Logger: cfg.Logger})
	return a, nil
}

// Runtime is the HAProxy runtime API the agent uses (for tests and tools).
func (a *Agent) Runtime() haproxy.Runtime { return a.runtime }

// StateDir is the agent's state directory.
func (a *Agent) StateDir() string { return a.cfg.StateDir }

// Process is the supervised HAProxy.
func (a *Agent) Process() *haproxy.Process { return a.proc }

// AppliedRevision is the revision HAProxy serves (haproxy.cfg written first
// when a write of it is due: what is applied is on disk too).
func (a *Agent) AppliedRevision() int64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.flushConfigLocked() // what is applied is in haproxy.cfg too (tests read it)
	if a.snap == nil {
		return 0
	}
	return a.snap.Revision
}

func (a *Agent) global() haproxy.Global {
	g := haproxy.Global{MaxConn: a.cfg.MaxConn, StatsSocket: a.runtime.Socket, HardStopAfter: a.cfg.HardStopAfter,
		ServerStateFile: a.path("run/server-state"), AccessLogSocket: a.accessSock}
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
	// The access log socket, before HAProxy can send to it. Without it the
	// node serves, and logs nothing.
	if conn, err := listenAccessLog(a.path("run/access.sock")); err != nil {
		a.log.Error("access log disabled", "err", err)
	} else {
		a.accessSock = conn.LocalAddr().String()
		actx, stop := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { defer close(done); a.access.run(actx, conn) }()
		defer func() { stop(); <-done }()
	}
	leave := func() {
		a.flushConfig() // what runs is on disk before HAProxy is left to the next agent
		a.flushState()
		a.stats.flushNow()
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
		a.vips.Unpark() // HAProxy has finished its connections on the VIPs
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
	wg.Add(6)
	a.mu.Lock()
	a.persistAsync = true
	a.mu.Unlock()
	go func() { defer wg.Done(); a.persistLoop(ctx) }()
	go func() { defer wg.Done(); a.configLoop(ctx) }()
	go func() { defer wg.Done(); a.stats.writeLoop(ctx) }()
	go func() { defer wg.Done(); a.vips.Run(ctx) }()
	go func() { defer wg.Done(); a.proc.Supervise(ctx) }()
	go func() { defer wg.Done(); a.reportLoop(ctx) }()
	a.pollLoop(ctx)
	wg.Wait()
	return nil
}

// startHAProxy starts HAProxy on what it served before (see restore), or on
// an empty config.
func (a *Agent) startHAProxy(ctx context.Context) error {
	ctx, span := a.tracer.Start(ctx, "agent.start") // the parent of the validation of the state on disk
	defer span.End()
	cfg := a.restore()
	a.prepareVIPs(a.snap)
	if _, err := os.Stat(a.path("run/server-state")); errors.Is(err, os.ErrNotExist) {
		_ = os.WriteFile(a.path("run/server-state"), []byte("1\n"), 0o600)
	}
	return a.startServing(ctx, cfg)
}

// pollLoop registers, then long-polls for newer snapshots until ctx ends.
func (a *Agent) pollLoop(ctx context.Context) {
	retryDone := make(chan struct{})
	go func() { defer close(retryDone); a.retryLoop(ctx) }()
	defer func() { <-retryDone }()
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
		if a.streamNow() {
			// Node protocol 3 (stream.go): one stream instead of a poll
			// per change, while it lasts.
			opened := time.Now()
			switch a.runStream(ctx) {
			case streamBroken:
				if time.Since(opened) < 5*time.Second {
					// Broken as soon as opened (a replica stopping, a
					// proxy cutting it): not a tight loop.
					sleep(ctx, backoff)
					backoff = min(backoff*2, 5*time.Second)
					break
				}
				backoff = time.Second
				sleep(ctx, 100*time.Millisecond)
			case streamUnreachable:
				sleep(ctx, backoff)
				backoff = min(backoff*2, 5*time.Second)
			case streamReregister:
				registered = false
				a.streamRefused()
			case streamNotOpened:
				a.streamRefused()
			}
			continue
		}
		after := a.pollAfter()
		params := a.pollParams(after, wait) // delta.go
		res, err := a.client.GetNodeSnapshotWithResponse(ctx, a.cfg.NodeName, params)
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
			a.polled(res.HTTPResponse, params) // pollack.go
			a.metrics.observeSnapshot(ctx, res.Body)
			snap := a.receive(ctx, res.JSON200) // delta.go: merged with what is held
			if snap == nil {
				continue
			}
			a.expectPollAck() // the next poll acknowledges a clean apply
			if err := a.Apply(ctx, snap); err != nil {
				// Not fetched again until a newer revision exists (or, for
				// failures that may pass, retried by retryLoop).
				a.log.Error("apply snapshot", "revision", snap.Revision, "err", err)
				a.reportNack(ctx, snap.Revision, err)
			}
		case http.StatusNotModified:
			backoff = time.Second
			a.polled(res.HTTPResponse, params)
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
	if a.cfg.PeerAddress != "" {
		body.PeerAddress = &a.cfg.PeerAddress
	}
	if a.cfg.NodeGroupID != "" {
		body.NodeGroupId = &a.cfg.NodeGroupID
	}
	res, err := a.client.RegisterNodeWithResponse(ctx, a.cfg.NodeName, body)
	if err != nil {
		return err
	}
	if res.StatusCode() == http.StatusOK {
		a.noteProtocol(res.HTTPResponse) // stream.go
	}
	switch res.StatusCode() {
	case http.StatusOK:
	case http.StatusConflict, http.StatusUnauthorized:
		// Deleted by an admin (node-deleted) or a revoked token: only an
		// admin can fix it; keep serving what we have meanwhile.
		return fmt.Errorf("register: the API refuses node %s (an admin deleted it or revoked its token; re-create it with POST /v1/nodes): %d %s",
			a.cfg.NodeName, res.StatusCode(), res.Body)
	default:
		return fmt.Errorf("register: %d %s", res.StatusCode(), res.Body)
	}
	a.log.Info("registered", "node", a.cfg.NodeName, "node_group_id", res.JSON200.NodeGroupId)
	return nil
}

// checkText runs `haproxy -c` on text, written to run/candidate.cfg. A text
// that passes stays there (a.checked), so that the reload onto it renames
// the checked file into place (takeChecked) instead of writing the same
// bytes again; one that fails is removed. a.mu held.
func (a *Agent) checkText(ctx context.Context, text []byte) error {
	a.checked = nil
	name := a.candidatePath()
	// A new file, not a left-over one truncated: ext4 starts writing a file
	// truncated and rewritten out to disk when it is closed (auto_da_alloc),
	// on the way to the reload. Not synced (see reloadTo).
	os.Remove(name)
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nodeFailure(openapi.Disk, fmt.Errorf("write a candidate config: %w", err))
	}
	_, err = f.Write(text)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(name)
		return nodeFailure(openapi.Disk, fmt.Errorf("write a candidate config: %w", err))
	}
	a.startEarlySample(ctx) // the old worker's counters, read meanwhile (stats.go)
	if err := a.checker.Check(ctx, name); err != nil {
		os.Remove(name)
		return err
	}
	a.checked = text
	return nil
}

// candidatePath is the file candidates are checked in.
func (a *Agent) candidatePath() string { return a.path("run/candidate.cfg") }

// takeChecked moves the candidate last checked into haproxy.cfg when it
// holds exactly text, and says whether it did: the file HAProxy reloads
// from is then the very file `haproxy -c` passed, and the reload's path
// writes nothing. The two files are swapped (atomicfile.Swap): the previous
// haproxy.cfg is left at the candidate's path, for dropChecked to remove
// after the reload. a.mu held.
func (a *Agent) takeChecked(text []byte) bool {
	if a.checked == nil || !bytes.Equal(a.checked, text) {
		return false
	}
	a.checked = nil
	swapped, err := atomicfile.Swap(a.candidatePath(), a.path("haproxy.cfg"))
	a.swapped = swapped
	return err == nil
}

// dropChecked removes the previous haproxy.cfg takeChecked left at the
// candidate's path, once the reload is done. a.mu held.
func (a *Agent) dropChecked() {
	if a.swapped {
		a.swapped = false
		os.Remove(a.candidatePath())
	}
}

// saveServerState writes the servers' state for the next worker to load
// (HAProxy's server-state-file), so a reload does not forget which members
// health checks found down. Only pools with health checks, in what runs and
// in cfg, have such state: every other server's state is what cfg says, and
// HAProxy takes a server the file does not list from the configuration. So
// a node without health checks dumps nothing (at 1,000 load balancers of 10
// members the whole dump is 1.2 MB, for HAProxy to write and the next worker
// to parse, on every reload). The dump's administrative fields (maintenance,
// weight, address) are rewritten to what cfg says: the file carries health
// across reloads, never stale intent.
func (a *Agent) saveServerState(ctx context.Context, cfg haproxy.Config) {
	a.sampleBeforeReload(ctx) // the old worker's final counts (stats.go)
	a.metrics.observeReload(ctx)
	pools := checkedPools(a.live, cfg)
	var dump string
	switch {
	case len(pools) == 0:
		dump = "1\n"
	case len(pools) <= maxScopedPools:
		var parts []string
		for _, id := range pools {
			out, err := a.runtime.ServersStateOf(ctx, id)
			if err != nil {
				var ce *haproxy.CommandError
				if errors.As(err, &ce) {
					continue // a backend this worker does not have
				}
				a.log.Warn("save server state", "err", err)
				return
			}
			parts = append(parts, out)
		}
		dump = joinServerState(parts)
	default:
		out, err := a.runtime.Command(ctx, "show servers state")
		if err != nil {
			a.log.Warn("save server state", "err", err)
			return
		}
		dump = keepServerState(out, pools)
	}
	text := rewriteServerState(dump, cfg)
	if text == a.serverState {
		return // as written before (a node without health checks: "1")
	}
	a.serverState = ""
	// Read by the next worker at once; not worth an fsync.
	if err := replaceFile(a.path("run/server-state"), []byte(text)); err != nil {
		a.log.Warn("save server state", "err", err)
		return
	}
	a.serverState = text
}

// checkedPools are the ids of the pools with health checks (and members)
// in both live and cfg, sorted: the ones whose servers' health a reload
// should carry.
func checkedPools(live *haproxy.Config, cfg haproxy.Config) []string {
	if live == nil {
		return nil
	}
	running := map[string]bool{}
	for i := range live.LoadBalancers {
		for j := range live.LoadBalancers[i].Pools {
			if p := &live.LoadBalancers[i].Pools[j]; p.Monitor != nil && len(p.Members) > 0 {
				running[p.ID] = true
			}
		}
	}
	var out []string
	for i := range cfg.LoadBalancers {
		for j := range cfg.LoadBalancers[i].Pools {
			if p := &cfg.LoadBalancers[i].Pools[j]; p.Monitor != nil && running[p.ID] {
				out = append(out, p.ID)
			}
		}
	}
	sort.Strings(out)
	return slices.Compact(out)
}

// joinServerState joins dumps of `show servers state <backend>` into one
// file: a version line and the header (the first dump's), then every
// server line.
func joinServerState(parts []string) string {
	head := []string{"1"}
	var body []string
	for n, part := range parts {
		for i, line := range strings.Split(part, "\n") {
			switch {
			case line == "":
			case i == 0:
				if n == 0 {
					head[0] = line // the version
				}
			case strings.HasPrefix(line, "#"):
				if len(head) == 1 {
					head = append(head, line)
				}
			default:
				body = append(body, line)
			}
		}
	}
	return strings.Join(append(head, body...), "\n") + "\n"
}

// keepServerState keeps, of a `show servers state` dump, the version and
// header lines and the servers of the backends in pools.
func keepServerState(dump string, pools []string) string {
	keep := map[string]bool{}
	for _, id := range pools {
		keep[id] = true
	}
	lines := strings.Split(dump, "\n")
	out := make([]string, 0, len(lines))
	for i, line := range lines {
		f := strings.Fields(line)
		if i == 0 || strings.HasPrefix(line, "#") || len(f) < 2 || keep[f[1]] {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}

// rewriteServerState sets srv_addr, srv_admin_state, srv_uweight, srv_iweight
// and srv_port of every known member to the desired values. Only the pools
// the dump lists are looked up: a dump without servers (a node without
// health checks, on every reload) costs nothing, where a map of every
// member (10,000 at 1,000 load balancers) cost 5–8 ms between the check and
// the reload.
func rewriteServerState(dump string, cfg haproxy.Config) string {
	pools := map[string]bool{}
	for line := range strings.SplitSeq(dump, "\n") {
		if f := strings.Fields(line); len(f) >= 19 && !strings.HasPrefix(line, "#") {
			pools[f[1]] = true
		}
	}
	if len(pools) == 0 {
		return dump
	}
	want := map[string]haproxy.Member{}
	for _, lb := range cfg.LoadBalancers {
		for _, p := range lb.Pools {
			if !pools[p.ID] {
				continue
			}
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
