package api

import (
	"context"
	"errors"
	"time"

	"github.com/fulcrumlb/fulcrum/api/auth"
	"github.com/fulcrumlb/fulcrum/api/problem"
	"github.com/fulcrumlb/fulcrum/api/store"
	"github.com/fulcrumlb/fulcrum/api/validate"
	"github.com/fulcrumlb/fulcrum/openapi"
)

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
		n, err := store.NodeGetByName(ctx, tx, nodeID, false)
		if err != nil {
			return nil, "", asInvalidField(err, "node_id")
		}
		nodeID = n.ID
		groupID := n.NodeGroupID
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

// unusableRef says whether err, from reading an object a request refers
// to, means the object cannot be referred to (missing, another tenant's,
// being deleted) rather than that the read failed.
func unusableRef(err error) bool {
	return errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrConflict)
}

// asInvalidField turns the ErrNotFound of a referenced object into a 422
// naming field; other errors (an unavailable database) pass through.
func asInvalidField(err error, field string) error {
	if errors.Is(err, store.ErrNotFound) {
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
		p, err := tokenScope(ctx)
		if err != nil {
			return err
		}
		tenant := ""
		if p.Kind == store.TokenTenant {
			tenant = p.TenantID
		}
		return store.TokenDelete(ctx, tx, tenant, r.Id)
	})
	if err != nil {
		return nil, err
	}
	h.auth.Forget(r.Id) // other replicas within auth.NodeTokenTTLDefault
	return openapi.RevokeToken204Response{}, nil
}
