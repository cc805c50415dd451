// Package auth issues and checks bearer tokens and carries the authenticated
// Principal in the request context. Tokens are `<token id>.<secret>`; only the
// SHA-256 of the secret is stored and it is compared in constant time.
package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/fulcrumlb/fulcrum/api/problem"
	"github.com/fulcrumlb/fulcrum/api/store"
	"github.com/fulcrumlb/fulcrum/internal/telemetry"
)

// Principal is who a request acts as.
type Principal struct {
	TokenID string
	Kind    string // store.TokenAdmin, TokenTenant or TokenNode
	// TenantID is set for tenant tokens.
	TenantID string
	// NodeGroupID restricts a node token to one group when set.
	NodeGroupID string
	// NodeName restricts a node token to one node when set.
	NodeName string
	// NodeID restricts a node token to one node when set.
	NodeID string
}

// IdempotencyScope is the namespace of the principal's Idempotency-Keys: a
// tenant's tokens share theirs.
func (p Principal) IdempotencyScope() string {
	if p.Kind == store.TokenTenant {
		return "tenant:" + p.TenantID
	}
	return "token:" + p.TokenID
}

type principalKey struct{}

// WithPrincipal stores p in ctx, and names the token (its id, never its
// secret) and tenant on the request's span.
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	span := trace.SpanFromContext(ctx)
	span.SetAttributes(attribute.String("fulcrum.token_id", p.TokenID), attribute.String("fulcrum.token_kind", p.Kind))
	if p.TenantID != "" {
		span.SetAttributes(attribute.String("fulcrum.tenant_id", p.TenantID))
	}
	telemetry.NoteActor(ctx, p.TenantID, p.TokenID, p.Kind)
	return context.WithValue(ctx, principalKey{}, p)
}

// PrincipalFrom returns the request's principal; ok is false for anonymous requests.
func PrincipalFrom(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	return p, ok
}

// NewSecret returns a token's secret and the hash to store.
func NewSecret() (secret string, hash []byte, err error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", nil, fmt.Errorf("token secret: %w", err)
	}
	secret = base64.RawURLEncoding.EncodeToString(b)
	return secret, HashSecret(secret), nil
}

// HashSecret is what the store keeps of a secret.
func HashSecret(secret string) []byte {
	h := sha256.Sum256([]byte(secret))
	return h[:]
}

// Bearer joins a token id and secret into the string clients send.
func Bearer(tokenID, secret string) string { return tokenID + "." + secret }

var errBadToken = problem.Unauthorized("The bearer token is missing, malformed, unknown, revoked or expired.")

// authFailures is fulcrum_api_auth_failures_total{reason}: missing,
// malformed, unknown (or revoked), wrong_secret, expired.
var authFailures, _ = otel.Meter("github.com/fulcrumlb/fulcrum/api/auth").Int64Counter("fulcrum.api.auth.failures",
	metric.WithDescription("Requests refused for their bearer token, by reason."))

// fail counts a refused token and returns the one answer every reason gets.
func fail(ctx context.Context, reason string) (Principal, error) {
	authFailures.Add(ctx, 1, metric.WithAttributes(attribute.String("reason", reason)))
	return Principal{}, errBadToken
}

// Authenticate resolves an Authorization header value to a principal,
// reading the token from the database every time (see Authenticator for the
// cached way).
func Authenticate(ctx context.Context, s *store.Store, header string) (Principal, error) {
	id, secret, err := parseHeader(ctx, header)
	if err != nil {
		return Principal{}, err
	}
	p, _, err := lookup(ctx, s, id, secret)
	return p, err
}

// parseHeader splits a bearer token into token id and secret.
func parseHeader(ctx context.Context, header string) (id, secret string, err error) {
	// The scheme is case-insensitive (RFC 9110, section 11.1).
	const scheme = "Bearer "
	if len(header) < len(scheme) || !strings.EqualFold(header[:len(scheme)], scheme) {
		_, err := fail(ctx, "missing")
		return "", "", err
	}
	raw := header[len(scheme):]
	id, secret, ok := strings.Cut(strings.TrimSpace(raw), ".")
	if !ok || !strings.HasPrefix(id, store.KindToken.Prefix+"_") || len(id) > 64 || secret == "" {
		_, err := fail(ctx, "malformed")
		return "", "", err
	}
	return id, secret, nil
}

// lookup checks token id's secret against the database and returns its
// principal and stored row.
func lookup(ctx context.Context, s *store.Store, id, secret string) (Principal, *store.Token, error) {
	t, err := s.TokenGetByID(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		// Compare anyway so unknown ids cost the same as wrong secrets.
		subtle.ConstantTimeCompare(HashSecret(secret), make([]byte, sha256.Size))
		p, err := fail(ctx, "unknown")
		return p, nil, err
	}
	if err != nil {
		return Principal{}, nil, fmt.Errorf("look up token: %w", err)
	}
	if subtle.ConstantTimeCompare(HashSecret(secret), t.SecretHash) != 1 {
		p, err := fail(ctx, "wrong_secret")
		return p, nil, err
	}
	if t.ExpiresAt != nil && time.Now().After(*t.ExpiresAt) {
		p, err := fail(ctx, "expired")
		return p, nil, err
	}
	// Record use at most once a minute so reads stay reads: no round trip at
	// all while the recorded use is recent.
	if t.LastUsedAt == nil || time.Since(*t.LastUsedAt) > time.Minute {
		_ = s.TokenTouch(ctx, id)
	}
	p := Principal{TokenID: id, Kind: t.Kind}
	if t.TenantID != nil {
		p.TenantID = *t.TenantID
	}
	if t.NodeGroupID != nil {
		p.NodeGroupID = *t.NodeGroupID
	}
	if t.NodeName != nil {
		p.NodeName = *t.NodeName
	}
	if t.NodeID != nil {
		p.NodeID = *t.NodeID
	}
	return p, t, nil
}
