package validate

import (
	"errors"
	"fmt"
	"mime"
	"net/url"
	"strconv"
	"strings"
)

// Limits of the HTTP validators, in bytes (all accepted values are ASCII).
const (
	MaxHeaderNameLength  = 128
	MaxCookieNameLength  = 64
	MaxMethodLength      = 32
	MaxStatusCodesLength = 256
	MaxURLPathLength     = 1024
	MaxURLLength         = 2048
	MaxContentTypeLength = 128
)

// isTchar reports whether c is an RFC 9110 token character:
// "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." / "^" / "_" /
// "`" / "|" / "~" / DIGIT / ALPHA. RFC 6265 cookie names use the same set.
func isTchar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

// tokenProblem returns "" if v is 1 to max token characters and otherwise
// a message describing the problem.
func tokenProblem(v string, max int) string {
	if v == "" {
		return "is required"
	}
	if len(v) > max {
		return fmt.Sprintf("must be at most %d characters", max)
	}
	for i := 0; i < len(v); i++ {
		if !isTchar(v[i]) {
			return invalidChar(v, i) + "; only letters, digits and !#$%&'*+-.^_`|~ are allowed"
		}
	}
	return ""
}

// HeaderName checks an HTTP header field name: 1 to 128 RFC 9110 token
// characters (letters, digits and !#$%&'*+-.^_`|~).
func HeaderName(e *Errors, field, v string) bool {
	if msg := tokenProblem(v, MaxHeaderNameLength); msg != "" {
		e.Add(field, "%s", msg)
		return false
	}
	return true
}

// CookieName checks a cookie name: 1 to 64 RFC 6265 token characters
// (letters, digits and !#$%&'*+-.^_`|~).
func CookieName(e *Errors, field, v string) bool {
	if msg := tokenProblem(v, MaxCookieNameLength); msg != "" {
		e.Add(field, "%s", msg)
		return false
	}
	return true
}

// HTTPMethod checks an HTTP request method such as GET or PURGE: 1 to 32
// uppercase letters A-Z.
func HTTPMethod(e *Errors, field, v string) bool {
	if v == "" {
		e.Add(field, "is required")
		return false
	}
	if len(v) > MaxMethodLength {
		e.Add(field, "must be at most %d characters", MaxMethodLength)
		return false
	}
	for i := 0; i < len(v); i++ {
		if v[i] < 'A' || v[i] > 'Z' {
			e.Add(field, "%s; only uppercase letters A-Z are allowed", invalidChar(v, i))
			return false
		}
	}
	return true
}

// StatusCodes checks a list of HTTP status codes in the style of HAProxy's
// "http-check expect status": comma-separated codes or lo-hi ranges without
// spaces, each code a three-digit number from 100 to 599 and each range
// with lo <= hi, for example "200", "200-399" or "200,204,301-302".
func StatusCodes(e *Errors, field, v string) bool {
	if v == "" {
		e.Add(field, "is required")
		return false
	}
	if len(v) > MaxStatusCodesLength {
		e.Add(field, "must be at most %d characters", MaxStatusCodesLength)
		return false
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if ('0' > c || c > '9') && c != ',' && c != '-' {
			e.Add(field, "%s; expected status codes or ranges such as 200,301-302", invalidChar(v, i))
			return false
		}
	}
	for entry := range strings.SplitSeq(v, ",") {
		if msg := statusEntryProblem(entry); msg != "" {
			e.Add(field, "%s", msg)
			return false
		}
	}
	return true
}

// statusEntryProblem returns "" if entry is a valid status code or range
// and otherwise a message describing the problem. entry contains only
// digits and hyphens.
func statusEntryProblem(entry string) string {
	if entry == "" {
		return "must not contain empty entries"
	}
	lo, hi, isRange := strings.Cut(entry, "-")
	if !isRange {
		hi = lo
	}
	var codes [2]int
	for i, s := range [2]string{lo, hi} {
		if len(s) != 3 {
			return fmt.Sprintf("entry %q is not a status code (such as 200) or range (such as 200-399)", entry)
		}
		n, err := strconv.Atoi(s)
		if err != nil {
			return fmt.Sprintf("entry %q is not a status code (such as 200) or range (such as 200-399)", entry)
		}
		if n < 100 || n > 599 {
			return fmt.Sprintf("status code %d must be between 100 and 599", n)
		}
		codes[i] = n
	}
	if codes[0] > codes[1] {
		return fmt.Sprintf("range %q must not start above its end", entry)
	}
	return ""
}

// isUnreserved reports whether c is an RFC 3986 unreserved character.
func isUnreserved(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return c == '-' || c == '.' || c == '_' || c == '~'
}

// isSubDelim reports whether c is an RFC 3986 sub-delims character.
func isSubDelim(c byte) bool {
	return strings.IndexByte("!$&'()*+,;=", c) >= 0
}

// isHex reports whether c is a hexadecimal digit.
func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// pathProblem returns "" if v is a valid origin-form path (and query if
// allowQuery) and otherwise a message describing the problem.
func pathProblem(v string, allowQuery bool) string {
	if v == "" {
		return "is required"
	}
	if len(v) > MaxURLPathLength {
		return fmt.Sprintf("must be at most %d characters", MaxURLPathLength)
	}
	if v[0] != '/' {
		return `must start with "/"`
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case isUnreserved(c), isSubDelim(c), c == ':', c == '@', c == '/':
		case c == '%':
			if i+2 >= len(v) || !isHex(v[i+1]) || !isHex(v[i+2]) {
				return `contains an invalid percent-encoding; "%" must be followed by two hexadecimal digits`
			}
			i += 2
		case c == '?' && allowQuery:
			// The query allows the path characters plus "?".
		case c == '?':
			return `must not contain a query ("?")`
		default:
			return invalidChar(v, i) + "; percent-encode it"
		}
	}
	return ""
}

// URLPath checks an HTTP request path: it starts with "/", is at most 1024
// characters, and contains only RFC 3986 path characters (letters, digits,
// -._~!$&'()*+,;=:@/) and %XX escapes. Spaces, control characters, "?" and
// "#" are rejected.
func URLPath(e *Errors, field, v string) bool {
	if msg := pathProblem(v, false); msg != "" {
		e.Add(field, "%s", msg)
		return false
	}
	return true
}

// URLPathQuery checks an HTTP request path with an optional query, such as
// a health check URI "/healthz?full=1": the rules of URLPath, also
// allowing "?" and, after it, the RFC 3986 query characters.
func URLPathQuery(e *Errors, field, v string) bool {
	if msg := pathProblem(v, true); msg != "" {
		e.Add(field, "%s", msg)
		return false
	}
	return true
}

// AbsoluteURL checks an absolute http or https URL such as a redirect
// target: at most 2048 characters, only RFC 3986 URI characters (no spaces,
// control characters or non-ASCII; percent-encode them), accepted by
// net/url, with a host and, if present, a port from 1 to 65535.
func AbsoluteURL(e *Errors, field, v string) bool {
	if v == "" {
		e.Add(field, "is required")
		return false
	}
	if len(v) > MaxURLLength {
		e.Add(field, "must be at most %d characters", MaxURLLength)
		return false
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !isUnreserved(c) && !isSubDelim(c) && strings.IndexByte(":/?#[]@%", c) < 0 {
			e.Add(field, "%s; percent-encode it", invalidChar(v, i))
			return false
		}
	}
	u, err := url.Parse(v)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		e.Add(field, "must be a valid URL: %v", err)
		return false
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		e.Add(field, "must be an absolute URL with the http or https scheme")
		return false
	}
	if u.Host == "" || u.Hostname() == "" {
		e.Add(field, "must include a host")
		return false
	}
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			e.Add(field, "must have a port between 1 and 65535")
			return false
		}
	}
	return true
}

// ContentType checks a media type such as "text/html" or
// "application/json; charset=utf-8": "type/subtype" with optional
// parameters, at most 128 printable ASCII characters, accepted by
// mime.ParseMediaType.
func ContentType(e *Errors, field, v string) bool {
	if v == "" {
		e.Add(field, "is required")
		return false
	}
	if len(v) > MaxContentTypeLength {
		e.Add(field, "must be at most %d characters", MaxContentTypeLength)
		return false
	}
	for i := 0; i < len(v); i++ {
		if v[i] < 0x20 || v[i] > 0x7e {
			e.Add(field, "%s", invalidChar(v, i))
			return false
		}
	}
	mediaType, _, err := mime.ParseMediaType(v)
	if err != nil {
		e.Add(field, "must be a valid media type such as text/html or application/json; charset=utf-8: %v", err)
		return false
	}
	if typ, sub, ok := strings.Cut(mediaType, "/"); !ok || typ == "" || sub == "" {
		e.Add(field, "must be a media type of the form type/subtype")
		return false
	}
	return true
}
