package fulcrum

import (
	"net/netip"
	"strings"
)

// CanonicalCIDR reads a CIDR the way the API does: a bare address is a
// single-address prefix, host bits are cleared ("10.1.2.3/8" → 10.0.0.0/8).
func CanonicalCIDR(s string) (netip.Prefix, bool) {
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			return netip.Prefix{}, false
		}
		return netip.PrefixFrom(a, a.BitLen()), true
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, false
	}
	return p.Masked(), true
}

// SameCIDR reports whether a and b name the same prefix once the API has
// read them, so the state may keep the configured spelling.
func SameCIDR(a, b string) bool {
	pa, ok1 := CanonicalCIDR(a)
	pb, ok2 := CanonicalCIDR(b)
	return ok1 && ok2 && pa == pb
}
