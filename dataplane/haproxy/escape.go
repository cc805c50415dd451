package haproxy

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// This file holds the helpers that turn values into HAProxy 2.6
// configuration words. HAProxy cuts each line into words itself (section
// 2.2 "Quoting and escaping" of the configuration manual); several keywords
// then parse their words again (sample fetch arguments, log-format strings).
// Every value that reaches the configuration goes through one of these
// helpers, so that a value is always exactly one word with exactly the
// meaning it has in the model.
//
// Top level, inside double quotes ("weak quoting"), HAProxy interprets:
//   - `\` escapes: \\ \" \$ \' \# \<space>, \n \r \t and \xNN;
//   - `$NAME` / `${NAME}` environment variables;
//   - a CR, LF or NUL ends the line or the string whatever the quoting.
// A quoted word therefore escapes `\`, `"` and `$` and may not carry control
// characters raw; fixed response bodies carry them as \n, \r, \t or \xNN.

// errEmpty is returned for an empty value where a word is required: HAProxy
// keyword parsers take an empty word for the end of the line.
var errEmpty = errors.New("must not be empty")

// isBareByte reports whether c may appear in an unquoted word with no
// special meaning to HAProxy's line parser.
func isBareByte(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("._-/:@+=,~%*!?&^|()[]", c) >= 0
}

// isUnsafeRune reports runes no plain value may contain: C0 controls
// (including TAB, CR, LF and NUL), DEL, C1 controls (including U+0085 NEXT
// LINE) and the Unicode line and paragraph separators.
func isUnsafeRune(r rune) bool {
	return r < 0x20 || (r >= 0x7f && r <= 0x9f) || r == '\u2028' || r == '\u2029'
}

// checkText returns an error if s is empty, not valid UTF-8 or contains a
// control character.
func checkText(s string) error {
	if s == "" {
		return errEmpty
	}
	if !utf8.ValidString(s) {
		return errors.New("must be valid UTF-8")
	}
	for _, r := range s {
		if isUnsafeRune(r) {
			return fmt.Errorf("contains a control character (%U)", r)
		}
	}
	return nil
}

// quoteWord returns s as a single HAProxy configuration word: as is when it
// only holds characters without special meaning, otherwise inside double
// quotes with `\`, `"` and `$` escaped. It rejects empty values, invalid
// UTF-8 and control characters (CR, LF, NUL, TAB, ...).
func quoteWord(s string) (string, error) {
	if err := checkText(s); err != nil {
		return "", err
	}
	bare := true
	for i := 0; i < len(s); i++ {
		if !isBareByte(s[i]) {
			bare = false
			break
		}
	}
	if bare {
		return s, nil
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '\\', '"', '$':
			b.WriteByte('\\')
			b.WriteByte(c)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String(), nil
}

// quoteBody returns s, which may hold any byte but NUL, as a single
// double-quoted HAProxy word. Line feeds, carriage returns and tabs become
// \n, \r and \t, other control characters, DEL, C1 controls, U+2028,
// U+2029 and bytes that are not valid UTF-8 become \xNN escapes, so that
// HAProxy reads back exactly the bytes of s while the configuration file
// stays one line of valid UTF-8.
func quoteBody(s string) (string, error) {
	if s == "" {
		return "", errEmpty
	}
	if strings.IndexByte(s, 0) >= 0 {
		return "", errors.New("contains a NUL byte")
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	b.WriteByte('"')
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == '\\' || r == '"' || r == '$':
			b.WriteByte('\\')
			b.WriteByte(byte(r))
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case (r == utf8.RuneError && size == 1) || isUnsafeRune(r):
			for j := i; j < i+size; j++ {
				fmt.Fprintf(&b, `\x%02x`, s[j])
			}
		default:
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	b.WriteByte('"')
	return b.String(), nil
}

// quoteLogFormat returns s as a single word holding a log-format string
// whose value is the literal s: "%" is doubled (section 8.2.6) before the
// word is quoted. Log-format strings merge consecutive spaces, so values
// with whitespace are rejected.
func quoteLogFormat(s string) (string, error) {
	if strings.ContainsAny(s, " ") {
		return "", errors.New("must not contain spaces")
	}
	if err := checkText(s); err != nil {
		return "", err
	}
	return quoteWord(strings.ReplaceAll(s, "%", "%%"))
}

// isToken reports whether s is a non-empty RFC 9110 token (the characters of
// header field names and, per RFC 6265, cookie names).
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// maxTokenLength bounds header, cookie and parameter names.
const maxTokenLength = 256

// checkToken returns an error unless s is a token of at most
// maxTokenLength characters.
func checkToken(s string) error {
	switch {
	case s == "":
		return errEmpty
	case len(s) > maxTokenLength:
		return fmt.Errorf("must be at most %d characters", maxTokenLength)
	case !isToken(s):
		return fmt.Errorf("%q is not a token: only letters, digits and !#$%%&'*+-.^_`|~ are allowed", s)
	}
	return nil
}

// fetchWithArg returns the sample fetch call fetch(arg) as one configuration
// word, for arg a token (header, cookie or URL parameter name). HAProxy
// parses the argument list a second time with its own quoting rules
// (section 2.2: quotes and backslashes, but no \#, \$ or \xNN); an argument
// holding anything but letters, digits, '_', '.' and '-' is double-quoted at
// that level too.
func fetchWithArg(fetch, arg string) (string, error) {
	if err := checkToken(arg); err != nil {
		return "", err
	}
	plain := true
	for i := 0; i < len(arg); i++ {
		c := arg[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '.' || c == '-') {
			plain = false
			break
		}
	}
	if !plain {
		arg = `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(arg) + `"`
	}
	return quoteWord(fetch + "(" + arg + ")")
}

// maxIDLength bounds object ids.
const maxIDLength = 128

// checkID returns an error unless id can name a section, a server or an
// ACL as is: 1 to 128 letters, digits, '_', '.' or '-', starting with a
// letter, digit or '_'.
func checkID(id string) error {
	if id == "" {
		return errEmpty
	}
	if len(id) > maxIDLength {
		return fmt.Errorf("id must be at most %d characters", maxIDLength)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '_':
		case (c == '.' || c == '-') && i > 0:
		default:
			return fmt.Errorf("id %s: only letters, digits, '_', '.' and '-' are allowed", strconv.QuoteToASCII(id))
		}
	}
	return nil
}

// checkHostname returns an error unless s is a DNS name made of letters,
// digits, hyphens and dots (labels of 1 to 63 characters not starting or
// ending with a hyphen, 253 characters in all, no trailing dot).
func checkHostname(s string) error {
	if s == "" {
		return errEmpty
	}
	if len(s) > 253 {
		return errors.New("hostname must be at most 253 characters")
	}
	for label := range strings.SplitSeq(s, ".") {
		if label == "" || len(label) > 63 {
			return fmt.Errorf("hostname %s has an empty or too long label", strconv.QuoteToASCII(s))
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			switch {
			case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
			case c == '-' && i > 0 && i < len(label)-1:
			default:
				return fmt.Errorf("hostname %s: only letters, digits, inner hyphens and dots are allowed", strconv.QuoteToASCII(s))
			}
		}
	}
	return nil
}
