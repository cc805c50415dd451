package telemetry

import (
	"context"
	"log/slog"
	"net/http"
	"sync"
	"time"
)

// auditNote collects, while a request runs, who made it and what it
// touched; handlers fill it through NoteActor and NoteResource and the
// middleware logs it when the request ends.
type auditNote struct {
	mu                           sync.Mutex
	tenantID, tokenID, tokenKind string
	resourceID, loadBalancerID   string
}

type auditKey struct{}

func withAuditNote(ctx context.Context) (context.Context, *auditNote) {
	n := &auditNote{}
	return context.WithValue(ctx, auditKey{}, n), n
}

// NoteActor records who the request in ctx acts as (the token's id, never
// its secret) for its audit log line. Without EchoMiddleware it does nothing.
func NoteActor(ctx context.Context, tenantID, tokenID, tokenKind string) {
	if n, ok := ctx.Value(auditKey{}).(*auditNote); ok {
		n.mu.Lock()
		n.tenantID, n.tokenID, n.tokenKind = tenantID, tokenID, tokenKind
		n.mu.Unlock()
	}
}

// NoteResource records the object the request in ctx changed (and its load
// balancer) for its audit log line; empty values leave earlier ones.
func NoteResource(ctx context.Context, resourceID, loadBalancerID string) {
	if n, ok := ctx.Value(auditKey{}).(*auditNote); ok {
		n.mu.Lock()
		if resourceID != "" {
			n.resourceID = resourceID
		}
		if loadBalancerID != "" {
			n.loadBalancerID = loadBalancerID
		}
		n.mu.Unlock()
	}
}

var mutating = map[string]bool{http.MethodPost: true, http.MethodPut: true, http.MethodPatch: true, http.MethodDelete: true}

// logRequest writes the audit line of a mutating request ("audit") and a
// line for a denied one (401/403, "request denied"), with the request's
// context (trace and request ids).
func logRequest(ctx context.Context, log *slog.Logger, n *auditNote, method, path, route string, status int, start time.Time) {
	if log == nil {
		return
	}
	// Agents' heartbeats (reports every few seconds, registration) are the
	// dataplane protocol, not changes anyone made: audited only when refused.
	audit := mutating[method] && !heartbeatRoute[route] && !(method == http.MethodPut && route == "/v1/nodes/:id")
	denied := status == http.StatusUnauthorized || status == http.StatusForbidden
	if !audit && !denied {
		return
	}
	n.mu.Lock()
	attrs := []slog.Attr{
		slog.String("method", method), slog.String("path", path), slog.String("route", route), slog.Int("status", status),
		slog.String("result", result(status)), slog.String("tenant_id", n.tenantID), slog.String("token_id", n.tokenID),
		slog.String("token_kind", n.tokenKind), slog.String("resource_id", n.resourceID),
		slog.String("load_balancer_id", n.loadBalancerID), slog.Float64("duration_ms", float64(time.Since(start).Microseconds())/1000),
	}
	n.mu.Unlock()
	switch {
	case audit:
		log.LogAttrs(ctx, slog.LevelInfo, "audit", attrs...)
	default:
		log.LogAttrs(ctx, slog.LevelWarn, "request denied", attrs...)
	}
}

func result(status int) string {
	switch {
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		return "denied"
	case status >= 500:
		return "error"
	case status >= 400:
		return "rejected"
	}
	return "ok"
}
