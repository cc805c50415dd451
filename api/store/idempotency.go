package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// IdempotencyTTL is how long a key's first response is replayed.
const IdempotencyTTL = "24 hours"

// ClaimIdempotencyKey reserves key for this request inside the creating
// transaction. When another request already holds the key, the insert waits for
// that transaction: if it committed, its stored response is returned for
// replay; if it rolled back, this request takes the key. The same key with
// another method, path or body is ErrIdempotencyKeyReused.
func ClaimIdempotencyKey(ctx context.Context, tx *Tx, principal, key, methodPath string, hash []byte) (status int, body []byte, err error) {
	if _, err := tx.pg.Exec(ctx, "DELETE FROM idempotency_keys WHERE principal = $1 AND key = $2 AND created_at < now() - interval '"+IdempotencyTTL+"'", principal, key); err != nil {
		return 0, nil, fmt.Errorf("expire idempotency key: %w", err)
	}
	tag, err := tx.pg.Exec(ctx, `INSERT INTO idempotency_keys (principal, key, method_path, request_hash) VALUES ($1, $2, $3, $4)
ON CONFLICT (principal, key) DO NOTHING`, principal, key, methodPath, hash)
	if err != nil {
		return 0, nil, fmt.Errorf("claim idempotency key: %w", err)
	}
	if tag.RowsAffected() == 1 {
		return 0, nil, nil
	}
	var gotPath string
	var gotHash []byte
	err = tx.pg.QueryRow(ctx, "SELECT method_path, request_hash, status, body FROM idempotency_keys WHERE principal = $1 AND key = $2", principal, key).
		Scan(&gotPath, &gotHash, &status, &body)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil, conflict(ReasonConflict, "A request with this Idempotency-Key is being retried concurrently; retry.")
	}
	if err != nil {
		return 0, nil, fmt.Errorf("read idempotency key: %w", err)
	}
	if gotPath != methodPath || !bytes.Equal(gotHash, hash) {
		return 0, nil, ErrIdempotencyKeyReused
	}
	return status, body, nil
}

// StoreIdempotentResponse records the response a claimed key replays.
func StoreIdempotentResponse(ctx context.Context, tx *Tx, principal, key string, status int, body []byte) error {
	if _, err := tx.pg.Exec(ctx, "UPDATE idempotency_keys SET status = $3, body = $4 WHERE principal = $1 AND key = $2", principal, key, status, body); err != nil {
		return fmt.Errorf("store idempotent response: %w", err)
	}
	return nil
}

// ExpireIdempotencyKeys deletes keys past their TTL, and removes the token
// secrets that replay records of POST /v1/tokens held before they stopped
// storing them.
func (s *Store) ExpireIdempotencyKeys(ctx context.Context) error {
	if _, err := s.pool.Exec(ctx, "DELETE FROM idempotency_keys WHERE created_at < now() - interval '"+IdempotencyTTL+"'"); err != nil {
		return err
	}
	_, err := s.pool.Exec(ctx, "UPDATE idempotency_keys SET body = body - 'secret' WHERE method_path = 'POST /v1/tokens' AND body ? 'secret'")
	return err
}
