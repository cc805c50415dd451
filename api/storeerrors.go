package api

import (
	"errors"
	"net/http"

	"github.com/fulcrumlb/fulcrum/api/problem"
	"github.com/fulcrumlb/fulcrum/api/store"
	"github.com/fulcrumlb/fulcrum/api/validate"
)

// storeProblem maps the store's errors (api/store/errors.go) to the problems
// the API answers with; nil when err is none of them. The one error writer
// (Server.handleError) calls it, so handlers return store errors as they are.
func storeProblem(err error) *problem.Problem {
	var (
		nf *store.NotFoundError
		ce *store.ConflictError
		qe *store.QuotaError
		ie *store.InputError
	)
	switch {
	case errors.As(err, &nf):
		return problem.NotFound(nf.Kind, nf.ID)
	case errors.As(err, &qe):
		return problem.QuotaExceeded(qe.Plural, qe.Limit)
	case errors.As(err, &ce):
		return problem.Conflict(ce.Reason, ce.Detail, fieldErrors(ce.Fields)...)
	case errors.As(err, &ie):
		return problem.BadRequest(ie.Field, "%s", ie.Message)
	case errors.Is(err, store.ErrIdempotencyKeyReused):
		return problem.New(http.StatusUnprocessableEntity, "idempotency-key-reused", "Idempotency-Key reused",
			"This Idempotency-Key was first used with a different request; use a new key for a new request.",
			validate.FieldError{Field: "Idempotency-Key", Message: "was used with a different request"})
	case errors.Is(err, store.ErrNotFound):
		return problem.New(http.StatusNotFound, "not-found", "Not found", "The object does not exist.")
	case errors.Is(err, store.ErrConflict):
		return problem.Conflict("conflict", "The request collides with the current state; retry.")
	case errors.Is(err, store.ErrInvalidInput):
		return problem.New(http.StatusBadRequest, "bad-request", "Malformed request", "The request could not be read.")
	}
	return nil
}

func fieldErrors(in []store.FieldError) []validate.FieldError {
	out := make([]validate.FieldError, 0, len(in))
	for _, f := range in {
		out = append(out, validate.FieldError{Field: f.Field, Message: f.Message})
	}
	return out
}

// ProblemFor is the problem an error answers with, for the CLI, which shares
// the API's vocabulary: problems pass through, store errors map as in the
// API, anything else is as problem.From says.
func ProblemFor(err error) *problem.Problem {
	var p *problem.Problem
	if errors.As(err, &p) {
		return p
	}
	if p := storeProblem(err); p != nil {
		return p
	}
	return problem.From(err)
}
