package validate

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// namedValidator is a string validator under test.
type namedValidator struct {
	name string
	fn   func(e *Errors, field, v string) bool
}

// stringValidators returns every validator that takes a string, adapted to
// a common signature.
func stringValidators() []namedValidator {
	return []namedValidator{
		{"Text", func(e *Errors, f, v string) bool { return Text(e, f, v, 64) }},
		{"Name", Name},
		{"Description", Description},
		{"LabelKey", func(e *Errors, f, v string) bool { return Labels(e, f, map[string]string{v: "v"}) }},
		{"LabelValue", func(e *Errors, f, v string) bool { return Labels(e, f, map[string]string{"k": v}) }},
		{"Enum", func(e *Errors, f, v string) bool { return Enum(e, f, v, "http", "tcp") }},
		{"Regex", Regex},
		{"IP", func(e *Errors, f, v string) bool { _, ok := IP(e, f, v); return ok }},
		{"CIDR", func(e *Errors, f, v string) bool { _, ok := CIDR(e, f, v); return ok }},
		{"CIDRList", func(e *Errors, f, v string) bool { _, ok := CIDRList(e, f, []string{v}, 1); return ok }},
		{"Hostname", func(e *Errors, f, v string) bool { return Hostname(e, f, v, false) }},
		{"HostnameWildcard", func(e *Errors, f, v string) bool { return Hostname(e, f, v, true) }},
		{"HostOrIP", HostOrIP},
		{"HeaderName", HeaderName},
		{"CookieName", CookieName},
		{"HTTPMethod", HTTPMethod},
		{"StatusCodes", StatusCodes},
		{"URLPath", URLPath},
		{"URLPathQuery", URLPathQuery},
		{"AbsoluteURL", AbsoluteURL},
		{"ContentType", ContentType},
	}
}

// hasUnsafeChar reports whether s contains a byte below 0x20 or DEL, which
// must never reach a configuration file.
func hasUnsafeChar(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f {
			return true
		}
	}
	return false
}

// FuzzStringValidators checks that every string validator either reports
// an error or accepts a value free of control characters, that the result
// agrees with the collected errors, and that messages are themselves safe
// to display.
func FuzzStringValidators(f *testing.F) {
	seeds := []string{
		"", "web", "example.com", "*.example.com", "192.0.2.1", "2001:db8::1",
		"fe80::1%eth0", "fe80::1%\n", "10.0.0.0/8", "X-Forwarded-For", "GET",
		"200,204,301-302", "/health?full=1", "https://example.com/a?b#c",
		"text/html; charset=utf-8", `text/plain; a="x` + "\t" + `y"`, "^/api/(v1|v2)/",
		"a\nb", "a\rb", "\x00", "\x7f", "\u0085", "\u2028", "\xff", "http",
		"app.kubernetes.io/name", "(?i)a\\x00", "http://a/\x01", "1.2.3.4/\n8",
	}
	for _, s := range seeds {
		f.Add(s)
	}
	validators := stringValidators()
	f.Fuzz(func(t *testing.T, v string) {
		for _, val := range validators {
			var e Errors
			ok := val.fn(&e, "f", v)
			if ok != (e.Len() == 0) {
				t.Fatalf("%s(%q): ok=%v but errors=%q", val.name, v, ok, e.List())
			}
			if (e.Err() == nil) != ok {
				t.Fatalf("%s(%q): ok=%v but Err()=%v", val.name, v, ok, e.Err())
			}
			if ok {
				if hasUnsafeChar(v) || strings.ContainsRune(v, '\n') {
					t.Fatalf("%s accepted %q which contains a control character", val.name, v)
				}
				if val.name != "IP" && val.name != "CIDR" && val.name != "CIDRList" && !utf8.ValidString(v) {
					t.Fatalf("%s accepted invalid UTF-8 %q", val.name, v)
				}
				continue
			}
			for _, fe := range e.List() {
				if fe.Message == "" {
					t.Fatalf("%s(%q): empty message", val.name, v)
				}
				for _, s := range []string{fe.Field, fe.Message} {
					if !utf8.ValidString(s) || strings.ContainsFunc(s, isControl) {
						t.Fatalf("%s(%q): unsafe field or message %q", val.name, v, s)
					}
				}
			}
		}
	})
}

// FuzzStatusCodes checks that every accepted status code list consists of
// codes from 100 to 599 in ascending ranges.
func FuzzStatusCodes(f *testing.F) {
	for _, s := range []string{"200", "200-399", "200,204,301-302", "599-100", "099", "1000", ",", "200-"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		var e Errors
		if !StatusCodes(&e, "f", v) {
			return
		}
		for entry := range strings.SplitSeq(v, ",") {
			lo, hi, isRange := strings.Cut(entry, "-")
			if !isRange {
				hi = lo
			}
			if len(lo) != 3 || len(hi) != 3 || lo < "100" || hi > "599" || lo > hi {
				t.Fatalf("accepted bad entry %q in %q", entry, v)
			}
		}
	})
}

// FuzzCIDR checks that accepted prefixes are valid, masked and zone-free.
func FuzzCIDR(f *testing.F) {
	for _, s := range []string{"10.1.2.3/8", "::1", "192.0.2.1", "fe80::1%eth0", "::ffff:1.2.3.4/100", "0.0.0.0/0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		var e Errors
		p, ok := CIDR(&e, "f", v)
		if !ok {
			if p.IsValid() {
				t.Fatalf("CIDR(%q) rejected but returned %v", v, p)
			}
			return
		}
		if !p.IsValid() || p != p.Masked() || p.Addr().Zone() != "" {
			t.Fatalf("CIDR(%q) = %v, not a valid masked prefix", v, p)
		}
	})
}
