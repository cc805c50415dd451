package validate

import (
	"net/netip"
	"strconv"
	"strings"
	"testing"
)

// strCase is one input of a string validator. want is "" for a valid input
// and otherwise a substring of the expected message.
type strCase struct {
	in   string
	want string
}

// check runs validate on each case with the field name "f" and checks the
// result, the number of errors and their field and message.
func check(t *testing.T, validate func(e *Errors, field, v string) bool, cases []strCase) {
	t.Helper()
	for _, c := range cases {
		var e Errors
		ok := validate(&e, "f", c.in)
		list := e.List()
		if c.want == "" {
			if !ok || len(list) != 0 {
				t.Errorf("%q: got ok=%v errors=%v, want valid", c.in, ok, list)
			}
			continue
		}
		if ok || len(list) != 1 {
			t.Errorf("%q: got ok=%v errors=%v, want one error containing %q", c.in, ok, list, c.want)
			continue
		}
		if list[0].Field != "f" {
			t.Errorf("%q: field = %q, want %q", c.in, list[0].Field, "f")
		}
		if !strings.Contains(list[0].Message, c.want) {
			t.Errorf("%q: message = %q, want it to contain %q", c.in, list[0].Message, c.want)
		}
	}
}

const ctrl = "contains a control character"

func TestText(t *testing.T) {
	text10 := func(e *Errors, f, v string) bool { return Text(e, f, v, 10) }
	check(t, text10, []strCase{
		{"", ""},
		{"hello", ""},
		{"héllo 世界", ""},
		{"a b\u00a0c", ""},
		{"0123456789", ""},
		{"ééééééééé€", ""}, // 10 runes, 21 bytes
		{"01234567890", "must be at most 10 characters"},
		{"a\nb", ctrl + " (U+000A)"},
		{"a\rb", ctrl},
		{"a\tb", ctrl},
		{"\x00", ctrl + " (U+0000)"},
		{"\x1f", ctrl},
		{"\x7f", ctrl + " (U+007F)"},
		{"a\u0085b", ctrl + " (U+0085)"},
		{"\u0080", ctrl},
		{"\u009f", ctrl},
		{"a\u2028b", ctrl + " (U+2028)"},
		{"a\u2029b", ctrl + " (U+2029)"},
		{"\xff", "must be valid UTF-8"},
		{"ab\xc3", "must be valid UTF-8"},
		{"\xed\xa0\x80", "must be valid UTF-8"}, // encoded surrogate
	})
}

func TestName(t *testing.T) {
	check(t, Name, []strCase{
		{"", ""},
		{"web", ""},
		{"my load balancer (prod)", ""},
		{"Prüfung", ""},
		{strings.Repeat("n", 255), ""},
		{strings.Repeat("é", 255), ""},
		{strings.Repeat("n", 256), "must be at most 255 characters"},
		{" web", "must not start or end with whitespace"},
		{"web ", "must not start or end with whitespace"},
		{"\u00a0web", "must not start or end with whitespace"},
		{"web\u3000", "must not start or end with whitespace"},
		{" ", "must not start or end with whitespace"},
		{"web\n", ctrl},
		{"\tweb", ctrl},
		{"we\x00b", ctrl},
		{"web\xff", "must be valid UTF-8"},
	})
}

func TestDescription(t *testing.T) {
	check(t, Description, []strCase{
		{"", ""},
		{" leading and trailing spaces are fine ", ""},
		{strings.Repeat("d", 1024), ""},
		{strings.Repeat("d", 1025), "must be at most 1024 characters"},
		{"line one\nline two", ctrl},
		{"tab\there", ctrl},
		{"crlf\r\n", ctrl},
		{"nel\u0085", ctrl},
	})
}

func TestLabels(t *testing.T) {
	const labelChars = "; only lowercase letters, digits and . _ / - are allowed"
	tooMany := make(map[string]string)
	for i := range 65 {
		tooMany["k"+strconv.Itoa(i)] = "v"
	}
	maxed := make(map[string]string)
	for i := range 64 {
		maxed["k"+strconv.Itoa(i)] = "v"
	}

	tests := []struct {
		name string
		in   map[string]string
		want []FieldError
	}{
		{name: "nil", in: nil},
		{name: "empty", in: map[string]string{}},
		{name: "valid", in: map[string]string{
			"env":                    "prod",
			"a":                      "",
			"0":                      "zero",
			"app.kubernetes.io/name": "web",
			"team_name-x":            "Équipe A",
			strings.Repeat("k", 63):  strings.Repeat("v", 255),
		}},
		{name: "64 entries", in: maxed},
		{name: "too many", in: tooMany, want: []FieldError{
			{"labels", "must have at most 64 entries"},
		}},
		{name: "bad keys", in: map[string]string{
			"":                      "v",
			"Env":                   "v",
			"-a":                    "v",
			"a-":                    "v",
			".a":                    "v",
			"a/":                    "v",
			"a b":                   "v",
			"é":                     "v",
			"a\nb":                  "v",
			strings.Repeat("k", 64): "v",
		}, want: []FieldError{
			{`labels.""`, "key must not be empty"},
			{`labels."-a"`, "key must start and end with a lowercase letter or digit"},
			{`labels.".a"`, "key must start and end with a lowercase letter or digit"},
			{`labels."Env"`, `key contains an invalid character "E"` + labelChars},
			{`labels."a\nb"`, "key contains a control character (U+000A)" + labelChars},
			{`labels."a b"`, "key must not contain spaces" + labelChars},
			{`labels."a-"`, "key must start and end with a lowercase letter or digit"},
			{`labels."a/"`, "key must start and end with a lowercase letter or digit"},
			{`labels."` + strings.Repeat("k", 64) + `"`, "key must be at most 63 characters"},
			{`labels."é"`, `key contains an invalid character "é"` + labelChars},
		}},
		{name: "bad values", in: map[string]string{
			"env":  "prod\n",
			"team": strings.Repeat("v", 256),
			"ok":   "fine",
			"bin":  "\xff",
		}, want: []FieldError{
			{"labels.bin", "must be valid UTF-8"},
			{"labels.env", "contains a control character (U+000A)"},
			{"labels.team", "must be at most 255 characters"},
		}},
		{name: "long bad key is truncated", in: map[string]string{
			strings.Repeat("K", 1000): "v",
		}, want: []FieldError{
			{`labels."` + strings.Repeat("K", 64) + `..."`, "key must be at most 63 characters"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var e Errors
			ok := Labels(&e, "labels", tt.in)
			got := e.List()
			if ok != (len(tt.want) == 0) {
				t.Errorf("ok = %v, want %v", ok, len(tt.want) == 0)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("errors = %q, want %q", got, tt.want)
			}
			for i := range tt.want {
				if got[i] != tt.want[i] {
					t.Errorf("error %d = %q, want %q", i, got[i], tt.want[i])
				}
			}
		})
	}
}

func TestEnum(t *testing.T) {
	proto := func(e *Errors, f, v string) bool { return Enum(e, f, v, "http", "tcp") }
	check(t, proto, []strCase{
		{"http", ""},
		{"tcp", ""},
		{"HTTP", "must be one of: http, tcp"},
		{"", "must be one of: http, tcp"},
		{"http\n", "must be one of: http, tcp"},
	})
	optional := func(e *Errors, f, v string) bool { return Enum(e, f, v, "", "a") }
	check(t, optional, []strCase{{"", ""}, {"a", ""}, {"b", "must be one of: , a"}})
}

func TestRegex(t *testing.T) {
	check(t, Regex, []strCase{
		{`^/api/v[0-9]+/`, ""},
		{`(?i)^www\.example\.com$`, ""},
		{`a b`, ""},
		{`\n`, ""},
		{`\p{Greek}+`, ""},
		{strings.Repeat("a", 1024), ""},
		{"", "is required"},
		{strings.Repeat("a", 1025), "must be at most 1024 characters"},
		{"(", "must be a valid regular expression: missing closing ): "},
		{"a**", "must be a valid regular expression: invalid nested repetition operator"},
		{"a{1001}", "must be a valid regular expression: invalid repeat count"},
		{`(?<=a)b`, "must be a valid regular expression"},
		{`\C`, "must be a valid regular expression"},
		{"[a-", "missing closing ]"},
		{"a\nb", ctrl},
		{"a\tb", ctrl},
		{"\xff", "must be valid UTF-8"},
	})
}

func TestIntValidators(t *testing.T) {
	tests := []struct {
		name string
		fn   func(e *Errors, f string, v int) bool
		v    int
		want string
	}{
		{"port 1", Port, 1, ""},
		{"port 443", Port, 443, ""},
		{"port 65535", Port, 65535, ""},
		{"port 0", Port, 0, "must be between 1 and 65535"},
		{"port -1", Port, -1, "must be between 1 and 65535"},
		{"port 65536", Port, 65536, "must be between 1 and 65535"},
		{"range min", func(e *Errors, f string, v int) bool { return IntRange(e, f, v, 0, 100) }, 0, ""},
		{"range max", func(e *Errors, f string, v int) bool { return IntRange(e, f, v, 0, 100) }, 100, ""},
		{"range below", func(e *Errors, f string, v int) bool { return IntRange(e, f, v, 0, 100) }, -1, "must be between 0 and 100"},
		{"range above", func(e *Errors, f string, v int) bool { return IntRange(e, f, v, 0, 100) }, 101, "must be between 0 and 100"},
		{"duration ok", func(e *Errors, f string, v int) bool { return DurationMS(e, f, v, 1000, 60000) }, 5000, ""},
		{"duration min", func(e *Errors, f string, v int) bool { return DurationMS(e, f, v, 1000, 60000) }, 1000, ""},
		{"duration max", func(e *Errors, f string, v int) bool { return DurationMS(e, f, v, 1000, 60000) }, 60000, ""},
		{"duration low", func(e *Errors, f string, v int) bool { return DurationMS(e, f, v, 1000, 60000) }, 999, "must be between 1000 and 60000 milliseconds"},
		{"duration high", func(e *Errors, f string, v int) bool { return DurationMS(e, f, v, 1000, 60000) }, 60001, "must be between 1000 and 60000 milliseconds"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			check(t, func(e *Errors, f, _ string) bool { return tt.fn(e, f, tt.v) }, []strCase{{strconv.Itoa(tt.v), tt.want}})
		})
	}
}

func TestIP(t *testing.T) {
	const bad = "must be a valid IPv4 or IPv6 address"
	tests := []struct {
		in   string
		want string // expected address, or expected message if it starts with "!"
	}{
		{"192.0.2.1", "192.0.2.1"},
		{"0.0.0.0", "0.0.0.0"},
		{"::1", "::1"},
		{"2001:db8::1", "2001:db8::1"},
		{"2001:0DB8:0000::0001", "2001:db8::1"},
		{"::ffff:192.0.2.1", "::ffff:192.0.2.1"},
		{"", "!is required"},
		{"192.0.2", "!" + bad},
		{"192.0.2.256", "!" + bad},
		{"192.000.2.1", "!" + bad},
		{" 192.0.2.1", "!" + bad},
		{"192.0.2.1\n", "!" + bad},
		{"example.com", "!" + bad},
		{"192.0.2.1/32", "!" + bad},
		{"[::1]", "!" + bad},
		{"fe80::1%eth0", "!must not include an IPv6 zone"},
		{"fe80::1%\n", "!must not include an IPv6 zone"},
	}
	for _, tt := range tests {
		var e Errors
		a, ok := IP(&e, "f", tt.in)
		if msg, isErr := strings.CutPrefix(tt.want, "!"); isErr {
			check(t, func(e *Errors, f, v string) bool { _, ok := IP(e, f, v); return ok }, []strCase{{tt.in, msg}})
			if ok || a.IsValid() {
				t.Errorf("IP(%q) = %v, %v; want invalid", tt.in, a, ok)
			}
			continue
		}
		if !ok || e.Len() != 0 || a != netip.MustParseAddr(tt.want) {
			t.Errorf("IP(%q) = %v, %v, %v; want %v", tt.in, a, ok, e.List(), tt.want)
		}
	}
}

func TestCIDR(t *testing.T) {
	const bad = "must be a valid IPv4 or IPv6 CIDR"
	tests := []struct {
		in   string
		want string // expected prefix, or expected message if it starts with "!"
	}{
		{"10.0.0.0/8", "10.0.0.0/8"},
		{"10.1.2.3/8", "10.0.0.0/8"},
		{"0.0.0.0/0", "0.0.0.0/0"},
		{"192.0.2.1", "192.0.2.1/32"},
		{"192.0.2.1/32", "192.0.2.1/32"},
		{"::1", "::1/128"},
		{"::/0", "::/0"},
		{"2001:db8::1/32", "2001:db8::/32"},
		{"::ffff:10.0.0.1/104", "::ffff:10.0.0.0/104"},
		{"", "!is required"},
		{"10.0.0.0/33", "!" + bad},
		{"::/129", "!" + bad},
		{"10.0.0.0/-1", "!" + bad},
		{"10.0.0.0/", "!" + bad},
		{"10.0.0.0/08", "!" + bad},
		{"/8", "!" + bad},
		{"10.0.0/8", "!" + bad},
		{"10.0.0.0/8\n", "!" + bad},
		{"10.0.0.0 /8", "!" + bad},
		{"fe80::1%eth0/64", "!" + bad},
		{"fe80::1%eth0", "!must not include an IPv6 zone"},
		{"example.com", "!must be a valid IPv4 or IPv6 address"},
	}
	for _, tt := range tests {
		var e Errors
		p, ok := CIDR(&e, "f", tt.in)
		if msg, isErr := strings.CutPrefix(tt.want, "!"); isErr {
			check(t, func(e *Errors, f, v string) bool { _, ok := CIDR(e, f, v); return ok }, []strCase{{tt.in, msg}})
			if ok || p.IsValid() {
				t.Errorf("CIDR(%q) = %v, %v; want invalid", tt.in, p, ok)
			}
			continue
		}
		if !ok || e.Len() != 0 || p != netip.MustParsePrefix(tt.want) {
			t.Errorf("CIDR(%q) = %v, %v, %v; want %v", tt.in, p, ok, e.List(), tt.want)
		}
	}
}

func TestCIDRList(t *testing.T) {
	var e Errors
	got, ok := CIDRList(&e, "allowed_cidrs", []string{"10.1.0.0/16", "bad", "2001:db8::1", "10.0.0.0/40"}, 10)
	if ok {
		t.Error("ok = true, want false")
	}
	want := []FieldError{
		{"allowed_cidrs[1]", "must be a valid IPv4 or IPv6 address"},
		{"allowed_cidrs[3]", "must be a valid IPv4 or IPv6 CIDR such as 10.0.0.0/8 or 2001:db8::/32"},
	}
	if l := e.List(); len(l) != 2 || l[0] != want[0] || l[1] != want[1] {
		t.Errorf("errors = %q, want %q", l, want)
	}
	if len(got) != 2 || got[0] != netip.MustParsePrefix("10.1.0.0/16") || got[1] != netip.MustParsePrefix("2001:db8::1/128") {
		t.Errorf("prefixes = %v", got)
	}

	e = Errors{}
	got, ok = CIDRList(&e, "allowed_cidrs", []string{"10.0.0.0/8", "192.0.2.9/24"}, 2)
	if !ok || e.Len() != 0 || len(got) != 2 || got[1] != netip.MustParsePrefix("192.0.2.0/24") {
		t.Errorf("got %v, %v, %v", got, ok, e.List())
	}

	e = Errors{}
	got, ok = CIDRList(&e, "allowed_cidrs", nil, 2)
	if !ok || e.Len() != 0 || len(got) != 0 {
		t.Errorf("nil list: got %v, %v, %v", got, ok, e.List())
	}

	e = Errors{}
	_, ok = CIDRList(&e, "allowed_cidrs", []string{"x", "y", "z"}, 2)
	if l := e.List(); ok || len(l) != 1 || l[0] != (FieldError{"allowed_cidrs", "must have at most 2 entries"}) {
		t.Errorf("too many: got %v, %q", ok, l)
	}
}

func TestHostname(t *testing.T) {
	long := strings.Repeat(strings.Repeat("a", 63)+".", 3) + strings.Repeat("b", 61) // 253
	common := []strCase{
		{"example.com", ""},
		{"api.example.com", ""},
		{"localhost", ""},
		{"backend-1", ""},
		{"EXAMPLE.com", ""},
		{"xn--bcher-kva.example", ""},
		{"1.example.com", ""},
		{"123.example.com", ""},
		{"a1b2", ""},
		{"example.c0m", ""},
		{strings.Repeat("a", 63) + ".com", ""},
		{long, ""},
		{"", "is required"},
		{long + "b", "must be at most 253 characters"},
		{strings.Repeat("a", 64) + ".com", "must be at most 63 characters"},
		{"example.com.", "must not end with a dot"},
		{".example.com", "must not contain empty labels"},
		{"example..com", "must not contain empty labels"},
		{".", "must not end with a dot"},
		{"-example.com", "must not start or end with a hyphen"},
		{"example-.com", "must not start or end with a hyphen"},
		{"exa_mple.com", `contains an invalid character "_"`},
		{"exa mple.com", "must not contain spaces"},
		{"bücher.example", `contains an invalid character "ü"`},
		{"example.com\n", ctrl},
		{"example.com\x00", ctrl},
		{"example.com:80", `contains an invalid character ":"`},
		{"192.0.2.1", "must be a hostname, not an IP address"},
		{"10.1", "must be a hostname, not an IP address"},
		{"0x7f.1", "must be a hostname, not an IP address"},
		{"example.0x1F", "must be a hostname, not an IP address"},
		{"123", "must be a hostname, not an IP address"},
		{"::1", `contains an invalid character ":"`},
		{"a\xffb", "must be valid UTF-8"},
	}
	noWildcard := func(e *Errors, f, v string) bool { return Hostname(e, f, v, false) }
	check(t, noWildcard, common)
	check(t, noWildcard, []strCase{
		{"*.example.com", "must not be a wildcard"},
		{"*", `contains an invalid character "*"`},
		{"a*.example.com", `contains an invalid character "*"`},
	})

	wildcard := func(e *Errors, f, v string) bool { return Hostname(e, f, v, true) }
	check(t, wildcard, common)
	check(t, wildcard, []strCase{
		{"*.example.com", ""},
		{"*.localhost", ""},
		{"*." + long[2:], ""},
		{"*." + long, "must be at most 253 characters"},
		{"*", "may contain a wildcard only as the whole first label"},
		{"*.", "must not end with a dot"},
		{"*.*.example.com", "may contain a wildcard only as the whole first label"},
		{"a.*.example.com", "may contain a wildcard only as the whole first label"},
		{"a*.example.com", "may contain a wildcard only as the whole first label"},
		{"**.example.com", "may contain a wildcard only as the whole first label"},
		{"*.192.0.2.1", "must be a hostname, not an IP address"},
	})
}

func TestHostOrIP(t *testing.T) {
	check(t, HostOrIP, []strCase{
		{"example.com", ""},
		{"backend-1", ""},
		{"192.0.2.1", ""},
		{"2001:db8::1", ""},
		{"::ffff:192.0.2.1", ""},
		{"", "is required"},
		{"192.0.2.256", "must be a valid IPv4 or IPv6 address"},
		{"10.1", "must be a valid IPv4 or IPv6 address"},
		{"2001:db8::g", "must be a valid IPv4 or IPv6 address"},
		{"example.com:80", "must be a valid IPv4 or IPv6 address"},
		{"fe80::1%eth0", "must not include an IPv6 zone"},
		{"*.example.com", "must be a valid hostname or IP address: must not be a wildcard"},
		{"exa_mple.com", `must be a valid hostname or IP address: contains an invalid character "_"`},
		{"example.com\n", ctrl},
		{"[::1]", "must be a valid IPv4 or IPv6 address"},
	})
}

func TestHeaderName(t *testing.T) {
	const allowed = "; only letters, digits and !#$%&'*+-.^_`|~ are allowed"
	check(t, HeaderName, []strCase{
		{"X-Forwarded-For", ""},
		{"content-type", ""},
		{"X_Custom.Header~1", ""},
		{"!#$%&'*+-.^_`|~", ""},
		{strings.Repeat("h", 128), ""},
		{"", "is required"},
		{strings.Repeat("h", 129), "must be at most 128 characters"},
		{"X Header", "must not contain spaces" + allowed},
		{"X-Header:", `contains an invalid character ":"` + allowed},
		{"X-Header\r\nInjected: 1", ctrl},
		{"\tX", ctrl},
		{`X"`, `contains an invalid character "\""`},
		{"X(", `contains an invalid character "("`},
		{"X/Y", `contains an invalid character "/"`},
		{"Ä", `contains an invalid character "Ä"`},
		{"\xff", "must be valid UTF-8"},
	})
}

func TestCookieName(t *testing.T) {
	check(t, CookieName, []strCase{
		{"SERVERID", ""},
		{"session_id", ""},
		{"__Host-id", ""},
		{strings.Repeat("c", 64), ""},
		{"", "is required"},
		{strings.Repeat("c", 65), "must be at most 64 characters"},
		{"a=b", `contains an invalid character "="`},
		{"a;b", `contains an invalid character ";"`},
		{"a,b", `contains an invalid character ","`},
		{"a b", "must not contain spaces"},
		{"a\nb", ctrl},
	})
}

func TestHTTPMethod(t *testing.T) {
	check(t, HTTPMethod, []strCase{
		{"GET", ""},
		{"PURGE", ""},
		{"OPTIONS", ""},
		{strings.Repeat("M", 32), ""},
		{"", "is required"},
		{strings.Repeat("M", 33), "must be at most 32 characters"},
		{"get", `contains an invalid character "g"; only uppercase letters A-Z are allowed`},
		{"M-SEARCH", `contains an invalid character "-"`},
		{"GET ", "must not contain spaces"},
		{"GET\n", ctrl},
		{"GÉT", `contains an invalid character "É"`},
	})
}

func TestStatusCodes(t *testing.T) {
	check(t, StatusCodes, []strCase{
		{"200", ""},
		{"100", ""},
		{"599", ""},
		{"200-399", ""},
		{"200-200", ""},
		{"200,204,301-302", ""},
		{"100-599,200", ""},
		{"", "is required"},
		{strings.Repeat("200,", 64) + "200", "must be at most 256 characters"},
		{"99", `entry "99" is not a status code`},
		{"0200", `entry "0200" is not a status code`},
		{"2000", `entry "2000" is not a status code`},
		{"600", "status code 600 must be between 100 and 599"},
		{"099", "status code 99 must be between 100 and 599"},
		{"200-600", "status code 600 must be between 100 and 599"},
		{"399-200", `range "399-200" must not start above its end`},
		{"200,", "must not contain empty entries"},
		{",200", "must not contain empty entries"},
		{"200,,204", "must not contain empty entries"},
		{"200-", `entry "200-" is not a status code`},
		{"-200", `entry "-200" is not a status code`},
		{"200-300-400", `entry "200-300-400" is not a status code`},
		{"200 - 399", "must not contain spaces"},
		{"200, 204", "must not contain spaces"},
		{"2xx", `contains an invalid character "x"`},
		{"200;204", `contains an invalid character ";"`},
		{"200\n", ctrl},
		{"+200", `contains an invalid character "+"`},
	})
}

func TestURLPath(t *testing.T) {
	check(t, URLPath, []strCase{
		{"/", ""},
		{"/api/v1/", ""},
		{"/a%20b", ""},
		{"/%E2%82%AC", ""},
		{"/~user/a.b-c_d", ""},
		{"/a:b@c!$&'()*+,;=", ""},
		{"//double", ""},
		{"/" + strings.Repeat("p", 1023), ""},
		{"", "is required"},
		{"/" + strings.Repeat("p", 1024), "must be at most 1024 characters"},
		{"api", `must start with "/"`},
		{"http://example.com/", `must start with "/"`},
		{"/a b", "must not contain spaces"},
		{"/a\n", ctrl},
		{"/a\r\nHost: evil", ctrl},
		{"/a\x00", ctrl},
		{"/%", "contains an invalid percent-encoding"},
		{"/%2", "contains an invalid percent-encoding"},
		{"/%zz", "contains an invalid percent-encoding"},
		{"/%2g", "contains an invalid percent-encoding"},
		{"/a?b", `must not contain a query ("?")`},
		{"/a#b", `contains an invalid character "#"; percent-encode it`},
		{"/é", `contains an invalid character "é"`},
		{`/a\b`, `contains an invalid character "\\"`},
		{`/a"b`, `contains an invalid character "\""`},
		{"/a<b>", `contains an invalid character "<"`},
		{"/a{b}", `contains an invalid character "{"`},
		{"/a|b", `contains an invalid character "|"`},
		{"/a^b", `contains an invalid character "^"`},
		{"/a`b", "contains an invalid character \"`\""},
		{"/[a]", `contains an invalid character "["`},
		{"/\xff", "must be valid UTF-8"},
	})
}

func TestURLPathQuery(t *testing.T) {
	check(t, URLPathQuery, []strCase{
		{"/", ""},
		{"/healthz", ""},
		{"/health?full=1&verbose", ""},
		{"/health?", ""},
		{"/a?b?c/d:e@f", ""},
		{"/a?x=%20", ""},
		{"", "is required"},
		{"?a=1", `must start with "/"`},
		{"/a?b c", "must not contain spaces"},
		{"/a?b#frag", `contains an invalid character "#"`},
		{"/a?%zz", "contains an invalid percent-encoding"},
		{"/a?b\n", ctrl},
	})
}

func TestAbsoluteURL(t *testing.T) {
	check(t, AbsoluteURL, []strCase{
		{"https://example.com", ""},
		{"http://example.com/", ""},
		{"https://example.com:8443/a/b?c=d&e=%20#frag", ""},
		{"https://[2001:db8::1]/", ""},
		{"https://192.0.2.1:443/", ""},
		{"HTTPS://EXAMPLE.COM/", ""},
		{"https://user:pass@example.com/", ""},
		{"https://example.com/" + strings.Repeat("p", 2028), ""},
		{"", "is required"},
		{"https://example.com/" + strings.Repeat("p", 2029), "must be at most 2048 characters"},
		{"ftp://example.com/", "must be an absolute URL with the http or https scheme"},
		{"javascript:alert(1)", "must be an absolute URL with the http or https scheme"},
		{"/relative/path", "must be an absolute URL with the http or https scheme"},
		{"example.com", "must be an absolute URL with the http or https scheme"},
		{"//example.com/", "must be an absolute URL with the http or https scheme"},
		{"http://", "must include a host"},
		{"http:///path", "must include a host"},
		{"http:example.com", "must include a host"},
		{"http://:80/", "must include a host"},
		{"http://example.com:0/", "must have a port between 1 and 65535"},
		{"http://example.com:65536/", "must have a port between 1 and 65535"},
		{"http://example.com:abc/", "must be a valid URL: invalid port"},
		{"http://example.com/%zz", "must be a valid URL: invalid URL escape"},
		{"https://ex ample.com/", "must not contain spaces"},
		{"https://example.com/ ", "must not contain spaces"},
		{"https://example.com/\n", ctrl},
		{"https://example.com/\r\nX: y", ctrl},
		{"https://exämple.com/", `contains an invalid character "ä"; percent-encode it`},
		{`https://example.com/"x`, `contains an invalid character "\""`},
		{`https://example.com\@evil.com/`, `contains an invalid character "\\"`},
		{"https://example.com/<script>", `contains an invalid character "<"`},
		{"https://example.com/\xff", "must be valid UTF-8"},
	})
}

func TestContentType(t *testing.T) {
	check(t, ContentType, []strCase{
		{"text/html", ""},
		{"application/json", ""},
		{"application/json; charset=utf-8", ""},
		{`text/plain;charset="utf-8"`, ""},
		{"application/vnd.api+json", ""},
		{"TEXT/HTML", ""},
		{"text/" + strings.Repeat("x", 123), ""},
		{"", "is required"},
		{"text/" + strings.Repeat("x", 124), "must be at most 128 characters"},
		{"text", "must be a media type of the form type/subtype"},
		{"text/", "must be a valid media type"},
		{"/html", "must be a valid media type"},
		{"text/html; charset", "must be a valid media type"},
		{"text/html; a=1; a=2", "must be a valid media type"},
		{"text/html extra", "must be a valid media type"},
		{"text/html\n", ctrl},
		{"text/html;\tcharset=utf-8", ctrl},
		{"text/html\x7f", ctrl},
		{"téxt/html", `contains an invalid character "é"`},
	})
}

// TestNoPanics feeds awkward inputs to every validator.
func TestNoPanics(t *testing.T) {
	inputs := []string{"", "\x00", "\xff", "%", "/", "*", "*.", ".", "-", ",", "?", "[", "::", "/%", "a/b/c", strings.Repeat("\xff", 300)}
	for _, in := range inputs {
		var e Errors
		for _, v := range stringValidators() {
			v.fn(&e, v.name, in)
		}
		Labels(&e, "labels", map[string]string{in: in})
		CIDRList(&e, "cidrs", []string{in}, -1)
		CIDRList(&e, "cidrs", []string{in, in}, 5)
		_ = e.Err()
	}
}
