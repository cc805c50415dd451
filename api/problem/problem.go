// Package problem is Fulcrum's error vocabulary: every error the API answers with
// is a *Problem, written as RFC 9457 application/problem+json by one handler.
// It may import api/validate and nothing else of Fulcrum's.
package problem

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/fulcrumlb/fulcrum/api/validate"
)

// TypeBase prefixes every problem type URI.
const TypeBase = "https://fulcrum.dev/problems/"

// Problem is an API error with its HTTP status and RFC 9457 fields.
type Problem struct {
	Status int
	// Type is the last segment of the type URI, e.g. "quota-exceeded".
	Type   string
	Title  string
	Detail string
	Errors []validate.FieldError
	// Headers are extra response headers (e.g. Retry-After).
	Headers map[string]string
}

func (p *Problem) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d %s", p.Status, p.Title)
	if p.Detail != "" {
		b.WriteString(": " + p.Detail)
	}
	for _, f := range p.Errors {
		fmt.Fprintf(&b, "; %s: %s", f.Field, f.Message)
	}
	return b.String()
}

// TypeURI is the full type URI.
func (p *Problem) TypeURI() string { return TypeBase + p.Type }

// New builds a problem.
func New(status int, typ, title, detail string, fields ...validate.FieldError) *Problem {
	return &Problem{Status: status, Type: typ, Title: title, Detail: detail, Errors: fields}
}

// NotFound is the answer for an object that does not exist or is not the caller's:
// the two are indistinguishable on purpose.
func NotFound(kind, id string) *Problem {
	return New(http.StatusNotFound, "not-found", "Not found", fmt.Sprintf("%s %q does not exist.", kind, id))
}

// Invalid is a 422 listing the bad fields.
func Invalid(fields ...validate.FieldError) *Problem {
	detail := "1 field is invalid."
	if len(fields) != 1 {
		detail = fmt.Sprintf("%d fields are invalid.", len(fields))
	}
	return New(http.StatusUnprocessableEntity, "validation", "Invalid request", detail, fields...)
}

// InvalidField is a 422 naming one field.
func InvalidField(field, format string, args ...any) *Problem {
	return Invalid(validate.FieldError{Field: field, Message: fmt.Sprintf(format, args...)})
}

// BadRequest is a 400 for a request that could not be read at all.
func BadRequest(field, format string, args ...any) *Problem {
	msg := fmt.Sprintf(format, args...)
	return New(http.StatusBadRequest, "bad-request", "Malformed request", msg,
		validate.FieldError{Field: field, Message: msg})
}

// Conflict is a 409 naming the field or objects in the way.
func Conflict(typ, detail string, fields ...validate.FieldError) *Problem {
	return New(http.StatusConflict, typ, "Conflict", detail, fields...)
}

// QuotaExceeded is the 409 for a create beyond the tenant's quota.
func QuotaExceeded(kind string, limit int) *Problem {
	return New(http.StatusConflict, "quota-exceeded", "Quota exceeded",
		fmt.Sprintf("The tenant's quota of %d %s is used up.", limit, kind))
}

// PreconditionFailed is the 412 for a stale If-Match.
func PreconditionFailed(current int64) *Problem {
	return New(http.StatusPreconditionFailed, "precondition-failed", "Precondition failed",
		fmt.Sprintf("The object changed; its current ETag is \"%d\". Read it again and retry.", current),
		validate.FieldError{Field: "If-Match", Message: fmt.Sprintf("does not match the current ETag \"%d\"", current)})
}

// Unauthorized is the 401 for a missing or unknown token.
func Unauthorized(detail string) *Problem {
	return New(http.StatusUnauthorized, "unauthorized", "Unauthorized", detail)
}

// Forbidden is the 403 for a valid token of the wrong kind. It is never used to
// hide another tenant's object: that is NotFound.
func Forbidden(detail string) *Problem {
	return New(http.StatusForbidden, "forbidden", "Forbidden", detail)
}

// Unavailable is the 503 for a request the server could not serve now — its
// database is down, restarting or too slow — with Retry-After in seconds.
// Retrying later, with the same Idempotency-Key for creates, is safe.
func Unavailable(retryAfterSeconds int, detail string) *Problem {
	p := New(http.StatusServiceUnavailable, "unavailable", "Service unavailable", detail)
	p.Headers = map[string]string{"Retry-After": strconv.Itoa(max(retryAfterSeconds, 1))}
	return p
}

// TooManyRequests is the 429 for a token over its request rate, with
// Retry-After in seconds.
func TooManyRequests(retryAfterSeconds int, detail string) *Problem {
	p := New(http.StatusTooManyRequests, "rate-limited", "Too many requests", detail)
	p.Headers = map[string]string{"Retry-After": strconv.Itoa(max(retryAfterSeconds, 1))}
	return p
}

// From turns any error into a Problem: Problems pass through, validation errors
// become 422, anything else is a 500 whose detail hides internals.
func From(err error) *Problem {
	var p *Problem
	if errors.As(err, &p) {
		return p
	}
	var v *validate.Error
	if errors.As(err, &v) {
		return Invalid(v.Fields...)
	}
	return New(http.StatusInternalServerError, "internal", "Internal error", "The server failed to handle the request; it was logged.")
}
