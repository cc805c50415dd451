package store

import (
	"errors"
	"fmt"
)

// Sentinel errors of the store. The store never speaks HTTP: it returns these
// (wrapped with %w, possibly inside a richer error type that names a field),
// and the API maps them to problem+json in its one error writer.
var (
	// ErrNotFound: the object does not exist, is deleted, or belongs to
	// another tenant (the store never tells those apart). Only
	// pgx.ErrNoRows becomes ErrNotFound: a failed query is never "not found".
	ErrNotFound = errors.New("not found")
	// ErrConflict: the write collides with existing state (a unique name,
	// a reference that changed concurrently, a serialization failure, an
	// object in use or being deleted, a quota used up).
	ErrConflict = errors.New("conflict")
	// ErrInvalidInput: a value the store cannot use at all (a page token it
	// did not issue, a malformed label filter).
	ErrInvalidInput = errors.New("invalid input")
	// ErrIdempotencyKeyReused: an Idempotency-Key first used with another
	// request.
	ErrIdempotencyKeyReused = errors.New("idempotency key reused with a different request")
)

// FieldError names the field (of the request, or "id" for the object
// itself) a store error is about.
type FieldError struct {
	Field   string
	Message string
}

// NotFoundError is ErrNotFound naming the kind and id looked for.
type NotFoundError struct {
	Kind string // "load balancer"
	ID   string
}

func (e *NotFoundError) Error() string        { return fmt.Sprintf("%s %q does not exist", e.Kind, e.ID) }
func (e *NotFoundError) Is(target error) bool { return target == ErrNotFound }

func notFound(k Kind, id string) error { return &NotFoundError{Kind: k.Name, ID: id} }

// Conflict reasons (the problem type the API answers with).
const (
	ReasonConflict      = "conflict"
	ReasonInUse         = "in-use"
	ReasonHasChildren   = "has-children"
	ReasonPendingDelete = "pending-delete"
)

// ConflictError is ErrConflict with its reason, a sentence for people and
// the fields in the way.
type ConflictError struct {
	Reason string // one of the Reason constants
	Detail string
	Fields []FieldError
}

func (e *ConflictError) Error() string {
	s := e.Reason + ": " + e.Detail
	for _, f := range e.Fields {
		s += "; " + f.Field + ": " + f.Message
	}
	return s
}
func (e *ConflictError) Is(target error) bool { return target == ErrConflict }

func conflict(reason, detail string, fields ...FieldError) error {
	return &ConflictError{Reason: reason, Detail: detail, Fields: fields}
}

// QuotaError is ErrConflict for a create beyond the tenant's quota.
type QuotaError struct {
	Plural string // "load balancers"
	Limit  int
}

func (e *QuotaError) Error() string {
	return fmt.Sprintf("quota exceeded: the tenant's quota of %d %s is used up", e.Limit, e.Plural)
}
func (e *QuotaError) Is(target error) bool { return target == ErrConflict }

// InputError is ErrInvalidInput naming the field.
type InputError struct {
	Field   string
	Message string
}

func (e *InputError) Error() string        { return e.Field + " " + e.Message }
func (e *InputError) Is(target error) bool { return target == ErrInvalidInput }
