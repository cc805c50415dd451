package haproxy

import (
	"net/netip"
	"time"
)

// Config is everything one node's HAProxy serves: the typed model the config
// file is rendered from. Sections are named by object ids (lsn_…, pool_…,
// mbr_…), never by user strings.
type Config struct {
	Global        Global
	LoadBalancers []LoadBalancer // sorted by ID
}

// Global holds node-wide settings chosen by the agent, not by tenants.
type Global struct {
	// MaxConn is the process-wide connection limit. Defaults to 4000 (the
	// open-files limit on these machines is 20,000).
	MaxConn int
	// StatsSocket is the runtime API socket (level admin, expose-fd listeners).
	StatsSocket string
	// ServerStateFile, when set, is where server state is saved before a
	// reload and loaded after it, so health states survive reloads.
	ServerStateFile string
	// HardStopAfter bounds how long old workers may linger after a reload.
	HardStopAfter time.Duration
	// PrometheusBind, when valid, serves HAProxy's Prometheus exporter on /metrics.
	PrometheusBind netip.AddrPort
	// AccessLogSocket is the unix datagram socket listeners with AccessLog
	// send their records to (render_log.go); "" renders no access log.
	AccessLogSocket string
	// Peers, when set, share the stick tables with the group's other nodes
	// (render_peers.go).
	Peers *Peers
}

// LoadBalancer is one VIP and what it serves.
type LoadBalancer struct {
	ID      string
	VIP     netip.Addr
	Enabled bool // false: nothing is bound for this LB
	// Listeners sorted by port; Pools sorted by ID.
	Listeners []Listener
	Pools     []Pool
	// TenantID is named in access log records; may be "".
	TenantID string
}

// Listener is a frontend bound on VIP:Port.
type Listener struct {
	ID       string
	Protocol string // tcp | http | https
	Port     int
	// DefaultPoolID is the backend used when no rule matches; "" means none
	// (HTTP answers 503, TCP closes).
	DefaultPoolID   string
	ConnectionLimit int // 0 = unlimited
	RateLimit       *RateLimit
	AllowedCIDRs    []netip.Prefix // non-empty: only these sources
	DeniedCIDRs     []netip.Prefix
	Timeouts        Timeouts
	InsertHeaders   InsertHeaders
	// RedirectHTTPToHTTPS answers every request with a 301 to https.
	RedirectHTTPToHTTPS bool
	HSTS                *HSTS
	Compression         bool
	// CertFiles are PEM bundles (chain + key) written by the agent; the first
	// is the default certificate, the others are chosen by SNI.
	CertFiles []string
	// Rules sorted by priority (http/https only).
	Rules []Rule
	// AccessLog sends a record per request (per connection on tcp) to
	// Global.AccessLogSocket.
	AccessLog bool
}

// Timeouts in milliseconds. Client, HTTPRequest and HTTPKeepAlive apply to the
// frontend; Connect, Server and Tunnel to the backends it uses.
type Timeouts struct {
	ClientMS, ConnectMS, ServerMS, HTTPRequestMS, HTTPKeepAliveMS, TunnelMS int
}

// InsertHeaders selects request headers added for members.
type InsertHeaders struct {
	XForwardedFor, XForwardedProto, XForwardedPort, XRequestID bool
}

// RateLimit is per client IP, per second.
type RateLimit struct {
	Type      string // requests | connections
	PerSecond int
}

// HSTS adds Strict-Transport-Security.
type HSTS struct {
	MaxAgeSeconds     int
	IncludeSubdomains bool
	Preload           bool
}

// Rule is a routing rule; Conditions all must match.
type Rule struct {
	ID         string
	Priority   int
	Conditions []Condition
	Action     Action
}

// Condition tests one request field.
type Condition struct {
	Field  string // host | path | header | method | query | cookie | source_ip
	Match  string // exact | prefix | suffix | contains | regex
	Key    string
	Values []string
	Invert bool
}

// Action is what a matching rule does.
type Action struct {
	Type string // forward | redirect | fixed_response | deny
	// Forward: weighted pools.
	Pools []WeightedPool
	// Redirect.
	RedirectURL, RedirectPrefix, RedirectScheme, RedirectHost string
	RedirectPort, RedirectCode                                int
	// Fixed response.
	StatusCode  int
	ContentType string
	Body        string
}

// WeightedPool is one forward target.
type WeightedPool struct {
	PoolID string
	Weight int
}

// Pool is a backend.
type Pool struct {
	ID          string
	Protocol    string // tcp | http
	Algorithm   string // round_robin | static_round_robin | least_connections | source_ip | uri | url_param | header | random | first
	HashKey     string // url_param / header name
	Persistence Persistence
	Monitor     *Monitor // nil: no health checks
	Retries     int
	Redispatch  bool
	// ProxyProtocol sends the PROXY header to members: none | v1 | v2.
	ProxyProtocol  string
	DrainTimeoutMS int
	TLSToMembers   bool
	// Timeouts for the backend (connect, server, tunnel), from the listeners using it.
	ConnectTimeoutMS, ServerTimeoutMS, TunnelTimeoutMS int
	Members                                            []Member // sorted by ID
}

// Persistence keeps a client on one member.
type Persistence struct {
	Type             string // none | source_ip | cookie_insert | cookie_rewrite | cookie_prefix | app_cookie
	CookieName       string
	CookieTTLSeconds int
}

// Monitor is the health check of a pool's members.
type Monitor struct {
	Type                       string // tcp | http | https
	IntervalMS, TimeoutMS      int
	Rise, Fall                 int
	Method, Path, Host, Expect string // http/https; Expect like "200-399" or "200,204"
}

// Member is a server of a pool. Weight 0 drains it (no new connections);
// Enabled false puts it in maintenance.
type Member struct {
	ID             string
	Address        string // IP or DNS name
	Port           int
	Weight         int
	Backup         bool
	Enabled        bool
	MaxConnections int // 0 = unlimited
}
