package auth

import (
	"context"
	"crypto/subtle"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"

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
	// refreshing holds the ids whose entry is being read again ahead of
	// its end; forgets counts Forget and ForgetNode calls, so that such a
	// read started before one does not bring a forgotten token back.
	refreshing map[string]bool
	forgets    uint64
	// lookups makes the requests that find no fresh entry for the same
	// header wait for one read of the database.
	lookups singleflight.Group
}

// A fleet shares a few node tokens (one per group, typically): when the
// entry of one ends, every poll and report of the fleet arriving until the
// database answered used to read the token, hundreds at once, each waiting
// behind the others; at 1,000 nodes that made the replica's answers wait
// up to a second every TTL (issue 10, report p99). Now the first request in
// the last refreshAhead of an entry's TTL reads it again in the background
// while the entry keeps serving until its end (so a token revoked elsewhere
// still stops within the TTL), and the requests that find no fresh entry
// share one read.

// refreshAhead is the part of the TTL, at its end, in which an entry is read
// again in the background.
const refreshAhead = 5 // the last fifth

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
	return &Authenticator{st: st, ttl: ttl, tokens: map[string]cachedToken{}, refreshing: map[string]bool{}}
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
		if now.After(c.until.Add(-a.ttl / refreshAhead)) {
			a.refresh(ctx, id, secret)
		}
		return c.p, nil
	}
	a.mu.Lock()
	forgets := a.forgets
	a.mu.Unlock()
	type found struct {
		p Principal
		t *store.Token
	}
	var p Principal
	var t *store.Token
	if ok {
		// A cached token whose entry ended: one read per header at a
		// time; its context is the first caller's, without its end (the
		// others may wait longer), bounded. Other tokens (admin, unknown)
		// are read by every request, as before.
		v, ferr, _ := a.lookups.Do(header, func() (any, error) {
			lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), lookupTimeout)
			defer cancel()
			p, t, err := lookup(lctx, a.st, id, secret)
			return found{p, t}, err
		})
		f, _ := v.(found)
		p, t, err = f.p, f.t, ferr
	} else {
		p, t, err = lookup(ctx, a.st, id, secret)
	}
	if err != nil || a.ttl < 0 || !cacheable(p.Kind) {
		if err != nil && ok {
			a.Forget(id)
		}
		return p, err
	}
	a.store(id, p, t, now, forgets)
	return p, nil
}

// lookupTimeout bounds a read of a token shared by several requests.
const lookupTimeout = 10 * time.Second

// refresh reads cached token id again in the background unless that is under
// way; its entry keeps serving meanwhile.
func (a *Authenticator) refresh(ctx context.Context, id, secret string) {
	a.mu.Lock()
	if a.refreshing[id] {
		a.mu.Unlock()
		return
	}
	a.refreshing[id] = true
	forgets := a.forgets
	a.mu.Unlock()
	go func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), lookupTimeout)
		defer cancel()
		now := time.Now()
		p, t, err := lookup(rctx, a.st, id, secret)
		a.mu.Lock()
		delete(a.refreshing, id)
		a.mu.Unlock()
		switch {
		case err == nil && cacheable(p.Kind):
			a.store(id, p, t, now, forgets)
		case err != nil && store.Unavailable(err):
			// The database is away: the entry ends as it would have.
		default:
			a.Forget(id) // revoked, expired, or no longer cacheable
		}
	}()
}

// store caches token id as read at now, unless Forget or ForgetNode
// ran since forgets was read.
func (a *Authenticator) store(id string, p Principal, t *store.Token, now time.Time, forgets uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.forgets != forgets {
		return
	}
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
}

// cacheable kinds of tokens are kept for the TTL: admin tokens are not.
func cacheable(kind string) bool { return kind == store.TokenNode || kind == store.TokenTenant }

// Forget drops token id from the cache (revoked through this replica).
func (a *Authenticator) Forget(id string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.forgets++
	delete(a.tokens, id)
}

// ForgetNode drops the tokens bound to node nodeID (deleted through this
// replica, with its tokens).
func (a *Authenticator) ForgetNode(nodeID string) {
	a.forgetWhere(func(p Principal) bool { return p.NodeID == nodeID })
}

// ForgetTenant drops the tokens of tenant tenantID (deleted through this
// replica, with its tokens).
func (a *Authenticator) ForgetTenant(tenantID string) {
	a.forgetWhere(func(p Principal) bool { return p.TenantID == tenantID })
}

// forgetWhere drops the cached tokens whose principal match says.
func (a *Authenticator) forgetWhere(match func(Principal) bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.forgets++
	for k, e := range a.tokens {
		if match(e.p) {
			delete(a.tokens, k)
		}
	}
}
