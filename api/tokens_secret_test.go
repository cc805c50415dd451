package api_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
)

// TestTokenSecretNotInReplayRecord: POST /v1/tokens with an Idempotency-Key
// must not keep the bearer token in idempotency_keys, and a replay — by
// another token of the tenant, before and after the revoke — must not show a
// usable secret.
func TestTokenSecretNotInReplayRecord(t *testing.T) {
	b := setup(t)
	const key = "token-create-1"
	body := map[string]any{"kind": "tenant", "name": "ci"}
	first := b.must(http.StatusCreated, b.TokenA, http.MethodPost, "/v1/tokens", body, "Idempotency-Key", key)
	bearer, _ := first["secret"].(string)
	id, _ := first["id"].(string)
	_, secret, ok := strings.Cut(bearer, ".")
	if !ok || secret == "" || id == "" {
		t.Fatalf("create token: want an id and a secret, got %v", first)
	}
	b.must(http.StatusOK, bearer, http.MethodGet, "/v1/load-balancers", nil)

	// Nothing at rest holds the secret.
	rows, err := b.Store.PoolForTests().Query(context.Background(), "SELECT principal, key, coalesce(body::text, '') FROM idempotency_keys")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for rows.Next() {
		var principal, k, text string
		if err := rows.Scan(&principal, &k, &text); err != nil {
			t.Fatal(err)
		}
		n++
		if strings.Contains(text, secret) {
			t.Errorf("idempotency_keys row (%s, %s) holds the token secret: %s", principal, k, text)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Fatal("no idempotency_keys row: the key was not recorded")
	}

	// Another token of the same tenant shares the key space: its replay gets
	// the token's metadata, not the secret.
	other := b.must(http.StatusCreated, b.TokenA, http.MethodPost, "/v1/tokens", map[string]any{"kind": "tenant", "name": "other"})["secret"].(string)
	replayChecks := func(when string) {
		t.Helper()
		for _, tok := range []string{b.TokenA, other} {
			res := b.do(tok, http.MethodPost, "/v1/tokens", body, "Idempotency-Key", key)
			if res.Status != http.StatusCreated {
				t.Fatalf("%s: replay: status %d, want 201 (the first answer): %s", when, res.Status, res.Raw)
			}
			if res.Body["id"] != id {
				t.Errorf("%s: replay: id %v, want the first token's %s", when, res.Body["id"], id)
			}
			if s, _ := res.Body["secret"].(string); s != "" {
				t.Errorf("%s: replay shows a secret %q; a replay must not show one", when, s)
			}
			if strings.Contains(string(res.Raw), secret) {
				t.Errorf("%s: replay body holds the secret: %s", when, res.Raw)
			}
		}
	}
	replayChecks("before revoke")

	b.must(http.StatusNoContent, b.Admin, http.MethodDelete, "/v1/tokens/"+id, nil)
	replayChecks("after revoke")
	if res := b.do(bearer, http.MethodGet, "/v1/load-balancers", nil); res.Status != http.StatusUnauthorized {
		t.Errorf("revoked token: status %d, want 401", res.Status)
	}
}
