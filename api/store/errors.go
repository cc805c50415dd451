package store

import "errors"

// Sentinel errors of the store. The store never speaks HTTP: it returns these
// (wrapped with %w, possibly inside a richer error type that names a field),
// and the API maps them to problem+json in its one error writer.
var (
	// ErrNotFound: the object does not exist, is deleted, or belongs to
	// another tenant (the store never tells those apart).
	ErrNotFound = errors.New("not found")
	// ErrConflict: the write collides with existing state (a unique name,
	// a reference that changed concurrently, a serialization failure).
	ErrConflict = errors.New("conflict")
)
