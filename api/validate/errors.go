// Package validate provides field validators for API request values.
//
// Validators never panic and never stop at the first problem of a request:
// each one takes an *Errors collector and the name of the field being
// checked, adds a human readable message naming that field when the value
// is invalid, and reports whether the value was valid. The collected errors
// are turned into a single *Error with (*Errors).Err.
//
// Every string validator rejects control characters (including newlines),
// so a value that passed validation can never break out of a line of a
// generated configuration file. Values must still be quoted or escaped for
// their destination: several validators accept characters such as the
// number sign, quotes, backslash or dollar sign that are significant to
// HAProxy's configuration parser.
package validate

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// FieldError describes one invalid field of a request.
type FieldError struct {
	// Field is the path of the invalid field, for example
	// "timeouts.client_ms" or "allowed_cidrs[1]".
	Field string `json:"field"`
	// Message says what is wrong with the field, for example
	// "must be between 1 and 65535".
	Message string `json:"message"`
}

// Errors collects field errors. The zero value is an empty collector ready
// to use. An Errors must not be copied after first use and is not safe for
// concurrent use.
type Errors struct {
	list []FieldError
}

// Add records that field is invalid, with a message formatted from format
// and args as by fmt.Sprintf.
func (e *Errors) Add(field, format string, args ...any) {
	e.list = append(e.list, FieldError{Field: field, Message: fmt.Sprintf(format, args...)})
}

// List returns a copy of the errors collected so far, in the order they were
// added. It returns nil if there are none.
func (e *Errors) List() []FieldError {
	return slices.Clone(e.list)
}

// Len returns the number of errors collected so far.
func (e *Errors) Len() int {
	return len(e.list)
}

// Err returns nil if no errors were collected and otherwise an *Error
// holding a copy of them.
func (e *Errors) Err() error {
	if len(e.list) == 0 {
		return nil
	}
	return &Error{Fields: slices.Clone(e.list)}
}

// Error is the error returned by (*Errors).Err. It lists every invalid field
// of a request.
type Error struct {
	Fields []FieldError
}

// Error joins the field errors as "field: message; field: message".
func (e *Error) Error() string {
	var b strings.Builder
	for i, f := range e.Fields {
		if i > 0 {
			b.WriteString("; ")
		}
		if f.Field != "" {
			b.WriteString(f.Field)
			b.WriteString(": ")
		}
		b.WriteString(f.Message)
	}
	return b.String()
}

// Join returns the path of field inside prefix:
// Join("timeouts", "client_ms") is "timeouts.client_ms" and
// Join("", "x") is "x".
func Join(prefix, field string) string {
	switch {
	case prefix == "":
		return field
	case field == "":
		return prefix
	default:
		return prefix + "." + field
	}
}

// Index returns the path of element i of the list prefix:
// Index("conditions", 2) is "conditions[2]".
func Index(prefix string, i int) string {
	return prefix + "[" + strconv.Itoa(i) + "]"
}
