package api

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/fulcrumlb/fulcrum/api/auth"
	"github.com/fulcrumlb/fulcrum/api/problem"
	"github.com/fulcrumlb/fulcrum/api/snapshot"
	"github.com/fulcrumlb/fulcrum/api/store"
	"github.com/fulcrumlb/fulcrum/internal/secretbox"
	"github.com/fulcrumlb/fulcrum/openapi"
)

// handlers implements the generated strict-server interface, one file per
// resource family.
type handlers struct {
	st     *store.Store
	box    *secretbox.Box
	log    *slog.Logger
	notify *Notifier
	// haproxy is the binary dry runs check the affected load balancer with;
	// "" skips that check (dryrun.go).
	haproxy string
	// checks bounds the haproxy -c processes of concurrent dry runs.
	checks chan struct{}
	// requestTimeout bounds each database read of a snapshot long-poll.
	requestTimeout time.Duration
	// snapshots builds node groups' snapshots (node_protocol.go) and dry
	// runs' load balancers (dryrun.go).
	snapshots *snapshot.Builder
	// deriver derives node groups' statuses after reports (deriver.go).
	deriver *deriver
	// reportw writes nodes' reports in batches (reportwriter.go).
	reportw *reportWriter
	// feeds shares the wake-ups of a group's streams (node_streamfeed.go).
	feeds streamFeeds
	// snapcache holds each node group's part of the snapshot at its newest
	// revision, shared by the group's long-polls (node_protocol.go).
	snapcache *snapshot.Cache
	// views holds each node group's poll view: its revision and nodes as
	// its long-polls need them, read once per wake-up (node_protocol.go).
	views *snapshot.Views
	// auth resolves bearer tokens, caching node tokens for a few seconds
	// (api/auth): revoking one forgets it here at once.
	auth *auth.Authenticator
	// tokenTTL is the token cache's TTL (Config.NodeTokenTTL): open
	// streams check their token at half of it (node_stream.go).
	tokenTTL time.Duration
}

var _ openapi.StrictServerInterface = (*handlers)(nil)

func (h *handlers) GetOpenAPIDocument(ctx context.Context, _ openapi.GetOpenAPIDocumentRequestObject) (openapi.GetOpenAPIDocumentResponseObject, error) {
	return openapi.GetOpenAPIDocument200ApplicationyamlResponse{Body: bytes.NewReader(openapi.Document), ContentLength: int64(len(openapi.Document))}, nil
}

// principal returns the caller; the auth middleware guarantees one on /v1.
func principal(ctx context.Context) (auth.Principal, error) {
	p, ok := auth.PrincipalFrom(ctx)
	if !ok {
		return auth.Principal{}, problem.Unauthorized("A bearer token is required.")
	}
	return p, nil
}

// tenantOf is the tenant every query of a tenant-scoped endpoint is bound to.
func tenantOf(ctx context.Context) (string, error) {
	p, err := principal(ctx)
	if err != nil {
		return "", err
	}
	if p.Kind != store.TokenTenant {
		return "", problem.Forbidden("Load balancers and their objects belong to a tenant: use a tenant token.")
	}
	return p.TenantID, nil
}

// requireAdmin admits admin tokens only.
func requireAdmin(ctx context.Context) (auth.Principal, error) {
	p, err := principal(ctx)
	if err != nil {
		return p, err
	}
	if p.Kind != store.TokenAdmin {
		return p, problem.Forbidden("This endpoint needs an admin token.")
	}
	return p, nil
}

func etag(version int64) *string {
	s := `"` + strconv.FormatInt(version, 10) + `"`
	return &s
}

// checkIfMatch fails with 412 when the client's ETag is not the current version.
func checkIfMatch(ifMatch *string, version int64) error {
	if ifMatch == nil {
		return nil
	}
	for _, tag := range strings.Split(*ifMatch, ",") {
		tag = strings.TrimSpace(tag)
		if tag == "*" {
			return nil
		}
		tag = strings.Trim(strings.TrimPrefix(tag, "W/"), `"`)
		if tag == strconv.FormatInt(version, 10) {
			return nil
		}
	}
	return problem.PreconditionFailed(version)
}

func isTrue(b *bool) bool { return b != nil && *b }

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

func labelsOrEmpty(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

// idempotencyKeyValid: ≤ 255 printable ASCII characters.
func checkIdempotencyKey(key string) error {
	if key == "" || len(key) > 255 {
		return problem.InvalidField("Idempotency-Key", "must be 1 to 255 characters")
	}
	for i := 0; i < len(key); i++ {
		if key[i] < 0x21 || key[i] > 0x7e {
			return problem.InvalidField("Idempotency-Key", "must be printable ASCII without spaces")
		}
	}
	return nil
}

// create runs a create in one transaction: the Idempotency-Key claim, fn (quota
// check, validation, insert, revision bump) and the stored response commit or
// roll back together. A retry with the same key gets the first response.
// A dry run rolls back instead, after reading the affected load balancer so
// that its configuration is checked with HAProxy (dryrun.go). It holds the
// exclusive write lock; createIn holds the locks of scope's node groups only.
func create[R any](ctx context.Context, h *handlers, methodPath string, key *string, dryRun *bool, body any, fn func(tx *store.Tx) (R, error)) (R, bool, error) {
	return createIn(ctx, h, store.ScopeAll(), methodPath, key, dryRun, body, fn)
}

// createIn is create ordered within scope (store.WriteIn): the node group(s)
// the new object joins.
func createIn[R any](ctx context.Context, h *handlers, scope store.WriteScope, methodPath string, key *string, dryRun *bool, body any, fn func(tx *store.Tx) (R, error)) (R, bool, error) {
	var out R
	var replayed bool
	p, err := principal(ctx)
	if err != nil {
		return out, false, err
	}
	useKey := key != nil && !isTrue(dryRun)
	var hash []byte
	if useKey {
		if err := checkIdempotencyKey(*key); err != nil {
			return out, false, err
		}
		b, err := json.Marshal(body)
		if err != nil {
			return out, false, fmt.Errorf("hash request: %w", err)
		}
		sum := sha256.Sum256(b)
		hash = sum[:]
	}
	var tree *dryRunTree
	err = h.st.WriteIn(ctx, isTrue(dryRun), scope, func(tx *store.Tx) error {
		if useKey {
			status, stored, err := store.ClaimIdempotencyKey(ctx, tx, p.IdempotencyScope(), *key, methodPath, hash)
			if err != nil {
				return err
			}
			if status != 0 {
				replayed = true
				return json.Unmarshal(stored, &out)
			}
		}
		var err error
		out, err = fn(tx)
		if err != nil {
			return err
		}
		annotateSpan(ctx, out)
		if isTrue(dryRun) {
			tree, err = h.readDryRunTree(ctx, tx, out)
			return err
		}
		if useKey {
			b, err := json.Marshal(out)
			if err != nil {
				return fmt.Errorf("store response: %w", err)
			}
			return store.StoreIdempotentResponse(ctx, tx, p.IdempotencyScope(), *key, 201, b)
		}
		return nil
	})
	if err == nil && tree != nil {
		err = h.checkDryRun(ctx, tree)
	}
	return out, replayed, err
}

// versioned models expose their version for If-Match.
type versioned interface{ GetVersion() int64 }

// update runs a PATCH: lock the current row, check If-Match, let fn apply,
// validate and save, all in one transaction (rolled back for dry runs, whose
// affected load balancer is then checked with HAProxy), ordered within the
// object's node group (store.ScopeOf).
func update[T any, PT interface {
	*T
	versioned
}, R any](ctx context.Context, h *handlers, k store.Kind, tenantID, id string, ifMatch *string, dryRun *bool, fn func(tx *store.Tx, cur *T) (R, error)) (R, error) {
	var out R
	var tree *dryRunTree
	err := h.st.WriteIn(ctx, isTrue(dryRun), store.ScopeOf(k, tenantID, id), func(tx *store.Tx) error {
		var cur *T
		var err error
		if k.SoftDelete {
			cur, err = store.GetLive[T](ctx, tx, k, tenantID, id, true)
		} else {
			cur, err = store.Get[T](ctx, tx, k, tenantID, id, true)
		}
		if err != nil {
			return err
		}
		annotateSpan(ctx, cur)
		if err := checkIfMatch(ifMatch, PT(cur).GetVersion()); err != nil {
			return err
		}
		if out, err = fn(tx, cur); err != nil {
			return err
		}
		if isTrue(dryRun) {
			tree, err = h.readDryRunTree(ctx, tx, out)
		}
		return err
	})
	if err == nil && tree != nil {
		err = h.checkDryRun(ctx, tree)
	}
	return out, err
}

// remove runs a DELETE: lock, If-Match, what blocks it, then soft delete (for
// dataplane objects) or hard delete, ordered within the object's node group
// (store.ScopeOf).
func remove[T any, PT interface {
	*T
	versioned
}](ctx context.Context, h *handlers, k store.Kind, tenantID, id string, ifMatch *string, cascade bool, check func(tx *store.Tx, cur *T) error) error {
	return h.st.WriteIn(ctx, false, store.ScopeOf(k, tenantID, id), func(tx *store.Tx) error {
		cur, err := store.Get[T](ctx, tx, k, tenantID, id, true)
		if err != nil {
			return err
		}
		annotateSpan(ctx, cur)
		if err := checkIfMatch(ifMatch, PT(cur).GetVersion()); err != nil {
			return err
		}
		if check != nil {
			if err := check(tx, cur); err != nil {
				return err
			}
		}
		if err := store.CheckDeletable(ctx, tx, k, tenantID, id, cascade); err != nil {
			return err
		}
		if k.SoftDelete {
			return store.MarkDeleted(ctx, tx, k, tenantID, id, cascade)
		}
		return store.HardDelete(ctx, tx, k, tenantID, id)
	})
}

// get reads one object in a read-only transaction.
func get[M any](ctx context.Context, h *handlers, k store.Kind, tenantID, id string) (M, error) {
	var out M
	err := h.st.Read(ctx, func(tx *store.Tx) error {
		v, err := store.Get[M](ctx, tx, k, tenantID, id, false)
		if err != nil {
			return err
		}
		out = *v
		return nil
	})
	return out, err
}

// list reads one page in a read-only transaction.
func list[M any](ctx context.Context, h *handlers, k store.Kind, tenantID string, lq store.ListQuery) ([]*M, string, error) {
	var items []*M
	var next string
	err := h.st.Read(ctx, func(tx *store.Tx) error {
		var err error
		items, next, err = store.List[M](ctx, tx, k, tenantID, lq)
		return err
	})
	return items, next, err
}

func listQuery(limit *int, pageToken, name *string, labels *[]string, eq ...store.Column) store.ListQuery {
	lq := store.ListQuery{Limit: deref(limit), PageToken: deref(pageToken), Name: name, Labels: deref(labels)}
	for _, c := range eq {
		if s, ok := c.Value.(*string); ok {
			if s == nil {
				continue
			}
			c.Value = *s
		}
		lq.Equal = append(lq.Equal, c)
	}
	return lq
}

func mapSlice[T, R any](in []*T, f func(*T) R) []R {
	out := make([]R, 0, len(in))
	for _, v := range in {
		out = append(out, f(v))
	}
	return out
}
