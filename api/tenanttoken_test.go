package api_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/fulcrumlb/fulcrum/api"
	"github.com/fulcrumlb/fulcrum/internal/secretbox"
)

// replica starts a second API server on b's database with token cache ttl,
// and returns a bundle sending to it (same tokens, same store).
func (b *bundle) replica(t *testing.T, ttl time.Duration) *bundle {
	t.Helper()
	key, _ := secretbox.GenerateKey()
	raw, _ := secretbox.LoadKey(key)
	box, err := secretbox.New(raw)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := api.New(api.Config{RateLimits: noRateLimits, NodeTokenTTL: ttl}, b.Store, box, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	if err != nil {
		t.Fatal(err)
	}
	srv.Start(t.Context())
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	r := *b
	r.t, r.URL, r.srv = t, hs.URL, srv
	return &r
}

// TestTenantTokenCache: each replica keeps a tenant token it checked for its
// TTL. Revoked, or its tenant deleted, through a replica, it is refused there
// at once (even with a TTL of minutes); on the other replicas, and when
// deleted or expired in the database directly, within the TTL. A cached
// token still has its secret checked, and acts for its own tenant only.
func TestTenantTokenCache(t *testing.T) {
	const short = 2 * time.Second
	one := setup(t, withConfig(func(c *api.Config) {
		c.RateLimits = noRateLimits
		c.NodeTokenTTL = 10 * time.Minute
	}))
	two := one.replica(t, short)
	ctx := context.Background()

	issue := func(tenant string) (id, secret string) {
		t.Helper()
		tok := one.must(http.StatusCreated, one.Admin, http.MethodPost, "/v1/tokens", map[string]any{"kind": "tenant", "tenant_id": tenant})
		return tok["id"].(string), tok["secret"].(string)
	}
	// cache has both replicas check (and keep) token.
	cache := func(token string) {
		t.Helper()
		one.must(http.StatusOK, token, http.MethodGet, "/v1/load-balancers", nil)
		two.must(http.StatusOK, token, http.MethodGet, "/v1/load-balancers", nil)
	}
	// refusedWithin polls r until token is refused, within the short TTL
	// and a margin for a loaded machine.
	refusedWithin := func(what string, r *bundle, token string) {
		t.Helper()
		start := time.Now()
		for {
			res, err := r.send(token, http.MethodGet, "/v1/load-balancers", nil)
			if err != nil {
				t.Fatal(err)
			}
			if res.Status == http.StatusUnauthorized {
				t.Logf("%s: refused %s after the change (bound %s from the last check)", what, time.Since(start).Round(time.Millisecond), short)
				return
			}
			if res.Status != http.StatusOK {
				t.Fatalf("%s: %d %s", what, res.Status, res.Raw)
			}
			if time.Since(start) > short+5*time.Second {
				t.Fatalf("%s: still accepted %s later (bound %s)", what, time.Since(start), short)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	// Revoked through a replica: refused there at once, though its TTL is
	// 10 minutes; on the other within the short TTL.
	id, token := issue(one.TenantA)
	cache(token)
	one.must(http.StatusNoContent, one.Admin, http.MethodDelete, "/v1/tokens/"+id, nil)
	one.must(http.StatusUnauthorized, token, http.MethodGet, "/v1/load-balancers", nil)
	refusedWithin("revoked through the other replica", two, token)

	// Revoked through the short-TTL replica: refused there at once; the
	// 10-minute replica still holds it (it is cached: no lookup).
	id, token = issue(one.TenantA)
	cache(token)
	two.must(http.StatusNoContent, token, http.MethodDelete, "/v1/tokens/"+id, nil) // a tenant token revokes itself
	two.must(http.StatusUnauthorized, token, http.MethodGet, "/v1/load-balancers", nil)
	one.must(http.StatusOK, token, http.MethodGet, "/v1/load-balancers", nil)

	// Deleted and expired in the database directly: refused within the TTL.
	id, token = issue(one.TenantA)
	cache(token)
	if _, err := one.Store.PoolForTests().Exec(ctx, "DELETE FROM tokens WHERE id = $1", id); err != nil {
		t.Fatal(err)
	}
	refusedWithin("deleted in the database", two, token)
	id, token = issue(one.TenantA)
	cache(token)
	if _, err := one.Store.PoolForTests().Exec(ctx, "UPDATE tokens SET expires_at = now() - interval '1 second' WHERE id = $1", id); err != nil {
		t.Fatal(err)
	}
	refusedWithin("expired in the database", two, token)

	// The tenant deleted through a replica (its tokens with it): refused
	// there at once, on the other within the TTL.
	tenant := one.must(http.StatusCreated, one.Admin, http.MethodPost, "/v1/tenants", map[string]any{"name": "short-lived"})["id"].(string)
	_, token = issue(tenant)
	cache(token)
	one.must(http.StatusNoContent, one.Admin, http.MethodDelete, "/v1/tenants/"+tenant, nil)
	one.must(http.StatusUnauthorized, token, http.MethodGet, "/v1/load-balancers", nil)
	refusedWithin("tenant deleted through the other replica", two, token)
	tenant = one.must(http.StatusCreated, one.Admin, http.MethodPost, "/v1/tenants", map[string]any{"name": "short-lived-2"})["id"].(string)
	_, token = issue(tenant)
	cache(token)
	two.must(http.StatusNoContent, two.Admin, http.MethodDelete, "/v1/tenants/"+tenant, nil)
	two.must(http.StatusUnauthorized, token, http.MethodGet, "/v1/load-balancers", nil)

	// A cached token still checks its secret, and acts for its tenant only.
	_, token = issue(one.TenantA)
	cache(token)
	for _, r := range []*bundle{one, two} {
		r.must(http.StatusUnauthorized, token+"x", http.MethodGet, "/v1/load-balancers", nil)
		before := r.count(token, "/v1/load-balancers")
		lbB := r.create(r.TokenB, "/v1/load-balancers", map[string]any{})
		r.must(http.StatusNotFound, token, http.MethodGet, "/v1/load-balancers/"+lbB, nil)
		if n := r.count(token, "/v1/load-balancers"); n != before {
			t.Errorf("tenant A's cached token lists %d load balancers after tenant B created one, want %d", n, before)
		}
	}
}
