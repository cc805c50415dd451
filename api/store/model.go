package store

import (
	"net/netip"
	"time"

	"github.com/fulcrumlb/fulcrum/openapi"
)

// Meta is what every tenant object has.
type Meta struct {
	ID          string            `db:"id"`
	TenantID    string            `db:"tenant_id"`
	Name        string            `db:"name"`
	Description string            `db:"description"`
	Labels      map[string]string `db:"labels"`
	Version     int64             `db:"version"`
	Revision    int64             `db:"revision"`
	CreatedAt   time.Time         `db:"created_at"`
	UpdatedAt   time.Time         `db:"updated_at"`
}

// Status is what every dataplane object reports.
type Status struct {
	ProvisioningStatus string `db:"provisioning_status"`
	OperatingStatus    string `db:"operating_status"`
	StatusMessage      string `db:"status_message"`
	DeletedRevision    *int64 `db:"deleted_revision"`
}

// deleted says the object is being deleted (GetLive).
func (s *Status) deleted() bool { return s.DeletedRevision != nil }

// Quotas are a tenant's limits per kind of object.
type Quotas struct {
	LoadBalancers int `json:"load_balancers"`
	Listeners     int `json:"listeners"`
	Pools         int `json:"pools"`
	Members       int `json:"members"`
	RoutingRules  int `json:"routing_rules"`
	Certificates  int `json:"certificates"`
}

// DefaultQuotas apply to fields a tenant's create leaves out.
var DefaultQuotas = Quotas{LoadBalancers: openapi.QuotasLoadBalancersDefault, Listeners: openapi.QuotasListenersDefault,
	Pools: openapi.QuotasPoolsDefault, Members: openapi.QuotasMembersDefault, RoutingRules: openapi.QuotasRoutingRulesDefault,
	Certificates: openapi.QuotasCertificatesDefault}

// Tenant owns load balancers and certificates.
type Tenant struct {
	ID          string            `db:"id"`
	Name        string            `db:"name"`
	Description string            `db:"description"`
	Labels      map[string]string `db:"labels"`
	Quotas      Quotas            `db:"quotas"`
	Version     int64             `db:"version"`
	Revision    int64             `db:"revision"`
	CreatedAt   time.Time         `db:"created_at"`
	UpdatedAt   time.Time         `db:"updated_at"`
}

// Token kinds.
const (
	TokenAdmin  = "admin"
	TokenTenant = "tenant"
	TokenNode   = "node"
)

// Token is a bearer credential; only the hash of its secret is stored.
type Token struct {
	ID          string  `db:"id"`
	Kind        string  `db:"kind"`
	TenantID    *string `db:"tenant_id"`
	NodeGroupID *string `db:"node_group_id"`
	// NodeName binds a node token to one node, by name.
	NodeName *string `db:"node_name"`
	// NodeID binds a node token to one existing node (deleted with it).
	NodeID      *string    `db:"node_id"`
	Name        string     `db:"name"`
	Description string     `db:"description"`
	SecretHash  []byte     `db:"secret_hash"`
	ExpiresAt   *time.Time `db:"expires_at"`
	LastUsedAt  *time.Time `db:"last_used_at"`
	CreatedAt   time.Time  `db:"created_at"`
}

// NodeGroup is a set of nodes serving the same load balancers, with the range
// their VIPs come from.
type NodeGroup struct {
	ID          string            `db:"id"`
	Name        string            `db:"name"`
	Description string            `db:"description"`
	Labels      map[string]string `db:"labels"`
	VIPRange    netip.Prefix      `db:"vip_range"`
	// ReservedPorts are the operator's; see EffectiveReservedPorts.
	ReservedPorts []int `db:"reserved_ports"`
	// Node lifecycle timing (milliseconds): how often agents report, how long
	// without a report before a node is down, how long a down node is kept,
	// and how long a node may fail every apply and still count.
	HeartbeatIntervalMs    int   `db:"heartbeat_interval_ms"`
	DownTimeoutMs          int   `db:"down_timeout_ms"`
	DownNodeCleanupAfterMs int64 `db:"down_node_cleanup_after_ms"`
	ApplyGraceMs           int   `db:"apply_grace_ms"`
	// VRRP settings (005_ha.sql); an empty interface means no keepalived.
	VRRPInterface        string    `db:"vrrp_interface"`
	VRRPRouterIDMin      int       `db:"vrrp_router_id_min"`
	VRRPRouterIDMax      int       `db:"vrrp_router_id_max"`
	VRRPAdvertIntervalMS int       `db:"vrrp_advert_interval_ms"`
	Version              int64     `db:"version"`
	Revision             int64     `db:"revision"`
	CreatedAt            time.Time `db:"created_at"`
	UpdatedAt            time.Time `db:"updated_at"`
}

// Node is one dataplane machine running the agent and HAProxy.
type Node struct {
	ID              string            `db:"id"`
	Name            string            `db:"name"`
	NodeGroupID     string            `db:"node_group_id"`
	Description     string            `db:"description"`
	Labels          map[string]string `db:"labels"`
	AppliedRevision int64             `db:"applied_revision"`
	Status          string            `db:"status"`
	StatusMessage   string            `db:"status_message"`
	LastSeenAt      *time.Time        `db:"last_seen_at"`
	AgentVersion    string            `db:"agent_version"`
	Errors          []NodeError       `db:"errors"`
	// AdminState is "", NodeCordoned or NodeDraining (set by the operator).
	AdminState           string     `db:"admin_state"`
	ApplyFailingSince    *time.Time `db:"apply_failing_since"`
	ApplyFailingRevision int64      `db:"apply_failing_revision"`
	// VIPs are the addresses the node reports holding.
	VIPs      []string  `db:"vips"`
	Version   int64     `db:"version"`
	Revision  int64     `db:"revision"`
	CreatedAt time.Time `db:"created_at"`
	UpdatedAt time.Time `db:"updated_at"`

	// PeerAddress is where the node's HAProxy shares stick tables with the
	// group's other nodes (ip:port; "" for none), as its agent registered.
	PeerAddress string `db:"peer_address"`
}

// NodeError is a node-level failure a node reports (disk, HAProxy start,
// bind, ...); it stays until the node reports it resolved.
type NodeError struct {
	Kind    string    `json:"kind"`
	Message string    `json:"message"`
	Since   time.Time `json:"since"`
}

// LoadBalancer is a VIP on a node group.
type LoadBalancer struct {
	Meta
	Status
	NodeGroupID        string     `db:"node_group_id"`
	VIPAddress         netip.Addr `db:"vip_address"`
	Enabled            bool       `db:"enabled"`
	DeletionProtection bool       `db:"deletion_protection"`
}

// Timeouts of a listener, in milliseconds.
type Timeouts struct {
	ClientMS        int `json:"client_ms"`
	ConnectMS       int `json:"connect_ms"`
	ServerMS        int `json:"server_ms"`
	HTTPRequestMS   int `json:"http_request_ms"`
	HTTPKeepAliveMS int `json:"http_keep_alive_ms"`
	TunnelMS        int `json:"tunnel_ms"`
}

// DefaultTimeouts apply to fields a listener leaves out.
var DefaultTimeouts = Timeouts{ClientMS: openapi.ListenerTimeoutsClientMsDefault, ConnectMS: openapi.ListenerTimeoutsConnectMsDefault,
	ServerMS: openapi.ListenerTimeoutsServerMsDefault, HTTPRequestMS: openapi.ListenerTimeoutsHttpRequestMsDefault,
	HTTPKeepAliveMS: openapi.ListenerTimeoutsHttpKeepAliveMsDefault, TunnelMS: openapi.ListenerTimeoutsTunnelMsDefault}

// InsertHeaders says which request headers a listener adds.
type InsertHeaders struct {
	XForwardedFor   bool `json:"x_forwarded_for"`
	XForwardedProto bool `json:"x_forwarded_proto"`
	XForwardedPort  bool `json:"x_forwarded_port"`
	XRequestID      bool `json:"x_request_id"`
}

// RateLimit is a per-client-IP limit.
type RateLimit struct {
	Type      string `json:"type"`
	PerSecond int    `json:"per_second"`
}

// HSTS configures Strict-Transport-Security.
type HSTS struct {
	MaxAgeSeconds     int  `json:"max_age_seconds"`
	IncludeSubdomains bool `json:"include_subdomains"`
	Preload           bool `json:"preload"`
}

// ListenerSpec is the part of a listener kept in its spec column.
type ListenerSpec struct {
	CertificateIDs      []string      `json:"certificate_ids"`
	ConnectionLimit     int           `json:"connection_limit"`
	RateLimit           *RateLimit    `json:"rate_limit,omitempty"`
	AllowedCIDRs        []string      `json:"allowed_cidrs"`
	DeniedCIDRs         []string      `json:"denied_cidrs"`
	Timeouts            Timeouts      `json:"timeouts"`
	InsertHeaders       InsertHeaders `json:"insert_headers"`
	RedirectHTTPToHTTPS bool          `json:"redirect_http_to_https"`
	HSTS                *HSTS         `json:"hsts,omitempty"`
	Compression         bool          `json:"compression"`
	AccessLog           AccessLog     `json:"access_log"`
}

// AccessLog is a listener's access log setting.
type AccessLog struct {
	Enabled bool `json:"enabled"`
}

// Listener is a port on a load balancer's VIP.
type Listener struct {
	Meta
	Status
	LoadBalancerID string       `db:"load_balancer_id"`
	Protocol       string       `db:"protocol"`
	Port           int          `db:"port"`
	DefaultPoolID  *string      `db:"default_pool_id"`
	Spec           ListenerSpec `db:"spec"`
}

// SessionPersistence keeps a client on one member.
type SessionPersistence struct {
	Type             string `json:"type"`
	CookieName       string `json:"cookie_name,omitempty"`
	CookieTTLSeconds int    `json:"cookie_ttl_seconds,omitempty"`
}

// HealthMonitor checks members.
type HealthMonitor struct {
	Type          string `json:"type"`
	IntervalMS    int    `json:"interval_ms"`
	TimeoutMS     int    `json:"timeout_ms"`
	Rise          int    `json:"rise"`
	Fall          int    `json:"fall"`
	HTTPMethod    string `json:"http_method,omitempty"`
	Path          string `json:"path,omitempty"`
	Host          string `json:"host,omitempty"`
	ExpectedCodes string `json:"expected_codes,omitempty"`
}

// PoolSpec is the part of a pool kept in its spec column.
type PoolSpec struct {
	Algorithm          string             `json:"algorithm"`
	HashKey            string             `json:"hash_key"`
	SessionPersistence SessionPersistence `json:"session_persistence"`
	HealthMonitor      *HealthMonitor     `json:"health_monitor,omitempty"`
	Retries            int                `json:"retries"`
	Redispatch         bool               `json:"redispatch"`
	ProxyProtocol      string             `json:"proxy_protocol"`
	DrainTimeoutMS     int                `json:"drain_timeout_ms"`
	TLSToMembers       bool               `json:"tls_to_members"`
}

// Pool is a set of members behind a load balancer.
type Pool struct {
	Meta
	Status
	LoadBalancerID string   `db:"load_balancer_id"`
	Protocol       string   `db:"protocol"`
	Spec           PoolSpec `db:"spec"`
}

// MemberSpec is the part of a member kept in its spec column.
type MemberSpec struct {
	Weight         int  `json:"weight"`
	Backup         bool `json:"backup"`
	Enabled        bool `json:"enabled"`
	MaxConnections int  `json:"max_connections"`
}

// Member is one backend server of a pool.
type Member struct {
	Meta
	Status
	LoadBalancerID string     `db:"load_balancer_id"`
	PoolID         string     `db:"pool_id"`
	Address        string     `db:"address"`
	Port           int        `db:"port"`
	Spec           MemberSpec `db:"spec"`
}

// RuleCondition is one test a request must pass for a rule to apply.
type RuleCondition struct {
	Field  string   `json:"field"`
	Match  string   `json:"match"`
	Key    string   `json:"key,omitempty"`
	Values []string `json:"values"`
	Invert bool     `json:"invert"`
}

// WeightedPool is one target of a forward action.
type WeightedPool struct {
	PoolID string `json:"pool_id"`
	Weight int    `json:"weight"`
}

// RuleAction says what a matching rule does.
type RuleAction struct {
	Type          string         `json:"type"`
	Forward       *Forward       `json:"forward,omitempty"`
	Redirect      *Redirect      `json:"redirect,omitempty"`
	FixedResponse *FixedResponse `json:"fixed_response,omitempty"`
}

// Forward sends to one or more pools.
type Forward struct {
	Pools []WeightedPool `json:"pools"`
}

// Redirect answers with a redirect.
type Redirect struct {
	URL    string `json:"url,omitempty"`
	Prefix string `json:"prefix,omitempty"`
	Scheme string `json:"scheme,omitempty"`
	Host   string `json:"host,omitempty"`
	Port   int    `json:"port,omitempty"`
	Code   int    `json:"code"`
}

// FixedResponse answers directly.
type FixedResponse struct {
	StatusCode  int    `json:"status_code"`
	ContentType string `json:"content_type"`
	Body        string `json:"body"`
}

// RoutingRuleSpec is the part of a rule kept in its spec column.
type RoutingRuleSpec struct {
	Conditions []RuleCondition `json:"conditions"`
	Action     RuleAction      `json:"action"`
}

// RoutingRule routes matching requests of an http/https listener.
type RoutingRule struct {
	Meta
	Status
	LoadBalancerID string          `db:"load_balancer_id"`
	ListenerID     string          `db:"listener_id"`
	Priority       int             `db:"priority"`
	Spec           RoutingRuleSpec `db:"spec"`
}

// PoolIDs lists the pools the rule forwards to.
func (r *RoutingRule) PoolIDs() []string {
	if r.Spec.Action.Forward == nil {
		return nil
	}
	ids := make([]string, 0, len(r.Spec.Action.Forward.Pools))
	for _, p := range r.Spec.Action.Forward.Pools {
		ids = append(ids, p.PoolID)
	}
	return ids
}

// CertificateInfo is what the API learned parsing a certificate.
type CertificateInfo struct {
	FingerprintSHA256 string    `json:"fingerprint_sha256"`
	Subject           string    `json:"subject"`
	Issuer            string    `json:"issuer"`
	DNSNames          []string  `json:"dns_names"`
	NotBefore         time.Time `json:"not_before"`
	NotAfter          time.Time `json:"not_after"`
	KeyType           string    `json:"key_type"`
}

// Certificate is a tenant's TLS certificate chain and (encrypted) key.
type Certificate struct {
	Meta
	CertificatePEM string          `db:"certificate_pem"`
	PrivateKeyEnc  []byte          `db:"private_key_enc"`
	Info           CertificateInfo `db:"info"`
}

// GetVersion returns the object's version (its ETag).
func (m *Meta) GetVersion() int64      { return m.Version }
func (t *Tenant) GetVersion() int64    { return t.Version }
func (t *Token) GetVersion() int64     { return 1 }
func (g *NodeGroup) GetVersion() int64 { return g.Version }
func (n *Node) GetVersion() int64      { return n.Version }
