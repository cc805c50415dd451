package reqcheck

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"

	"github.com/fulcrumlb/fulcrum/api/validate"
)

// requestField names a problem of the request that no field can be blamed
// for. kin-openapi does not report such problems for this package's
// options; the name is a safety net.
const requestField = "request"

// requestErrorFields appends the field errors err, an error of
// openapi3filter.ValidateRequest about parameters, stands for.
func requestErrorFields(fields []validate.FieldError, err error) []validate.FieldError {
	switch e := err.(type) {
	case openapi3.MultiError:
		for _, err := range e {
			fields = requestErrorFields(fields, err)
		}
		return fields
	case *openapi3filter.RequestError:
		if p := e.Parameter; p != nil {
			return paramErrorFields(fields, p, e.Err)
		}
		if e.RequestBody != nil {
			return append(fields, validate.FieldError{Field: bodyField, Message: "is invalid"})
		}
	}
	return append(fields, validate.FieldError{Field: requestField, Message: "is invalid"})
}

// paramErrorFields appends the field errors of parameter p that err, the
// cause of a RequestError, stands for.
func paramErrorFields(fields []validate.FieldError, p *openapi3.Parameter, err error) []validate.FieldError {
	var schema *openapi3.Schema
	if p.Schema != nil {
		schema = p.Schema.Value
	}
	var pe *openapi3filter.ParseError
	switch {
	case errors.Is(err, openapi3filter.ErrInvalidRequired):
		return append(fields, validate.FieldError{Field: p.Name, Message: "is required"})
	case errors.Is(err, openapi3filter.ErrInvalidEmptyValue):
		return append(fields, validate.FieldError{Field: p.Name, Message: "must not be empty"})
	case errors.As(err, &pe):
		// A value that does not parse as the schema's type: limit=abc.
		msg := typeMessage(schema)
		if schema != nil && schema.Type.Is(openapi3.TypeArray) && schema.Items != nil && schema.Items.Value != nil {
			msg = "each value " + typeMessage(schema.Items.Value)
		}
		return append(fields, validate.FieldError{Field: p.Name, Message: msg})
	}
	switch err.(type) {
	case openapi3.MultiError, *openapi3.SchemaError:
		return schemaErrorFields(fields, err, paramPrefix(p.Name))
	}
	return append(fields, validate.FieldError{Field: p.Name, Message: "is invalid"})
}

// prefix turns the JSON pointer of a schema error, split in its tokens,
// into a field name.
type prefix interface {
	path(ptr []string) string
}

// bodyPrefix names fields of the body root: tokens that index an array
// of root become "[i]", the others ".key".
type bodyPrefix struct {
	root any
}

func (p bodyPrefix) path(ptr []string) string {
	if len(ptr) == 0 {
		return bodyField
	}
	var b strings.Builder
	cur := p.root
	for _, tok := range ptr {
		if arr, ok := cur.([]any); ok {
			if i, err := strconv.Atoi(tok); err == nil && i >= 0 && i < len(arr) {
				writeIndex(&b, i)
				cur = arr[i]
				continue
			}
		}
		writeKey(&b, tok)
		if obj, ok := cur.(map[string]any); ok {
			cur = obj[tok] // nil for a missing required property
		} else {
			cur = nil
		}
	}
	return b.String()
}

// paramPrefix names fields of a parameter: the parameter itself, or for
// array and object parameters its elements ("label[0]").
type paramPrefix string

func (p paramPrefix) path(ptr []string) string {
	var b strings.Builder
	b.WriteString(string(p))
	for _, tok := range ptr {
		if i, err := strconv.Atoi(tok); err == nil && i >= 0 {
			writeIndex(&b, i)
		} else {
			writeKey(&b, tok)
		}
	}
	return b.String()
}

func writeIndex(b *strings.Builder, i int) {
	b.WriteByte('[')
	b.WriteString(strconv.Itoa(i))
	b.WriteByte(']')
}

func writeKey(b *strings.Builder, key string) {
	if b.Len() > 0 {
		b.WriteByte('.')
	}
	b.WriteString(formatKey(key))
}

// maxKeyLength is the number of characters of an object key shown in a
// field name; longer keys are cut.
const maxKeyLength = 64

// formatKey returns key as it appears in a field name: as is, or quoted as
// by strconv.Quote (and cut to maxKeyLength characters) when it is empty,
// too long, or holds a quote, a backslash, a control character or invalid
// UTF-8.
func formatKey(key string) string {
	plain := key != "" && utf8.ValidString(key)
	n := 0
	for _, r := range key {
		n++
		if !plain || n > maxKeyLength || r == '"' || r == '\\' || isControl(r) {
			plain = false
			break
		}
	}
	if plain {
		return key
	}
	return strconv.Quote(truncate(key, maxKeyLength))
}

// truncate cuts s to at most n characters, marking the cut with "...".
func truncate(s string, n int) string {
	for i := range s {
		if n == 0 {
			return s[:i] + "..."
		}
		n--
	}
	return s
}

// schemaErrorFields appends the field errors err, an error of
// openapi3.Schema.VisitJSON, stands for. Fields are named by p.
func schemaErrorFields(fields []validate.FieldError, err error, p prefix) []validate.FieldError {
	switch e := err.(type) {
	case openapi3.MultiError:
		for _, err := range e {
			fields = schemaErrorFields(fields, err, p)
		}
		return fields
	case *openapi3.SchemaError:
		switch e.SchemaField {
		case "allOf":
			// The document wraps a $ref in allOf to make it nullable:
			// report the errors of the referenced schema, which carry
			// their full paths.
			var inner openapi3.MultiError
			if e.Origin != nil && errors.As(e.Origin, &inner) && len(inner) > 0 {
				return schemaErrorFields(fields, inner, p)
			}
		case "properties":
			// An unknown property: the error is on the object, the
			// property's name is in the reason.
			if key, ok := unsupportedProperty(e.Reason); ok {
				ptr := append(e.JSONPointer(), key)
				return append(fields, validate.FieldError{Field: p.path(ptr), Message: "is not a known field"})
			}
		}
		return append(fields, validate.FieldError{Field: p.path(e.JSONPointer()), Message: schemaMessage(e)})
	}
	// openapi3.ErrSchemaInputNaN and the like: not produced by JSON.
	return append(fields, validate.FieldError{Field: p.path(nil), Message: "is invalid"})
}

// unsupportedProperty returns the property named by the reason of
// kin-openapi's error for a property additionalProperties: false forbids,
// `property "name" is unsupported`.
func unsupportedProperty(reason string) (string, bool) {
	s, ok := strings.CutPrefix(reason, "property ")
	if !ok {
		return "", false
	}
	if s, ok = strings.CutSuffix(s, " is unsupported"); !ok {
		return "", false
	}
	key, err := strconv.Unquote(s)
	if err != nil {
		return "", false
	}
	return key, true
}

// schemaMessage says what is wrong with the value of e, built from the
// keyword that failed and the schema (never from e.Reason, which may name
// Go types).
func schemaMessage(e *openapi3.SchemaError) string {
	s := e.Schema
	if s == nil {
		return "is invalid"
	}
	switch e.SchemaField {
	case "required":
		return "is required"
	case "properties":
		return "has a field that is not known"
	case "type":
		if _, ok := e.Value.(json.Number); ok && e.Origin != nil {
			return "is out of range" // a number float64 cannot hold
		}
		return typeMessage(s)
	case "nullable":
		return "must not be null"
	case "enum":
		values := make([]string, len(s.Enum))
		for i, v := range s.Enum {
			values[i] = formatValue(v)
		}
		return "must be one of: " + strings.Join(values, ", ")
	case "minimum", "maximum":
		return rangeMessage(s, e.SchemaField)
	case "exclusiveMinimum":
		if b := s.ExclusiveMin.Value; b != nil {
			return "must be greater than " + formatNumber(*b)
		}
		if s.Min != nil {
			return "must be greater than " + formatNumber(*s.Min)
		}
	case "exclusiveMaximum":
		if b := s.ExclusiveMax.Value; b != nil {
			return "must be less than " + formatNumber(*b)
		}
		if s.Max != nil {
			return "must be less than " + formatNumber(*s.Max)
		}
	case "multipleOf":
		if s.MultipleOf != nil {
			return "must be a multiple of " + formatNumber(*s.MultipleOf)
		}
	case "minLength":
		switch {
		case s.MinLength == 1:
			return "must not be empty"
		case s.MaxLength != nil:
			return fmt.Sprintf("must be between %d and %d characters", s.MinLength, *s.MaxLength)
		default:
			return fmt.Sprintf("must be at least %d characters", s.MinLength)
		}
	case "maxLength":
		if s.MaxLength != nil {
			return fmt.Sprintf("must be at most %d characters", *s.MaxLength)
		}
	case "pattern":
		return "must match the regular expression " + s.Pattern
	case "format":
		return formatMessage(s.Format)
	case "minItems":
		if s.MinItems == 1 {
			return "must not be empty"
		}
		return fmt.Sprintf("must have at least %d items", s.MinItems)
	case "maxItems":
		if s.MaxItems != nil {
			return fmt.Sprintf("must have at most %d items", *s.MaxItems)
		}
	case "uniqueItems":
		return "must not contain duplicate items"
	case "minProperties":
		return fmt.Sprintf("must have at least %d entries", s.MinProps)
	case "maxProperties":
		if s.MaxProps != nil {
			return fmt.Sprintf("must have at most %d entries", *s.MaxProps)
		}
	case "readOnly":
		return "is read-only"
	case "oneOf":
		return "must match exactly one of the allowed forms"
	case "anyOf":
		return "must match one of the allowed forms"
	case "not", "boolean":
		return "is not allowed"
	}
	return "is invalid"
}

// rangeMessage describes the bounds of s for a failed minimum or maximum.
func rangeMessage(s *openapi3.Schema, keyword string) string {
	exclusive := s.ExclusiveMin.IsSet() || s.ExclusiveMax.IsSet()
	if s.Min != nil && s.Max != nil && !exclusive {
		return "must be between " + formatNumber(*s.Min) + " and " + formatNumber(*s.Max)
	}
	if keyword == "minimum" && s.Min != nil {
		return "must be at least " + formatNumber(*s.Min)
	}
	if keyword == "maximum" && s.Max != nil {
		return "must be at most " + formatNumber(*s.Max)
	}
	return "is out of range"
}

// typeMessage says which JSON type a value of schema must have.
func typeMessage(s *openapi3.Schema) string {
	if s == nil || s.Type == nil || len(*s.Type) == 0 {
		return "has the wrong type"
	}
	var names []string
	for _, t := range s.Type.Slice() {
		switch t {
		case openapi3.TypeString:
			names = append(names, "a string")
		case openapi3.TypeInteger:
			names = append(names, "an integer")
		case openapi3.TypeNumber:
			names = append(names, "a number")
		case openapi3.TypeBoolean:
			names = append(names, "a boolean (true or false)")
		case openapi3.TypeObject:
			names = append(names, "an object")
		case openapi3.TypeArray:
			names = append(names, "an array")
		case openapi3.TypeNull:
			names = append(names, "null")
		}
	}
	switch len(names) {
	case 0:
		return "has the wrong type"
	case 1:
		return "must be " + names[0]
	default:
		return "must be " + strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
	}
}

// formatMessage describes a string that does not match format.
func formatMessage(format string) string {
	switch format {
	case "date-time":
		return "must be an RFC 3339 date and time, such as 2025-01-31T12:00:00Z"
	case "date":
		return "must be a date, such as 2025-01-31"
	case "email":
		return "must be an email address"
	case "ipv4":
		return "must be an IPv4 address"
	case "ipv6":
		return "must be an IPv6 address"
	case "uuid":
		return "must be a UUID"
	case "int32":
		return "must be between -2147483648 and 2147483647"
	case "int64":
		return "must be between -9223372036854775808 and 9223372036854775807"
	}
	return "must be a valid " + format
}

// formatValue shows an enum value of the document.
func formatValue(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case float64:
		return formatNumber(v)
	case nil:
		return "null"
	}
	return fmt.Sprint(v)
}

// formatNumber shows a bound of the document without an exponent:
// 86400000, not 8.64e+07.
func formatNumber(f float64) string {
	return strconv.FormatFloat(f, 'f', -1, 64)
}
