package api

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/fulcrumlb/fulcrum/api/auth"
	"github.com/fulcrumlb/fulcrum/api/problem"
	"github.com/fulcrumlb/fulcrum/api/store"
	"github.com/fulcrumlb/fulcrum/api/validate"
	"github.com/fulcrumlb/fulcrum/openapi"
)

// ---------------------------------------------------------------- tenants

func tenantToAPI(t *store.Tenant) openapi.Tenant {
	q := t.Quotas
	return openapi.Tenant{
		Id: t.ID, Name: t.Name, Description: t.Description, Labels: labelsOrEmpty(t.Labels),
		Quotas: openapi.Quotas{LoadBalancers: &q.LoadBalancers, Listeners: &q.Listeners, Pools: &q.Pools,
			Members: &q.Members, RoutingRules: &q.RoutingRules, Certificates: &q.Certificates},
		CreatedAt: t.CreatedAt, UpdatedAt: t.UpdatedAt, Version: t.Version,
	}
}

// quotasFrom fills the quotas a request leaves out with defaults.
func quotasFrom(in *openapi.Quotas, base store.Quotas) store.Quotas {
	if in == nil {
		return base
	}
	q := base
	set := func(dst *int, v *int) {
		if v != nil {
			*dst = *v
		}
	}
	set(&q.LoadBalancers, in.LoadBalancers)
	set(&q.Listeners, in.Listeners)
	set(&q.Pools, in.Pools)
	set(&q.Members, in.Members)
	set(&q.RoutingRules, in.RoutingRules)
	set(&q.Certificates, in.Certificates)
	return q
}

// CreateTenantTx validates and inserts a tenant; shared with `fulcrum admin`.
func CreateTenantTx(ctx context.Context, tx *store.Tx, t *store.Tenant) (*store.Tenant, error) {
	if err := validateTenant(t); err != nil {
		return nil, err
	}
	rev, err := tx.Revision(ctx)
	if err != nil {
		return nil, err
	}
	cols := append(tenantColumns(t), store.Column{Name: "id", Value: store.NewID(store.KindTenant.Prefix)}, store.Column{Name: "revision", Value: rev})
	return store.Insert[store.Tenant](ctx, tx, store.KindTenant, cols)
}

func validateTenant(t *store.Tenant) error {
	var e validate.Errors
	if t.Name == "" {
		e.Add("name", "is required")
	}
	validate.Name(&e, "name", t.Name)
	validate.Description(&e, "description", t.Description)
	validate.Labels(&e, "labels", t.Labels)
	q := t.Quotas
	for _, f := range []struct {
		field    string
		v        int
		min, max int
	}{{"load_balancers", q.LoadBalancers, openapi.QuotasLoadBalancersMin, openapi.QuotasLoadBalancersMax},
		{"listeners", q.Listeners, openapi.QuotasListenersMin, openapi.QuotasListenersMax},
		{"pools", q.Pools, openapi.QuotasPoolsMin, openapi.QuotasPoolsMax},
		{"members", q.Members, openapi.QuotasMembersMin, openapi.QuotasMembersMax},
		{"routing_rules", q.RoutingRules, openapi.QuotasRoutingRulesMin, openapi.QuotasRoutingRulesMax},
		{"certificates", q.Certificates, openapi.QuotasCertificatesMin, openapi.QuotasCertificatesMax}} {
		validate.IntRange(&e, "quotas."+f.field, f.v, f.min, f.max)
	}
	return e.Err()
}

func tenantColumns(t *store.Tenant) []store.Column {
	return []store.Column{{Name: "name", Value: t.Name}, {Name: "description", Value: t.Description},
		{Name: "labels", Value: labelsOrEmpty(t.Labels)}, {Name: "quotas", Value: t.Quotas}}
}

func (h *handlers) ListTenants(ctx context.Context, r openapi.ListTenantsRequestObject) (openapi.ListTenantsResponseObject, error) {
	p, err := principal(ctx)
	if err != nil {
		return nil, err
	}
	lq := listQuery(r.Params.Limit, r.Params.PageToken, r.Params.Name, r.Params.Label)
	switch p.Kind {
	case store.TokenAdmin:
	case store.TokenTenant:
		lq.Equal = append(lq.Equal, store.Column{Name: "id", Value: p.TenantID})
	default:
		return nil, problem.Forbidden("This endpoint needs an admin or tenant token.")
	}
	items, next, err := list[store.Tenant](ctx, h, store.KindTenant, "", lq)
	if err != nil {
		return nil, err
	}
	return openapi.ListTenants200JSONResponse{Body: openapi.TenantList{Items: mapSlice(items, tenantToAPI), NextPageToken: next}}, nil
}

func (h *handlers) CreateTenant(ctx context.Context, r openapi.CreateTenantRequestObject) (openapi.CreateTenantResponseObject, error) {
	if _, err := requireAdmin(ctx); err != nil {
		return nil, err
	}
	b := r.Body
	t := &store.Tenant{Name: b.Name, Description: deref(b.Description), Labels: deref(b.Labels), Quotas: quotasFrom(b.Quotas, store.DefaultQuotas)}
	if err := validateTenant(t); err != nil {
		return nil, err
	}
	out, _, err := create(ctx, h, "POST /v1/tenants", r.Params.IdempotencyKey, r.Params.DryRun, b, func(tx *store.Tx) (openapi.Tenant, error) {
		row, err := CreateTenantTx(ctx, tx, t)
		if err != nil {
			return openapi.Tenant{}, err
		}
		return tenantToAPI(row), nil
	})
	if err != nil {
		return nil, err
	}
	if isTrue(r.Params.DryRun) {
		return openapi.CreateTenant200JSONResponse{Body: out}, nil
	}
	return openapi.CreateTenant201JSONResponse{Body: out, Headers: openapi.CreateTenant201ResponseHeaders{ETag: etag(out.Version)}}, nil
}

// tenantVisible: admins see every tenant, a tenant only itself.
func tenantVisible(ctx context.Context, id string) error {
	p, err := principal(ctx)
	if err != nil {
		return err
	}
	if p.Kind == store.TokenAdmin || (p.Kind == store.TokenTenant && p.TenantID == id) {
		return nil
	}
	return problem.NotFound("tenant", id)
}

func (h *handlers) GetTenant(ctx context.Context, r openapi.GetTenantRequestObject) (openapi.GetTenantResponseObject, error) {
	if err := tenantVisible(ctx, r.Id); err != nil {
		return nil, err
	}
	t, err := get[store.Tenant](ctx, h, store.KindTenant, "", r.Id)
	if err != nil {
		return nil, err
	}
	return openapi.GetTenant200JSONResponse{Body: tenantToAPI(&t), Headers: openapi.GetTenant200ResponseHeaders{ETag: etag(t.Version)}}, nil
}

func (h *handlers) UpdateTenant(ctx context.Context, r openapi.UpdateTenantRequestObject) (openapi.UpdateTenantResponseObject, error) {
	if _, err := requireAdmin(ctx); err != nil {
		return nil, err
	}
	b := r.Body
	out, err := update(ctx, h, store.KindTenant, "", r.Id, r.Params.IfMatch, r.Params.DryRun, func(tx *store.Tx, t *store.Tenant) (openapi.Tenant, error) {
		if b.Name != nil {
			t.Name = *b.Name
		}
		if b.Description != nil {
			t.Description = *b.Description
		}
		if b.Labels != nil {
			t.Labels = *b.Labels
		}
		t.Quotas = quotasFrom(b.Quotas, t.Quotas)
		if err := validateTenant(t); err != nil {
			return openapi.Tenant{}, err
		}
		rev, err := tx.Revision(ctx)
		if err != nil {
			return openapi.Tenant{}, err
		}
		row, err := store.Update[store.Tenant](ctx, tx, store.KindTenant, t.ID, append(tenantColumns(t), store.Column{Name: "revision", Value: rev}))
		if err != nil {
			return openapi.Tenant{}, err
		}
		return tenantToAPI(row), nil
	})
	if err != nil {
		return nil, err
	}
	return openapi.UpdateTenant200JSONResponse{Body: out, Headers: openapi.UpdateTenant200ResponseHeaders{ETag: etag(out.Version)}}, nil
}

func (h *handlers) DeleteTenant(ctx context.Context, r openapi.DeleteTenantRequestObject) (openapi.DeleteTenantResponseObject, error) {
	if _, err := requireAdmin(ctx); err != nil {
		return nil, err
	}
	if err := remove[store.Tenant](ctx, h, store.KindTenant, "", r.Id, r.Params.IfMatch, false, nil); err != nil {
		return nil, err
	}
	return openapi.DeleteTenant204Response{}, nil
}

// ---------------------------------------------------------------- tokens

func tokenToAPI(t *store.Token) openapi.Token {
	return openapi.Token{Id: t.ID, Kind: openapi.TokenKind(t.Kind), TenantId: t.TenantID, NodeGroupId: t.NodeGroupID, NodeName: t.NodeName, NodeId: t.NodeID,
		Name: t.Name, Description: t.Description, CreatedAt: t.CreatedAt, ExpiresAt: t.ExpiresAt, LastUsedAt: t.LastUsedAt}
}

// tokenScope limits which tokens a caller sees: admins all, tenants their own.
func tokenScope(ctx context.Context) (auth.Principal, error) {
	p, err := principal(ctx)
	if err != nil {
		return p, err
	}
	if p.Kind != store.TokenAdmin && p.Kind != store.TokenTenant {
		return p, problem.Forbidden("This endpoint needs an admin or tenant token.")
	}
	return p, nil
}

func (h *handlers) ListTokens(ctx context.Context, r openapi.ListTokensRequestObject) (openapi.ListTokensResponseObject, error) {
	p, err := tokenScope(ctx)
	if err != nil {
		return nil, err
	}
	lq := listQuery(r.Params.Limit, r.Params.PageToken, r.Params.Name, nil, store.Column{Name: "tenant_id", Value: r.Params.TenantId})
	if p.Kind == store.TokenTenant {
		lq.Equal = append(lq.Equal, store.Column{Name: "tenant_id", Value: p.TenantID})
	}
	items, next, err := list[store.Token](ctx, h, store.KindToken, "", lq)
	if err != nil {
		return nil, err
	}
	return openapi.ListTokens200JSONResponse{Body: openapi.TokenList{Items: mapSlice(items, tokenToAPI), NextPageToken: next}}, nil
}

// IssueToken creates a token row and returns it with its bearer string. It is
// shared by the API and `fulcrum admin token create`.
func IssueToken(ctx context.Context, tx *store.Tx, kind, tenantID, nodeGroupID, name, description string, expiresAt *time.Time) (*store.Token, string, error) {
	return issueToken(ctx, tx, kind, tenantID, nodeGroupID, "", "", name, description, expiresAt)
}

// IssueNodeToken creates a node token bound to the node named nodeName (and
// to a node group when nodeGroupID is set): it registers, polls and reports
// for that node only.
func IssueNodeToken(ctx context.Context, tx *store.Tx, nodeGroupID, nodeName, name, description string, expiresAt *time.Time) (*store.Token, string, error) {
	var e validate.Errors
	validate.Hostname(&e, "node_name", nodeName, false)
	if err := e.Err(); err != nil {
		return nil, "", err
	}
	return issueToken(ctx, tx, store.TokenNode, "", nodeGroupID, nodeName, "", name, description, expiresAt)
}

// issueToken issues a token, bound to a node by name (nodeName) or to an
// existing node (nodeID) when given.
func issueToken(ctx context.Context, tx *store.Tx, kind, tenantID, nodeGroupID, nodeName, nodeID, name, description string, expiresAt *time.Time) (*store.Token, string, error) {
	var e validate.Errors
	if kind != store.TokenNode && nodeID != "" {
		e.Add("node_id", "is only for node tokens")
	}
	validate.Enum(&e, "kind", kind, store.TokenAdmin, store.TokenTenant, store.TokenNode)
	validate.Name(&e, "name", name)
	validate.Description(&e, "description", description)
	if kind == store.TokenTenant && tenantID == "" {
		e.Add("tenant_id", "is required for tenant tokens")
	}
	if kind != store.TokenTenant && tenantID != "" {
		e.Add("tenant_id", "is only for tenant tokens")
	}
	if kind != store.TokenNode && nodeGroupID != "" {
		e.Add("node_group_id", "is only for node tokens")
	}
	if expiresAt != nil && !expiresAt.After(time.Now()) {
		e.Add("expires_at", "must be in the future")
	}
	if err := e.Err(); err != nil {
		return nil, "", err
	}
	if tenantID != "" {
		if _, err := store.Get[store.Tenant](ctx, tx, store.KindTenant, "", tenantID, false); err != nil {
			return nil, "", asInvalidField(err, "tenant_id")
		}
	}
	if nodeID != "" {
		var groupID string
		if err := tx.QueryRow(ctx, "SELECT id, node_group_id FROM nodes WHERE id = $1 OR name = $1", nodeID).Scan(&nodeID, &groupID); err != nil {
			return nil, "", problem.InvalidField("node_id", "does not exist")
		}
		if nodeGroupID != "" && nodeGroupID != groupID {
			return nil, "", problem.InvalidField("node_group_id", "is not the node's group")
		}
		nodeGroupID = groupID
	}
	if nodeGroupID != "" {
		if _, err := store.Get[store.NodeGroup](ctx, tx, store.KindNodeGroup, "", nodeGroupID, false); err != nil {
			return nil, "", asInvalidField(err, "node_group_id")
		}
	}
	secret, hash, err := auth.NewSecret()
	if err != nil {
		return nil, "", err
	}
	id := store.NewID(store.KindToken.Prefix)
	cols := []store.Column{{Name: "id", Value: id}, {Name: "kind", Value: kind}, {Name: "name", Value: name}, {Name: "description", Value: description},
		{Name: "secret_hash", Value: hash}, {Name: "expires_at", Value: expiresAt}}
	if tenantID != "" {
		cols = append(cols, store.Column{Name: "tenant_id", Value: tenantID})
	}
	if nodeGroupID != "" {
		cols = append(cols, store.Column{Name: "node_group_id", Value: nodeGroupID})
	}
	if nodeName != "" {
		cols = append(cols, store.Column{Name: "node_name", Value: nodeName})
	}
	if nodeID != "" {
		cols = append(cols, store.Column{Name: "node_id", Value: nodeID})
	}
	t, err := store.Insert[store.Token](ctx, tx, store.KindToken, cols)
	if err != nil {
		return nil, "", err
	}
	return t, auth.Bearer(id, secret), nil
}

// asInvalidField turns the 404 of a referenced object into a 422 naming
// field; other errors (an unavailable database) pass through.
func asInvalidField(err error, field string) error {
	var p *problem.Problem
	if errors.As(err, &p) && p.Status == http.StatusNotFound {
		return problem.InvalidField(field, "does not exist")
	}
	return err
}

func (h *handlers) CreateToken(ctx context.Context, r openapi.CreateTokenRequestObject) (openapi.CreateTokenResponseObject, error) {
	p, err := tokenScope(ctx)
	if err != nil {
		return nil, err
	}
	b := r.Body
	tenantID := deref(b.TenantId)
	if p.Kind == store.TokenTenant {
		if b.Kind != store.TokenTenant {
			return nil, problem.Forbidden("A tenant token can only issue tenant tokens.")
		}
		if tenantID != "" && tenantID != p.TenantID {
			return nil, problem.InvalidField("tenant_id", "does not exist")
		}
		tenantID = p.TenantID
	}
	// The secret exists only in this response: the Idempotency-Key record
	// keeps the token's metadata, so a replay answers with an empty secret.
	var bearer string
	meta, _, err := create(ctx, h, "POST /v1/tokens", r.Params.IdempotencyKey, nil, b, func(tx *store.Tx) (openapi.Token, error) {
		var t *store.Token
		var secret string
		var err error
		if nodeName := deref(b.NodeName); nodeName != "" || b.NodeName != nil {
			if b.Kind != store.TokenNode {
				return openapi.Token{}, problem.InvalidField("node_name", "is only for node tokens")
			}
			t, secret, err = IssueNodeToken(ctx, tx, deref(b.NodeGroupId), nodeName, deref(b.Name), deref(b.Description), b.ExpiresAt)
		} else {
			t, secret, err = issueToken(ctx, tx, string(b.Kind), tenantID, deref(b.NodeGroupId), "", deref(b.NodeId), deref(b.Name), deref(b.Description), b.ExpiresAt)
		}
		if err != nil {
			return openapi.Token{}, err
		}
		bearer = secret
		return tokenToAPI(t), nil
	})
	if err != nil {
		return nil, err
	}
	out := openapi.TokenWithSecret{Id: meta.Id, Kind: meta.Kind, TenantId: meta.TenantId, NodeGroupId: meta.NodeGroupId, NodeName: meta.NodeName, NodeId: meta.NodeId, Name: meta.Name,
		Description: meta.Description, CreatedAt: meta.CreatedAt, ExpiresAt: meta.ExpiresAt, Secret: bearer}
	return openapi.CreateToken201JSONResponse{Body: out}, nil
}

// visibleToken loads a token the caller may see.
func (h *handlers) visibleToken(ctx context.Context, tx *store.Tx, id string) (*store.Token, error) {
	p, err := tokenScope(ctx)
	if err != nil {
		return nil, err
	}
	t, err := store.Get[store.Token](ctx, tx, store.KindToken, "", id, false)
	if err != nil {
		return nil, err
	}
	if p.Kind == store.TokenTenant && (t.TenantID == nil || *t.TenantID != p.TenantID) {
		return nil, problem.NotFound("token", id)
	}
	return t, nil
}

func (h *handlers) GetToken(ctx context.Context, r openapi.GetTokenRequestObject) (openapi.GetTokenResponseObject, error) {
	var out openapi.Token
	err := h.st.Read(ctx, func(tx *store.Tx) error {
		t, err := h.visibleToken(ctx, tx, r.Id)
		if err != nil {
			return err
		}
		out = tokenToAPI(t)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return openapi.GetToken200JSONResponse{Body: out}, nil
}

func (h *handlers) RevokeToken(ctx context.Context, r openapi.RevokeTokenRequestObject) (openapi.RevokeTokenResponseObject, error) {
	err := h.st.Write(ctx, false, func(tx *store.Tx) error {
		if _, err := h.visibleToken(ctx, tx, r.Id); err != nil {
			return err
		}
		return store.HardDelete(ctx, tx, store.KindToken, r.Id)
	})
	if err != nil {
		return nil, err
	}
	return openapi.RevokeToken204Response{}, nil
}

// ---------------------------------------------------------------- node groups

func nodeGroupToAPI(g *store.NodeGroup) openapi.NodeGroup {
	reserved := append([]int{}, g.ReservedPorts...)
	effective := store.EffectiveReservedPorts(g.ReservedPorts)
	hb, down, cleanup, grace := g.HeartbeatIntervalMs, g.DownTimeoutMs, g.DownNodeCleanupAfterMs, g.ApplyGraceMs
	return openapi.NodeGroup{Id: g.ID, Name: g.Name, Description: g.Description, Labels: labelsOrEmpty(g.Labels),
		VipRange: g.VIPRange.String(), ReservedPorts: &reserved, EffectiveReservedPorts: &effective,
		HeartbeatIntervalMs: &hb, DownTimeoutMs: &down, DownNodeCleanupAfterMs: &cleanup, ApplyGraceMs: &grace,
		CreatedAt: g.CreatedAt, UpdatedAt: g.UpdatedAt, Version: g.Version,
		VrrpInterface: &g.VRRPInterface, VrrpRouterIdMin: &g.VRRPRouterIDMin, VrrpRouterIdMax: &g.VRRPRouterIDMax, VrrpAdvertIntervalMs: &g.VRRPAdvertIntervalMS}
}

// vrrpSettings are a node group's VRRP fields as a create or update sends them.
type vrrpSettings struct {
	iface          *string
	idMin, idMax   *int
	advertInterval *int
}

// applyVRRP validates the VRRP fields given and sets them on g; it reports
// whether any was given.
func applyVRRP(e *validate.Errors, g *store.NodeGroup, v vrrpSettings) bool {
	if g.VRRPRouterIDMin == 0 {
		g.VRRPRouterIDMin, g.VRRPRouterIDMax, g.VRRPAdvertIntervalMS = openapi.NodeGroupVrrpRouterIdMinDefault, openapi.NodeGroupVrrpRouterIdMaxDefault, openapi.NodeGroupVrrpAdvertIntervalMsDefault
	}
	given := v.iface != nil || v.idMin != nil || v.idMax != nil || v.advertInterval != nil
	if v.iface != nil {
		g.VRRPInterface = *v.iface
	}
	if v.idMin != nil {
		g.VRRPRouterIDMin = *v.idMin
	}
	if v.idMax != nil {
		g.VRRPRouterIDMax = *v.idMax
	}
	if v.advertInterval != nil {
		g.VRRPAdvertIntervalMS = *v.advertInterval
	}
	if len(g.VRRPInterface) > openapi.NodeGroupVrrpInterfaceMaxLength || strings.ContainsFunc(g.VRRPInterface, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("_.:@-", r))
	}) {
		e.Add("vrrp_interface", "must be an interface name: at most 15 letters, digits or _.:@-")
	}
	if g.VRRPRouterIDMin < openapi.NodeGroupVrrpRouterIdMinMin || g.VRRPRouterIDMin > openapi.NodeGroupVrrpRouterIdMinMax {
		e.Add("vrrp_router_id_min", "must be from %d to %d", openapi.NodeGroupVrrpRouterIdMinMin, openapi.NodeGroupVrrpRouterIdMinMax)
	}
	if g.VRRPRouterIDMax < openapi.NodeGroupVrrpRouterIdMaxMin || g.VRRPRouterIDMax > openapi.NodeGroupVrrpRouterIdMaxMax {
		e.Add("vrrp_router_id_max", "must be from %d to %d", openapi.NodeGroupVrrpRouterIdMaxMin, openapi.NodeGroupVrrpRouterIdMaxMax)
	} else if g.VRRPRouterIDMax < g.VRRPRouterIDMin {
		e.Add("vrrp_router_id_max", "must not be below vrrp_router_id_min")
	}
	if g.VRRPAdvertIntervalMS < openapi.NodeGroupVrrpAdvertIntervalMsMin || g.VRRPAdvertIntervalMS > openapi.NodeGroupVrrpAdvertIntervalMsMax ||
		g.VRRPAdvertIntervalMS%openapi.NodeGroupVrrpAdvertIntervalMsMultipleOf != 0 {
		e.Add("vrrp_advert_interval_ms", "must be a multiple of %d from %d to %d", openapi.NodeGroupVrrpAdvertIntervalMsMultipleOf,
			openapi.NodeGroupVrrpAdvertIntervalMsMin, openapi.NodeGroupVrrpAdvertIntervalMsMax)
	}
	return given
}

func vrrpColumns(g *store.NodeGroup) []store.Column {
	return []store.Column{{Name: "vrrp_interface", Value: g.VRRPInterface}, {Name: "vrrp_router_id_min", Value: g.VRRPRouterIDMin},
		{Name: "vrrp_router_id_max", Value: g.VRRPRouterIDMax}, {Name: "vrrp_advert_interval_ms", Value: g.VRRPAdvertIntervalMS}}

}

// validateReservedPorts checks the operator's list (ports, each once) and
// sorts it.
func validateReservedPorts(e *validate.Errors, ports []int) []int {
	if len(ports) > openapi.NodeGroupReservedPortsMaxItems {
		e.Add("reserved_ports", "must list at most %d ports", openapi.NodeGroupReservedPortsMaxItems)
		return ports
	}
	seen := map[int]bool{}
	for i, p := range ports {
		f := validate.Index("reserved_ports", i)
		if !validate.Port(e, f, p) {
			continue
		}
		if seen[p] {
			e.Add(f, "lists port %d twice", p)
		}
		seen[p] = true
	}
	out := append([]int{}, ports...)
	slices.Sort(out)
	return out
}

// nodeTiming is the node lifecycle settings of a node group request.
type nodeTiming struct {
	HeartbeatIntervalMs, DownTimeoutMs, ApplyGraceMs *int
	DownNodeCleanupAfterMs                           *int64
}

// apply sets the fields the request names on g.
func (t nodeTiming) apply(g *store.NodeGroup) {
	if t.HeartbeatIntervalMs != nil {
		g.HeartbeatIntervalMs = *t.HeartbeatIntervalMs
	}
	if t.DownTimeoutMs != nil {
		g.DownTimeoutMs = *t.DownTimeoutMs
	}
	if t.ApplyGraceMs != nil {
		g.ApplyGraceMs = *t.ApplyGraceMs
	}
	if t.DownNodeCleanupAfterMs != nil {
		g.DownNodeCleanupAfterMs = *t.DownNodeCleanupAfterMs
	}
}

func validateNodeTiming(e *validate.Errors, g *store.NodeGroup) {
	validate.IntRange(e, "heartbeat_interval_ms", g.HeartbeatIntervalMs, openapi.NodeGroupHeartbeatIntervalMsMin, openapi.NodeGroupHeartbeatIntervalMsMax)
	validate.IntRange(e, "down_timeout_ms", g.DownTimeoutMs, openapi.NodeGroupDownTimeoutMsMin, openapi.NodeGroupDownTimeoutMsMax)
	validate.IntRange(e, "apply_grace_ms", g.ApplyGraceMs, openapi.NodeGroupApplyGraceMsMin, openapi.NodeGroupApplyGraceMsMax)
	if g.DownNodeCleanupAfterMs < openapi.NodeGroupDownNodeCleanupAfterMsMin || g.DownNodeCleanupAfterMs > openapi.NodeGroupDownNodeCleanupAfterMsMax {
		e.Add("down_node_cleanup_after_ms", "must be from %d to %d", openapi.NodeGroupDownNodeCleanupAfterMsMin, openapi.NodeGroupDownNodeCleanupAfterMsMax)
	}
	if g.DownTimeoutMs < 2*g.HeartbeatIntervalMs {
		e.Add("down_timeout_ms", "must be at least twice heartbeat_interval_ms (%d)", g.HeartbeatIntervalMs)
	}
	if int64(g.DownTimeoutMs) > g.DownNodeCleanupAfterMs {
		e.Add("down_node_cleanup_after_ms", "must be at least down_timeout_ms (%d)", g.DownTimeoutMs)
	}
}

func validateNodeGroup(e *validate.Errors, g *store.NodeGroup, vipRange string) {
	g.ReservedPorts = validateReservedPorts(e, g.ReservedPorts)
	validateNodeTiming(e, g)
	if g.Name == "" {
		e.Add("name", "is required")
	}
	validate.Name(e, "name", g.Name)
	validate.Description(e, "description", g.Description)
	validate.Labels(e, "labels", g.Labels)
	if p, ok := validate.CIDR(e, "vip_range", vipRange); ok {
		g.VIPRange = p
	}
}

func nodeGroupColumns(g *store.NodeGroup, rev int64) []store.Column {
	return []store.Column{{Name: "name", Value: g.Name}, {Name: "description", Value: g.Description},
		{Name: "labels", Value: labelsOrEmpty(g.Labels)}, {Name: "vip_range", Value: g.VIPRange}, {Name: "reserved_ports", Value: g.ReservedPorts},
		{Name: "heartbeat_interval_ms", Value: g.HeartbeatIntervalMs}, {Name: "down_timeout_ms", Value: g.DownTimeoutMs},
		{Name: "down_node_cleanup_after_ms", Value: g.DownNodeCleanupAfterMs}, {Name: "apply_grace_ms", Value: g.ApplyGraceMs},
		{Name: "revision", Value: rev}}
}

// nodeGroupReader admits admins and tenants (who choose a group for their LBs).
func nodeGroupReader(ctx context.Context) error {
	p, err := principal(ctx)
	if err != nil {
		return err
	}
	if p.Kind == store.TokenNode {
		return problem.Forbidden("This endpoint needs an admin or tenant token.")
	}
	return nil
}

func (h *handlers) ListNodeGroups(ctx context.Context, r openapi.ListNodeGroupsRequestObject) (openapi.ListNodeGroupsResponseObject, error) {
	if err := nodeGroupReader(ctx); err != nil {
		return nil, err
	}
	items, next, err := list[store.NodeGroup](ctx, h, store.KindNodeGroup, "", listQuery(r.Params.Limit, r.Params.PageToken, r.Params.Name, r.Params.Label))
	if err != nil {
		return nil, err
	}
	return openapi.ListNodeGroups200JSONResponse{Body: openapi.NodeGroupList{Items: mapSlice(items, nodeGroupToAPI), NextPageToken: next}}, nil
}

// CreateNodeGroupTx validates and inserts a node group; shared with `fulcrum admin`.
func CreateNodeGroupTx(ctx context.Context, tx *store.Tx, name, description string, labels map[string]string, vipRange string) (*store.NodeGroup, error) {
	return createNodeGroupTx(ctx, tx, name, description, labels, vipRange, nil, nodeTiming{})
}

// createNodeGroupTx is CreateNodeGroupTx with the operator's reserved ports
// and node lifecycle timing (defaults where not given).
func createNodeGroupTx(ctx context.Context, tx *store.Tx, name, description string, labels map[string]string, vipRange string, reservedPorts []int, timing nodeTiming) (*store.NodeGroup, error) {
	g := &store.NodeGroup{Name: name, Description: description, Labels: labels, ReservedPorts: reservedPorts,
		HeartbeatIntervalMs: store.DefaultHeartbeatIntervalMs, DownTimeoutMs: store.DefaultDownTimeoutMs,
		DownNodeCleanupAfterMs: store.DefaultDownNodeCleanupAfterMs, ApplyGraceMs: store.DefaultApplyGraceMs}
	timing.apply(g)
	var e validate.Errors
	validateNodeGroup(&e, g, vipRange)
	if err := e.Err(); err != nil {
		return nil, err
	}
	rev, err := tx.Revision(ctx)
	if err != nil {
		return nil, err
	}
	return store.Insert[store.NodeGroup](ctx, tx, store.KindNodeGroup,
		append(nodeGroupColumns(g, rev), store.Column{Name: "id", Value: store.NewID(store.KindNodeGroup.Prefix)}))
}

func (h *handlers) CreateNodeGroup(ctx context.Context, r openapi.CreateNodeGroupRequestObject) (openapi.CreateNodeGroupResponseObject, error) {
	if _, err := requireAdmin(ctx); err != nil {
		return nil, err
	}
	b := r.Body
	out, _, err := create(ctx, h, "POST /v1/node-groups", r.Params.IdempotencyKey, r.Params.DryRun, b, func(tx *store.Tx) (openapi.NodeGroup, error) {
		var e validate.Errors
		v := vrrpSettings{b.VrrpInterface, b.VrrpRouterIdMin, b.VrrpRouterIdMax, b.VrrpAdvertIntervalMs}
		if applyVRRP(&e, &store.NodeGroup{}, v); e.Err() != nil {
			return openapi.NodeGroup{}, e.Err()
		}
		g, err := createNodeGroupTx(ctx, tx, b.Name, deref(b.Description), deref(b.Labels), b.VipRange, deref(b.ReservedPorts),
			nodeTiming{b.HeartbeatIntervalMs, b.DownTimeoutMs, b.ApplyGraceMs, b.DownNodeCleanupAfterMs})
		if err != nil {
			return openapi.NodeGroup{}, err
		}
		if applyVRRP(&e, g, v) {
			if g, err = store.Update[store.NodeGroup](ctx, tx, store.KindNodeGroup, g.ID, vrrpColumns(g)); err != nil {
				return openapi.NodeGroup{}, err
			}
		}
		return nodeGroupToAPI(g), nil
	})
	if err != nil {
		return nil, err
	}
	if isTrue(r.Params.DryRun) {
		return openapi.CreateNodeGroup200JSONResponse{Body: out}, nil
	}
	return openapi.CreateNodeGroup201JSONResponse{Body: out, Headers: openapi.CreateNodeGroup201ResponseHeaders{ETag: etag(out.Version)}}, nil
}

func (h *handlers) GetNodeGroup(ctx context.Context, r openapi.GetNodeGroupRequestObject) (openapi.GetNodeGroupResponseObject, error) {
	if err := nodeGroupReader(ctx); err != nil {
		return nil, err
	}
	g, err := get[store.NodeGroup](ctx, h, store.KindNodeGroup, "", r.Id)
	if err != nil {
		return nil, err
	}
	return openapi.GetNodeGroup200JSONResponse{Body: nodeGroupToAPI(&g), Headers: openapi.GetNodeGroup200ResponseHeaders{ETag: etag(g.Version)}}, nil
}

func (h *handlers) UpdateNodeGroup(ctx context.Context, r openapi.UpdateNodeGroupRequestObject) (openapi.UpdateNodeGroupResponseObject, error) {
	if _, err := requireAdmin(ctx); err != nil {
		return nil, err
	}
	b := r.Body
	out, err := update(ctx, h, store.KindNodeGroup, "", r.Id, r.Params.IfMatch, r.Params.DryRun, func(tx *store.Tx, g *store.NodeGroup) (openapi.NodeGroup, error) {
		if b.Name != nil {
			g.Name = *b.Name
		}
		if b.Description != nil {
			g.Description = *b.Description
		}
		if b.Labels != nil {
			g.Labels = *b.Labels
		}
		nodeTiming{b.HeartbeatIntervalMs, b.DownTimeoutMs, b.ApplyGraceMs, b.DownNodeCleanupAfterMs}.apply(g)
		oldPorts := g.ReservedPorts
		if b.ReservedPorts != nil {
			g.ReservedPorts = *b.ReservedPorts
		}
		vipRange := g.VIPRange.String()
		if b.VipRange != nil {
			vipRange = *b.VipRange
		}
		var e validate.Errors
		validateNodeGroup(&e, g, vipRange)
		applyVRRP(&e, g, vrrpSettings{b.VrrpInterface, b.VrrpRouterIdMin, b.VrrpRouterIdMax, b.VrrpAdvertIntervalMs})
		if err := e.Err(); err != nil {
			return openapi.NodeGroup{}, err
		}
		// A range may change only to one that still holds every allocated VIP.
		var outside []string
		rows, _ := tx.Query(ctx, "SELECT id FROM load_balancers WHERE node_group_id = $1 AND NOT (vip_address <<= $2) LIMIT 20", g.ID, g.VIPRange)
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				return openapi.NodeGroup{}, err
			}
			outside = append(outside, id)
		}
		if err := rows.Err(); err != nil {
			return openapi.NodeGroup{}, err
		}
		if len(outside) > 0 {
			return openapi.NodeGroup{}, problem.Conflict("in-use", "The new range leaves out VIPs in use.",
				validate.FieldError{Field: "vip_range", Message: "does not contain the VIPs of " + joinIDs(outside)})
		}
		// Reserving a port a listener uses would put the two at odds:
		// refuse until the listener moves.
		var added []int
		for _, p := range g.ReservedPorts {
			if !slices.Contains(oldPorts, p) {
				added = append(added, p)
			}
		}
		using, err := store.ListenersOnPorts(ctx, tx, g.ID, added)
		if err != nil {
			return openapi.NodeGroup{}, err
		}
		if len(using) > 0 {
			return openapi.NodeGroup{}, problem.Conflict("in-use", "Listeners of the group use ports the new list reserves: "+joinIDs(using)+".",
				validate.FieldError{Field: "reserved_ports", Message: "includes ports used by " + joinIDs(using)})
		}
		rev, err := tx.Revision(ctx)
		if err != nil {
			return openapi.NodeGroup{}, err
		}
		row, err := store.Update[store.NodeGroup](ctx, tx, store.KindNodeGroup, g.ID, append(nodeGroupColumns(g, rev), vrrpColumns(g)...))
		if err != nil {
			return openapi.NodeGroup{}, err
		}
		return nodeGroupToAPI(row), nil
	})
	if err != nil {
		return nil, err
	}
	return openapi.UpdateNodeGroup200JSONResponse{Body: out, Headers: openapi.UpdateNodeGroup200ResponseHeaders{ETag: etag(out.Version)}}, nil
}

func (h *handlers) DeleteNodeGroup(ctx context.Context, r openapi.DeleteNodeGroupRequestObject) (openapi.DeleteNodeGroupResponseObject, error) {
	if _, err := requireAdmin(ctx); err != nil {
		return nil, err
	}
	if err := remove[store.NodeGroup](ctx, h, store.KindNodeGroup, "", r.Id, r.Params.IfMatch, false, nil); err != nil {
		return nil, err
	}
	return openapi.DeleteNodeGroup204Response{}, nil
}

// ---------------------------------------------------------------- nodes

// nodeToAPI shows a node with its state derived with its group's settings.
func nodeToAPI(n *store.Node, g *store.NodeGroup) openapi.Node {
	status := store.NodeStateOf(n, g, time.Now())
	errs := make([]openapi.NodeError, 0, len(n.Errors))
	for _, e := range n.Errors {
		since := e.Since
		errs = append(errs, openapi.NodeError{Kind: openapi.NodeErrorKind(e.Kind), Message: e.Message, Since: &since})
	}
	var msg *string
	if n.StatusMessage != "" {
		msg = &n.StatusMessage
	}
	var agentVersion *string
	if n.AgentVersion != "" {
		agentVersion = &n.AgentVersion
	}
	vips := append([]string{}, n.VIPs...)
	hb := g.HeartbeatIntervalMs
	return openapi.Node{Id: n.ID, Name: n.Name, NodeGroupId: n.NodeGroupID, Description: n.Description, Labels: labelsOrEmpty(n.Labels),
		AppliedRevision: n.AppliedRevision, Status: openapi.NodeStatus(status), AdminState: openapi.NodeAdminState(adminState(n.AdminState)),
		StatusMessage: msg, Errors: &errs, AgentVersion: agentVersion, Vips: vips, HeartbeatIntervalMs: &hb,
		ApplyFailingSince: n.ApplyFailingSince, LastSeenAt: n.LastSeenAt, CreatedAt: n.CreatedAt, UpdatedAt: n.UpdatedAt, Version: n.Version}
}

// adminState is the API's name of a stored admin state.
func adminState(s string) string {
	if s == "" {
		return "in_service"
	}
	return s
}

// nodeGroupOf reads a node's group (for its lifecycle settings).
func nodeGroupOf(ctx context.Context, tx *store.Tx, n *store.Node) (*store.NodeGroup, error) {
	return store.Get[store.NodeGroup](ctx, tx, store.KindNodeGroup, "", n.NodeGroupID, false)
}

// nodesToAPI shows nodes, reading each group once.
func nodesToAPI(ctx context.Context, h *handlers, nodes []*store.Node) ([]openapi.Node, error) {
	out := make([]openapi.Node, 0, len(nodes))
	groups := map[string]*store.NodeGroup{}
	err := h.st.Read(ctx, func(tx *store.Tx) error {
		for i := range nodes {
			g, ok := groups[nodes[i].NodeGroupID]
			if !ok {
				var err error
				if g, err = nodeGroupOf(ctx, tx, nodes[i]); err != nil {
					return err
				}
				groups[nodes[i].NodeGroupID] = g
			}
			out = append(out, nodeToAPI(nodes[i], g))
		}
		return nil
	})
	return out, err
}

func (h *handlers) ListNodes(ctx context.Context, r openapi.ListNodesRequestObject) (openapi.ListNodesResponseObject, error) {
	if _, err := requireAdmin(ctx); err != nil {
		return nil, err
	}
	lq := listQuery(r.Params.Limit, r.Params.PageToken, r.Params.Name, r.Params.Label, store.Column{Name: "node_group_id", Value: r.Params.NodeGroupId})
	items, next, err := list[store.Node](ctx, h, store.KindNode, "", lq)
	if err != nil {
		return nil, err
	}
	out, err := nodesToAPI(ctx, h, items)
	if err != nil {
		return nil, err
	}
	return openapi.ListNodes200JSONResponse{Body: openapi.NodeList{Items: out, NextPageToken: next}}, nil
}

func (h *handlers) CreateNode(ctx context.Context, r openapi.CreateNodeRequestObject) (openapi.CreateNodeResponseObject, error) {
	if _, err := requireAdmin(ctx); err != nil {
		return nil, err
	}
	b := r.Body
	var e validate.Errors
	validate.Hostname(&e, "name", b.Name, false)
	validate.Description(&e, "description", deref(b.Description))
	validate.Labels(&e, "labels", deref(b.Labels))
	if err := e.Err(); err != nil {
		return nil, err
	}
	out, _, err := create(ctx, h, "POST /v1/nodes", r.Params.IdempotencyKey, r.Params.DryRun, b, func(tx *store.Tx) (openapi.Node, error) {
		g, err := store.Get[store.NodeGroup](ctx, tx, store.KindNodeGroup, "", b.NodeGroupId, true)
		if err != nil {
			return openapi.Node{}, problem.InvalidField("node_group_id", "does not exist")
		}
		// Creating a deleted node's name again lets its agent register.
		if err := store.ClearNodeTombstone(ctx, tx, b.Name); err != nil {
			return openapi.Node{}, err
		}
		rev, err := tx.Revision(ctx)
		if err != nil {
			return openapi.Node{}, err
		}
		// A new node has applied nothing yet: start it at the current revision
		// floor so it does not hold back deletes it never served.
		n, err := store.Insert[store.Node](ctx, tx, store.KindNode, []store.Column{
			{Name: "id", Value: store.NewID(store.KindNode.Prefix)}, {Name: "name", Value: b.Name}, {Name: "node_group_id", Value: b.NodeGroupId},
			{Name: "description", Value: deref(b.Description)}, {Name: "labels", Value: labelsOrEmpty(deref(b.Labels))}, {Name: "revision", Value: rev},
			{Name: "applied_revision", Value: rev}})
		if err != nil {
			return openapi.Node{}, err
		}
		return nodeToAPI(n, g), nil
	})
	if err != nil {
		return nil, err
	}
	if isTrue(r.Params.DryRun) {
		return openapi.CreateNode200JSONResponse{Body: out}, nil
	}
	return openapi.CreateNode201JSONResponse{Body: out, Headers: openapi.CreateNode201ResponseHeaders{ETag: etag(out.Version)}}, nil
}

// nodeID resolves a node's name to its id (nodes are addressed by either).
func (h *handlers) nodeID(ctx context.Context, idOrName string) string {
	var id string
	if err := h.st.Pool.QueryRow(ctx, "SELECT id FROM nodes WHERE id = $1 OR name = $1", idOrName).Scan(&id); err != nil {
		return idOrName
	}
	return id
}

func (h *handlers) GetNode(ctx context.Context, r openapi.GetNodeRequestObject) (openapi.GetNodeResponseObject, error) {
	if _, err := requireAdmin(ctx); err != nil {
		return nil, err
	}
	n, err := get[store.Node](ctx, h, store.KindNode, "", h.nodeID(ctx, r.Id))
	if err != nil {
		return nil, err
	}
	out, err := nodesToAPI(ctx, h, []*store.Node{&n})
	if err != nil {
		return nil, err
	}
	return openapi.GetNode200JSONResponse{Body: out[0], Headers: openapi.GetNode200ResponseHeaders{ETag: etag(n.Version)}}, nil
}

func (h *handlers) UpdateNode(ctx context.Context, r openapi.UpdateNodeRequestObject) (openapi.UpdateNodeResponseObject, error) {
	if _, err := requireAdmin(ctx); err != nil {
		return nil, err
	}
	b := r.Body
	out, err := update(ctx, h, store.KindNode, "", h.nodeID(ctx, r.Id), r.Params.IfMatch, r.Params.DryRun, func(tx *store.Tx, n *store.Node) (openapi.Node, error) {
		if b.Description != nil {
			n.Description = *b.Description
		}
		if b.Labels != nil {
			n.Labels = *b.Labels
		}
		var e validate.Errors
		validate.Description(&e, "description", n.Description)
		validate.Labels(&e, "labels", n.Labels)
		if err := e.Err(); err != nil {
			return openapi.Node{}, err
		}
		row, err := store.Update[store.Node](ctx, tx, store.KindNode, n.ID, []store.Column{
			{Name: "description", Value: n.Description}, {Name: "labels", Value: labelsOrEmpty(n.Labels)}})
		if err != nil {
			return openapi.Node{}, err
		}
		g, err := nodeGroupOf(ctx, tx, row)
		if err != nil {
			return openapi.Node{}, err
		}
		return nodeToAPI(row, g), nil
	})
	if err != nil {
		return nil, err
	}
	return openapi.UpdateNode200JSONResponse{Body: out, Headers: openapi.UpdateNode200ResponseHeaders{ETag: etag(out.Version)}}, nil
}

func (h *handlers) DeleteNode(ctx context.Context, r openapi.DeleteNodeRequestObject) (openapi.DeleteNodeResponseObject, error) {
	if _, err := requireAdmin(ctx); err != nil {
		return nil, err
	}
	err := h.st.Write(ctx, false, func(tx *store.Tx) error {
		n, err := store.Get[store.Node](ctx, tx, store.KindNode, "", h.nodeID(ctx, r.Id), true)
		if err != nil {
			return err
		}
		if err := checkIfMatch(r.Params.IfMatch, n.Version); err != nil {
			return err
		}
		// Tokens bound to the node go with it (ON DELETE CASCADE); the
		// tombstone stops a group token registering the name again.
		if err := store.HardDelete(ctx, tx, store.KindNode, n.ID); err != nil {
			return err
		}
		if err := store.TombstoneNode(ctx, tx, n); err != nil {
			return err
		}
		// The node no longer holds back its group's changes and deletes.
		return store.Rederive(ctx, tx, n.NodeGroupID)
	})
	if err != nil {
		return nil, err
	}
	return openapi.DeleteNode204Response{}, nil
}

func joinIDs(ids []string) string {
	out := ""
	for i, id := range ids {
		if i > 0 {
			out += ", "
		}
		out += id
	}
	return out
}
