package validate

import (
	"errors"
	"fmt"
	"regexp"
	"regexp/syntax"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/fulcrumlb/fulcrum/openapi"
)

// Length limits of the text validators, in characters (runes). Names and
// descriptions take the document's maxLength (openapi.yaml states the same
// for every object; TestLimitsMatchDocument checks).
const (
	MaxNameLength        = openapi.LoadBalancerNameMaxLength
	MaxDescriptionLength = openapi.LoadBalancerDescriptionMaxLength
	MaxLabels            = 64
	MaxLabelKeyLength    = 63
	MaxLabelValueLength  = 255
	MaxRegexLength       = 1024
)

// isControl reports whether r is a C0 control character (including tab, CR
// and LF), DEL, a C1 control character (including U+0085 NEXT LINE) or one
// of the Unicode line and paragraph separators U+2028 and U+2029.
func isControl(r rune) bool {
	return r < 0x20 || (r >= 0x7f && r <= 0x9f) || r == '\u2028' || r == '\u2029'
}

// textProblem returns "" if v is valid UTF-8 of at most max runes without
// control characters, and otherwise a message describing the first problem.
func textProblem(v string, max int) string {
	if !utf8.ValidString(v) {
		return "must be valid UTF-8"
	}
	n := 0
	for _, r := range v {
		if isControl(r) {
			return fmt.Sprintf("contains a control character (%U)", r)
		}
		n++
	}
	if n > max {
		return fmt.Sprintf("must be at most %d characters", max)
	}
	return ""
}

// charAt returns the character of v starting at byte offset i, quoted for
// display. Invalid UTF-8 is shown as an escaped byte.
func charAt(v string, i int) string {
	_, size := utf8.DecodeRuneInString(v[i:])
	return strconv.Quote(v[i : i+size])
}

// invalidChar returns the message for the invalid character of v at byte
// offset i.
func invalidChar(v string, i int) string {
	r, size := utf8.DecodeRuneInString(v[i:])
	if size == 1 && r == utf8.RuneError {
		return "must be valid UTF-8"
	}
	if isControl(r) {
		return fmt.Sprintf("contains a control character (%U)", r)
	}
	if r == ' ' {
		return "must not contain spaces"
	}
	return "contains an invalid character " + charAt(v, i)
}

// truncate shortens v to at most n runes for display in a message.
func truncate(v string, n int) string {
	for i := range v {
		if n == 0 {
			return v[:i] + "..."
		}
		n--
	}
	return v
}

// Text checks that v is valid UTF-8 of at most max characters (runes) and
// contains no control characters at all: no tab, CR, LF or other C0
// character, no DEL, no C1 character such as U+0085, and no U+2028 or
// U+2029. The empty string is valid.
func Text(e *Errors, field, v string, max int) bool {
	if msg := textProblem(v, max); msg != "" {
		e.Add(field, "%s", msg)
		return false
	}
	return true
}

// Name checks an optional resource name: empty, or at most 255 characters
// following the rules of Text without leading or trailing whitespace.
func Name(e *Errors, field, v string) bool {
	if !Text(e, field, v, MaxNameLength) {
		return false
	}
	if v == "" {
		return true
	}
	first, _ := utf8.DecodeRuneInString(v)
	last, _ := utf8.DecodeLastRuneInString(v)
	if unicode.IsSpace(first) || unicode.IsSpace(last) {
		e.Add(field, "must not start or end with whitespace")
		return false
	}
	return true
}

// Description checks an optional free-form description: at most 1024
// characters following the rules of Text.
func Description(e *Errors, field, v string) bool {
	return Text(e, field, v, MaxDescriptionLength)
}

// labelKeyProblem returns "" if k is a valid label key and otherwise a
// message describing the problem.
func labelKeyProblem(k string) string {
	if k == "" {
		return "key must not be empty"
	}
	if len(k) > MaxLabelKeyLength {
		return fmt.Sprintf("key must be at most %d characters", MaxLabelKeyLength)
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		switch {
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9':
		case c == '.' || c == '_' || c == '/' || c == '-':
			if i == 0 || i == len(k)-1 {
				return "key must start and end with a lowercase letter or digit"
			}
		default:
			return "key " + invalidChar(k, i) + "; only lowercase letters, digits and . _ / - are allowed"
		}
	}
	return ""
}

// Labels checks a map of labels: at most 64 entries, keys of 1 to 63
// characters matching [a-z0-9]([a-z0-9._/-]*[a-z0-9])? and values of at
// most 255 characters following the rules of Text. An invalid key is
// reported on the field `<field>."<key>"` (the key quoted as by %q), an
// invalid value on `<field>.<key>`. Entries are checked in key order so the
// errors are deterministic.
func Labels(e *Errors, field string, m map[string]string) bool {
	if len(m) > MaxLabels {
		e.Add(field, "must have at most %d entries", MaxLabels)
		return false
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	ok := true
	for _, k := range keys {
		if msg := labelKeyProblem(k); msg != "" {
			e.Add(Join(field, strconv.Quote(truncate(k, MaxLabelKeyLength+1))), "%s", msg)
			ok = false
			continue
		}
		if !Text(e, Join(field, k), m[k], MaxLabelValueLength) {
			ok = false
		}
	}
	return ok
}

// Enum checks that v is one of allowed. The message lists the allowed
// values.
func Enum(e *Errors, field, v string, allowed ...string) bool {
	if slices.Contains(allowed, v) {
		return true
	}
	e.Add(field, "must be one of: %s", strings.Join(allowed, ", "))
	return false
}

// Regex checks a regular expression: required, at most 1024 characters
// following the rules of Text, and accepted by Go's regexp package (RE2
// syntax). Spaces are allowed; they must be escaped when the expression is
// written to a configuration file.
func Regex(e *Errors, field, v string) bool {
	if v == "" {
		e.Add(field, "is required")
		return false
	}
	if !Text(e, field, v, MaxRegexLength) {
		return false
	}
	if _, err := regexp.Compile(v); err != nil {
		var se *syntax.Error
		if errors.As(err, &se) {
			e.Add(field, "must be a valid regular expression: %s: %q", se.Code.String(), truncate(se.Expr, 64))
		} else {
			e.Add(field, "must be a valid regular expression")
		}
		return false
	}
	return true
}
