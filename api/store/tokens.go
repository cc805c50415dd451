package store

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// TokenGetByID reads what authentication needs of a token (kind, bindings,
// secret hash, expiry, last use), outside any transaction: it runs on every
// request. A missing token is ErrNotFound.
func (s *Store) TokenGetByID(ctx context.Context, id string) (*Token, error) {
	t := Token{ID: id}
	err := s.pool.QueryRow(ctx, "SELECT kind, tenant_id, node_group_id, node_name, node_id, secret_hash, expires_at, last_used_at FROM tokens WHERE id = $1", id).
		Scan(&t.Kind, &t.TenantID, &t.NodeGroupID, &t.NodeName, &t.NodeID, &t.SecretHash, &t.ExpiresAt, &t.LastUsedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, notFound(KindToken, id)
	}
	if err != nil {
		return nil, fmt.Errorf("look up token: %w", err)
	}
	return &t, nil
}

// TokenTouch records that the token was used, at most once a minute so
// reads stay reads.
func (s *Store) TokenTouch(ctx context.Context, id string) error {
	_, err := s.pool.Exec(ctx, "UPDATE tokens SET last_used_at = now() WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')", id)
	return err
}

// TokenDelete revokes a token. A tenant (tenantID not "") revokes only its
// own tenant tokens; an admin passes "". A token not found that way is
// ErrNotFound.
func TokenDelete(ctx context.Context, tx *Tx, tenantID, id string) error {
	if _, err := tx.Revision(ctx); err != nil {
		return err
	}
	tag, err := tx.pg.Exec(ctx, "DELETE FROM tokens WHERE id = $1 AND ($2 = '' OR tenant_id = $2)", id, tenantID)
	if err != nil {
		return fmt.Errorf("delete token: %w", mapError(err))
	}
	if tag.RowsAffected() == 0 {
		return notFound(KindToken, id)
	}
	return nil
}
