package fulcrum

import "testing"

func TestCanonicalCIDR(t *testing.T) {
	for in, want := range map[string]string{"10.1.2.3/8": "10.0.0.0/8", "192.0.2.1": "192.0.2.1/32", "2001:db8::1/32": "2001:db8::/32", "::1": "::1/128"} {
		p, ok := CanonicalCIDR(in)
		if !ok || p.String() != want {
			t.Errorf("CanonicalCIDR(%q) = %v %v, want %s", in, p, ok, want)
		}
	}
	for _, in := range []string{"", "10.0.0.0/33", "10.0.0", "fe80::1%eth0", "host.example"} {
		if _, ok := CanonicalCIDR(in); ok {
			t.Errorf("CanonicalCIDR(%q) accepted", in)
		}
	}
}
