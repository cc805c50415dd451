package validate

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/fulcrumlb/fulcrum/openapi"
)

// Limits of the hostname validators. A hostname is at most as long as the
// document lets a member's address be.
const (
	MaxHostnameLength = openapi.MemberAddressMaxLength
	MaxLabelLength    = 63
)

// IP checks an IPv4 or IPv6 address without a zone (such as "%eth0") and
// returns the parsed address. The address need not be in canonical form.
func IP(e *Errors, field, v string) (netip.Addr, bool) {
	if v == "" {
		e.Add(field, "is required")
		return netip.Addr{}, false
	}
	a, err := netip.ParseAddr(v)
	if err != nil {
		e.Add(field, "must be a valid IPv4 or IPv6 address")
		return netip.Addr{}, false
	}
	if a.Zone() != "" {
		e.Add(field, "must not include an IPv6 zone")
		return netip.Addr{}, false
	}
	return a, true
}

// CIDR checks an IPv4 or IPv6 prefix in CIDR notation such as "10.0.0.0/8".
// A bare address is accepted as a /32 (IPv4) or /128 (IPv6) prefix. Host
// bits are allowed; the returned prefix has them cleared, so "10.1.2.3/8"
// returns 10.0.0.0/8.
func CIDR(e *Errors, field, v string) (netip.Prefix, bool) {
	if v == "" {
		e.Add(field, "is required")
		return netip.Prefix{}, false
	}
	if !strings.Contains(v, "/") {
		a, ok := IP(e, field, v)
		if !ok {
			return netip.Prefix{}, false
		}
		return netip.PrefixFrom(a, a.BitLen()), true
	}
	p, err := netip.ParsePrefix(v)
	if err != nil {
		e.Add(field, "must be a valid IPv4 or IPv6 CIDR such as 10.0.0.0/8 or 2001:db8::/32")
		return netip.Prefix{}, false
	}
	return p.Masked(), true
}

// CIDRList checks a list of at most max CIDRs (see CIDR), reporting each
// invalid element on an indexed field such as "allowed_cidrs[1]". It returns
// the masked prefixes of the valid elements.
func CIDRList(e *Errors, field string, v []string, max int) ([]netip.Prefix, bool) {
	if len(v) > max {
		e.Add(field, "must have at most %d entries", max)
		return nil, false
	}
	out := make([]netip.Prefix, 0, len(v))
	ok := true
	for i, s := range v {
		p, valid := CIDR(e, Index(field, i), s)
		if !valid {
			ok = false
			continue
		}
		out = append(out, p)
	}
	return out, ok
}

// msgNumericHost is the problem reported for names that look like IPv4
// addresses.
const msgNumericHost = "must be a hostname, not an IP address"

// hostnameProblem returns "" if v is a valid hostname and otherwise a
// message describing the problem.
func hostnameProblem(v string, allowWildcard bool) string {
	if v == "" {
		return "is required"
	}
	if len(v) > MaxHostnameLength {
		return fmt.Sprintf("must be at most %d characters", MaxHostnameLength)
	}
	if strings.HasSuffix(v, ".") {
		return "must not end with a dot"
	}
	name := v
	if rest, ok := strings.CutPrefix(v, "*."); ok {
		if !allowWildcard {
			return "must not be a wildcard"
		}
		name = rest
	}
	labels := strings.Split(name, ".")
	for _, label := range labels {
		if label == "" {
			return "must not contain empty labels"
		}
		if len(label) > MaxLabelLength {
			return fmt.Sprintf("label %q must be at most %d characters", truncate(label, 16), MaxLabelLength)
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			switch {
			case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
			case c == '-':
				if i == 0 || i == len(label)-1 {
					return fmt.Sprintf("label %q must not start or end with a hyphen", label)
				}
			case c == '*' && allowWildcard:
				return "may contain a wildcard only as the whole first label (*.example.com)"
			default:
				return invalidChar(label, i) + "; only letters, digits, hyphens and dots are allowed"
			}
		}
	}
	// A name whose last label is numeric is read as an IPv4 address by
	// resolvers and browsers ("10.1.2.3", "10.1", "0x7f.1"); no top-level
	// domain is numeric.
	if last := labels[len(labels)-1]; isNumericLabel(last) {
		return msgNumericHost
	}
	return ""
}

// isNumericLabel reports whether s is all decimal digits or a 0x
// hexadecimal number.
func isNumericLabel(s string) bool {
	if h, ok := strings.CutPrefix(strings.ToLower(s), "0x"); ok {
		for i := 0; i < len(h); i++ {
			if !('0' <= h[i] && h[i] <= '9' || 'a' <= h[i] && h[i] <= 'f') {
				return false
			}
		}
		return true
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// Hostname checks an RFC 1123 DNS name such as "api.example.com": at most
// 253 characters, dot-separated labels of 1 to 63 letters, digits and
// hyphens that do not start or end with a hyphen, and no trailing dot. IP
// address literals are rejected. If allowWildcard is true the name may
// start with "*." as in "*.example.com". Internationalized names must be
// given in their ASCII (punycode, "xn--") form.
func Hostname(e *Errors, field, v string, allowWildcard bool) bool {
	if msg := hostnameProblem(v, allowWildcard); msg != "" {
		e.Add(field, "%s", msg)
		return false
	}
	return true
}

// HostOrIP checks a value that is either an IP address (see IP) or a
// hostname without wildcard (see Hostname).
func HostOrIP(e *Errors, field, v string) bool {
	if v == "" {
		e.Add(field, "is required")
		return false
	}
	if a, err := netip.ParseAddr(v); err == nil {
		if a.Zone() != "" {
			e.Add(field, "must not include an IPv6 zone")
			return false
		}
		return true
	}
	if strings.Contains(v, ":") {
		e.Add(field, "must be a valid IPv4 or IPv6 address")
		return false
	}
	switch msg := hostnameProblem(v, false); msg {
	case "":
		return true
	case msgNumericHost:
		e.Add(field, "must be a valid IPv4 or IPv6 address")
	default:
		e.Add(field, "must be a valid hostname or IP address: %s", msg)
	}
	return false
}
