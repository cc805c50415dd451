package auth

import (
	"context"
	"crypto/subtle"
	"sync"
	"time"

	"github.com/fulcrumlb/fulcrum/api/store"
)

// NodeTokenTTLDefault is how long a replica trusts a node or tenant token it
// checked against the database: such a token revoked (deleted) or expired on
// another replica, or in the database directly, or whose tenant was deleted
// there, stops working here within that time. Revoking a token, or deleting
// its tenant, through this replica stops it at once here.
const NodeTokenTTLDefault = 5 * time.Second

// maxCachedTokens bounds the cache; beyond it tokens are checked against the
// database every time until entries expire.
const maxCachedTokens = 100_000

// Authenticator resolves bearer tokens to principals, keeping node tokens
// (the agents' long-polls and reports: one request per node per write and per
// heartbeat) and tenant tokens (every tenant request: one query fewer per
// create) for a short time per replica, so a fleet's wake-up does not query
// the tokens table once per node, nor a tenant's request once more. Admin
// tokens are read from the database every time, so their revocation takes
// effect at once everywhere. A cached token is found by its id and its secret
// is still compared, in constant time, with the stored hash; expiry is still
// checked. Safe for concurrent use.
type Authenticator struct {
	st  *store.Store
	ttl time.Duration

	mu     sync.Mutex
	tokens map[string]cachedToken // by token id
}

type cachedToken struct {
	p          Principal
	secretHash []byte
	expiresAt  *time.Time // the token's own expiry
	until      time.Time  // when to read it from the database again
}

// NewAuthenticator returns an authenticator reading tokens from st and
// trusting a node or tenant token for ttl (NodeTokenTTLDefault when 0; negative: no
// caching).
func NewAuthenticator(st *store.Store, ttl time.Duration) *Authenticator {
	if ttl == 0 {
		ttl = NodeTokenTTLDefault
	}
	return &Authenticator{st: st, ttl: ttl, tokens: map[string]cachedToken{}}
}

// Authenticate resolves an Authorization header value to a principal, as the
// package's Authenticate does, from the cache for a node or tenant token
// checked less than the TTL ago.
func (a *Authenticator) Authenticate(ctx context.Context, header string) (Principal, error) {
	id, secret, err := parseHeader(ctx, header)
	if err != nil {
		return Principal{}, err
	}
	now := time.Now()
	a.mu.Lock()
	c, ok := a.tokens[id]
	a.mu.Unlock()
	if ok && now.Before(c.until) {
		if subtle.ConstantTimeCompare(HashSecret(secret), c.secretHash) != 1 {
			return fail(ctx, "wrong_secret")
		}
		if c.expiresAt != nil && now.After(*c.expiresAt) {
			return fail(ctx, "expired")
		}
		return c.p, nil
	}
	p, t, err := lookup(ctx, a.st, id, secret)
	if err != nil || a.ttl < 0 || !cacheable(p.Kind) {
		if err != nil && ok {
			a.Forget(id)
		}
		return p, err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.tokens) >= maxCachedTokens {
		for k, e := range a.tokens {
			if !now.Before(e.until) {
				delete(a.tokens, k)
			}
		}
	}
	if len(a.tokens) < maxCachedTokens {
		a.tokens[id] = cachedToken{p: p, secretHash: t.SecretHash, expiresAt: t.ExpiresAt, until: now.Add(a.ttl)}
	}
	return p, nil
}

// cacheable kinds of tokens are kept for the TTL: admin tokens are not.
func cacheable(kind string) bool { return kind == store.TokenNode || kind == store.TokenTenant }

// Forget drops token id from the cache (revoked through this replica).
func (a *Authenticator) Forget(id string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.tokens, id)
}

// ForgetNode drops the tokens bound to node nodeID (deleted through this
// replica, with its tokens).
func (a *Authenticator) ForgetNode(nodeID string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for k, e := range a.tokens {
		if e.p.NodeID == nodeID {
			delete(a.tokens, k)
		}
	}
}

// ForgetTenant drops the tokens of tenant tenantID (deleted through this
// replica, with its tokens).
func (a *Authenticator) ForgetTenant(tenantID string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for k, e := range a.tokens {
		if e.p.TenantID == tenantID {
			delete(a.tokens, k)
		}
	}
}
