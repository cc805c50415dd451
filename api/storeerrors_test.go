package api_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"

	"github.com/fulcrumlb/fulcrum/api"
	"github.com/fulcrumlb/fulcrum/api/store"
)

// TestStoreErrorsToProblems pins how the store's errors read as problems:
// the statuses, types and fields the API answered with when the store still
// built problems itself.
func TestStoreErrorsToProblems(t *testing.T) {
	wrap := func(err error) error { return fmt.Errorf("update load balancer: %w", err) }
	for _, c := range []struct {
		name   string
		err    error
		status int
		typ    string
		detail string
		field  string
	}{
		{"not found", wrap(&store.NotFoundError{Kind: "load balancer", ID: "lb_1"}), http.StatusNotFound, "not-found", `load balancer "lb_1" does not exist.`, ""},
		{"bare not found", store.ErrNotFound, http.StatusNotFound, "not-found", "", ""},
		{"unique name", wrap(&store.ConflictError{Reason: store.ReasonConflict, Detail: "name is already used.", Fields: []store.FieldError{{Field: "name", Message: "is already used"}}}),
			http.StatusConflict, "conflict", "name is already used.", "name"},
		{"in use", &store.ConflictError{Reason: store.ReasonInUse, Detail: "in use", Fields: []store.FieldError{{Field: "id", Message: "is used by lsn_1"}}},
			http.StatusConflict, "in-use", "in use", "id"},
		{"pending delete", &store.ConflictError{Reason: store.ReasonPendingDelete, Detail: "being deleted"}, http.StatusConflict, "pending-delete", "being deleted", ""},
		{"quota", &store.QuotaError{Plural: "pools", Limit: 3}, http.StatusConflict, "quota-exceeded", "The tenant's quota of 3 pools is used up.", ""},
		{"page token", &store.InputError{Field: "page_token", Message: "is not a page token this API issued"}, http.StatusBadRequest, "bad-request",
			"is not a page token this API issued", "page_token"},
		{"idempotency key", wrap(store.ErrIdempotencyKeyReused), http.StatusUnprocessableEntity, "idempotency-key-reused", "", "Idempotency-Key"},
		{"database error", wrap(errors.New("connection refused")), http.StatusInternalServerError, "internal", "", ""},
		{"cancelled", wrap(context.Canceled), http.StatusInternalServerError, "internal", "", ""},
	} {
		p := api.ProblemFor(c.err)
		if p.Status != c.status || p.Type != c.typ {
			t.Errorf("%s: %d %s, want %d %s", c.name, p.Status, p.Type, c.status, c.typ)
		}
		if c.detail != "" && p.Detail != c.detail {
			t.Errorf("%s: detail %q, want %q", c.name, p.Detail, c.detail)
		}
		if c.field != "" && (len(p.Errors) != 1 || p.Errors[0].Field != c.field) {
			t.Errorf("%s: errors %v, want one on %s", c.name, p.Errors, c.field)
		}
	}
}
