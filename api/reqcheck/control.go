package reqcheck

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/routers"

	"github.com/fulcrumlb/fulcrum/api/validate"
)

const (
	msgControl     = "contains a control character"
	msgInvalidUTF8 = "must be valid UTF-8"
)

// isControl reports whether r is a C0 control character (tab, CR and LF
// included), DEL, a C1 control character or one of the Unicode line and
// paragraph separators U+2028 and U+2029.
func isControl(r rune) bool {
	return r < 0x20 || (r >= 0x7f && r <= 0x9f) || r == '\u2028' || r == '\u2029'
}

// isMultilineControl reports whether r is a control character a multiline
// field may not hold either: any but tab, CR and LF.
func isMultilineControl(r rune) bool {
	return isControl(r) && r != '\t' && r != '\r' && r != '\n'
}

// hasControl reports whether s holds a control character; multiline allows
// tab, CR and LF.
func hasControl(s string, multiline bool) bool {
	for _, r := range s {
		if multiline && isMultilineControl(r) || !multiline && isControl(r) {
			return true
		}
	}
	return false
}

// multilineTree holds the body fields that may hold several lines: a nil
// value marks such a field, a non-nil one the fields of an object.
type multilineTree map[string]multilineTree

var multilineFields = multilineTree{
	"certificate": nil,
	"private_key": nil,
	"action": {
		"fixed_response": {
			"body": nil,
		},
	},
}

// bodyControlFields appends an error for every string of the decoded body
// value, object keys included, that holds a control character.
func bodyControlFields(fields []validate.FieldError, value any) []validate.FieldError {
	return walkControl(fields, value, "", multilineFields, false)
}

// walkControl walks v, the value at path. tree holds the multiline fields
// of v when v is an object; multiline says that v is such a field.
func walkControl(fields []validate.FieldError, v any, path string, tree multilineTree, multiline bool) []validate.FieldError {
	switch v := v.(type) {
	case string:
		if hasControl(v, multiline) {
			fields = append(fields, validate.FieldError{Field: fieldName(path), Message: msgControl})
		}
	case []any:
		var b strings.Builder
		for i, item := range v {
			b.Reset()
			b.WriteString(path)
			writeIndex(&b, i)
			fields = walkControl(fields, item, b.String(), nil, false)
		}
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		var b strings.Builder
		for _, k := range keys {
			b.Reset()
			b.WriteString(path)
			writeKey(&b, k)
			p := b.String()
			if hasControl(k, false) {
				fields = append(fields, validate.FieldError{Field: p, Message: msgControl})
			}
			sub, isField := tree[k]
			fields = walkControl(fields, v[k], p, sub, isField && sub == nil)
		}
	}
	return fields
}

func fieldName(path string) string {
	if path == "" {
		return bodyField
	}
	return path
}

// paramControlFields appends an error for every parameter of req that holds
// a control character or invalid UTF-8: any query parameter (name or value;
// query is req's, parsed), the path parameters and the header parameters
// route declares.
func paramControlFields(fields []validate.FieldError, req *http.Request, query url.Values, route *routers.Route, pathParams map[string]string) []validate.FieldError {
	// check reports whether v is fine, adding an error for it otherwise.
	check := func(field, v string) bool {
		switch {
		case !utf8.ValidString(v):
			fields = append(fields, validate.FieldError{Field: field, Message: msgInvalidUTF8})
		case hasControl(v, false):
			fields = append(fields, validate.FieldError{Field: field, Message: msgControl})
		default:
			return true
		}
		return false
	}

	names := make([]string, 0, len(pathParams))
	for name := range pathParams {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		check(name, pathParams[name])
	}

	names = names[:0]
	for name := range query {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		// One error per parameter, about its name or its first bad value.
		field := formatKey(name)
		if !check(field, name) {
			continue
		}
		for _, v := range query[name] {
			if !check(field, v) {
				break
			}
		}
	}

	for _, p := range headerParams(route) {
		for _, v := range req.Header.Values(p) {
			if !check(p, v) {
				break
			}
		}
	}
	return fields
}

// headerParams returns the names of the header parameters of route.
func headerParams(route *routers.Route) []string {
	var names []string
	add := func(params openapi3.Parameters) {
		for _, ref := range params {
			if p := ref.Value; p != nil && p.In == openapi3.ParameterInHeader && !slices.Contains(names, p.Name) {
				names = append(names, p.Name)
			}
		}
	}
	if route.PathItem != nil {
		add(route.PathItem.Parameters)
	}
	if route.Operation != nil {
		add(route.Operation.Parameters)
	}
	return names
}
