package haproxy

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"
)

// splitConfigLine cuts one configuration line into words the way HAProxy
// 2.6's parse_line() does (section 2.2 of the configuration manual):
// spaces and tabs separate words, '#' outside quotes starts a comment,
// double quotes quote weakly (backslash escapes and environment variables
// still apply), single quotes quote strongly, and backslash escapes
// \\ \<space> \# \' \" \$ \n \r \t \xNN. Anything HAProxy would
// interpret beyond that, such as an unescaped '$' inside double quotes (an
// environment variable), an unterminated quote or a raw control character,
// is reported as an error: the renderer must never produce it.
func splitConfigLine(line string) ([]string, error) {
	var words []string
	var cur strings.Builder
	inWord, squote, dquote := false, false, false
	flush := func() {
		if inWord {
			words = append(words, cur.String())
			cur.Reset()
			inWord = false
		}
	}
	for i := 0; i < len(line); i++ {
		c := line[i]
		if c < 0x20 && c != '\t' || c == 0x7f {
			return nil, fmt.Errorf("raw control byte %#x at %d", c, i)
		}
		switch {
		case squote:
			if c == '\'' {
				squote = false
			} else {
				cur.WriteByte(c)
			}
		case c == '\\':
			inWord = true
			if i+1 >= len(line) {
				return nil, errors.New("backslash at the end of the line")
			}
			n := line[i+1]
			switch n {
			case '\\', ' ', '#', '\'', '"', '$':
				cur.WriteByte(n)
				i++
			case 'n':
				cur.WriteByte('\n')
				i++
			case 'r':
				cur.WriteByte('\r')
				i++
			case 't':
				cur.WriteByte('\t')
				i++
			case 'x':
				if i+3 >= len(line) {
					return nil, errors.New("short \\x escape")
				}
				v, err := strconv.ParseUint(line[i+2:i+4], 16, 8)
				if err != nil {
					return nil, fmt.Errorf("bad \\x escape at %d", i)
				}
				if v == 0 {
					return nil, errors.New(`\x00 escape`)
				}
				cur.WriteByte(byte(v))
				i += 3
			default:
				// Other combinations are left as is (e.g. \d in a regex),
				// but the renderer always escapes its backslashes.
				return nil, fmt.Errorf("unescaped backslash at %d", i)
			}
		case dquote:
			switch c {
			case '"':
				dquote = false
			case '$':
				return nil, fmt.Errorf("environment variable at %d", i)
			default:
				cur.WriteByte(c)
			}
		case c == '"':
			inWord, dquote = true, true
		case c == '\'':
			inWord, squote = true, true
		case c == '#':
			flush()
			return words, nil
		case c == ' ' || c == '\t':
			flush()
		default:
			inWord = true
			cur.WriteByte(c)
		}
	}
	if squote || dquote {
		return nil, errors.New("unterminated quote")
	}
	flush()
	return words, nil
}

// lineShape is what a line contributes to the structure of a config: its
// indentation (section header or directive), its keyword and how many words
// it has.
type lineShape struct {
	indented bool
	keyword  string
	words    int
}

func configShape(text []byte) ([]lineShape, error) {
	s := string(text)
	if !strings.HasSuffix(s, "\n") {
		return nil, errors.New("no final newline")
	}
	var out []lineShape
	for n, line := range strings.Split(strings.TrimSuffix(s, "\n"), "\n") {
		words, err := splitConfigLine(line)
		if err != nil {
			return nil, fmt.Errorf("line %d %q: %w", n+1, line, err)
		}
		sh := lineShape{indented: strings.HasPrefix(line, " "), words: len(words)}
		if len(words) > 0 {
			sh.keyword = words[0]
		}
		out = append(out, sh)
	}
	return out, nil
}

// fuzzField is a free-form string of the model that fuzzing replaces.
type fuzzField struct {
	name   string
	benign string
	set    func(c *Config, v string)
	// strict fields accept only ids, tokens, addresses and the like;
	// the others take free text.
	strict bool
}

func fuzzLB(c *Config) *LoadBalancer { return &c.LoadBalancers[0] }
func fuzzRule(c *Config, i int) *Rule {
	return &c.LoadBalancers[0].Listeners[1].Rules[i]
}
func fuzzPool(c *Config, id string) *Pool {
	for i := range c.LoadBalancers[0].Pools {
		if c.LoadBalancers[0].Pools[i].ID == id {
			return &c.LoadBalancers[0].Pools[i]
		}
	}
	panic("no pool " + id)
}

// fuzzBase returns a fresh model using every string field of the model.
func fuzzBase() Config {
	return Config{
		Global: Global{StatsSocket: "/run/haproxy.sock", ServerStateFile: "/var/lib/state", HardStopAfter: 1e9,
			PrometheusBind: netip.MustParseAddrPort("127.0.0.1:8405")},
		LoadBalancers: []LoadBalancer{{
			ID: "lb_1", VIP: netip.MustParseAddr("127.77.0.1"), Enabled: true,
			Listeners: []Listener{
				{ID: "lsn_tls", Protocol: "https", Port: 443, DefaultPoolID: "pool_rr", CertFiles: []string{"/c/a.pem", "/c/b.pem"},
					HSTS: &HSTS{MaxAgeSeconds: 60}, InsertHeaders: InsertHeaders{XForwardedFor: true, XForwardedProto: true, XForwardedPort: true, XRequestID: true}},
				{ID: "lsn_http", Protocol: "http", Port: 80, DefaultPoolID: "pool_rr",
					RateLimit: &RateLimit{Type: "requests", PerSecond: 10}, AllowedCIDRs: prefixes("10.0.0.0/8"),
					Rules: []Rule{
						{ID: "rule_a", Priority: 1, Conditions: []Condition{
							{Field: "host", Match: "exact", Values: []string{"a.example.com"}},
							{Field: "host", Match: "regex", Values: []string{"^a"}},
							{Field: "path", Match: "prefix", Values: []string{"/a"}},
							{Field: "path", Match: "regex", Values: []string{"^/a"}},
							{Field: "header", Match: "exact", Key: "X-A", Values: []string{"a"}},
							{Field: "query", Match: "contains", Key: "q", Values: []string{"a"}, Invert: true},
							{Field: "cookie", Match: "suffix", Key: "c", Values: []string{"a"}},
							{Field: "method", Match: "exact", Values: []string{"GET"}},
							{Field: "source_ip", Match: "exact", Values: []string{"10.0.0.0/8"}},
						}, Action: Action{Type: "forward", Pools: []WeightedPool{{PoolID: "pool_rr", Weight: 1}, {PoolID: "pool_hdr", Weight: 3}}}},
						{ID: "rule_b", Priority: 2, Action: Action{Type: "redirect", RedirectURL: "https://a.example.com/x"}},
						{ID: "rule_c", Priority: 3, Action: Action{Type: "redirect", RedirectPrefix: "https://b.example.com"}},
						{ID: "rule_d", Priority: 4, Action: Action{Type: "redirect", RedirectScheme: "https", RedirectHost: "c.example.com"}},
						{ID: "rule_e", Priority: 5, Action: Action{Type: "fixed_response", StatusCode: 200, ContentType: "text/plain", Body: "ok"}},
						{ID: "rule_f", Priority: 6, Action: Action{Type: "deny"}},
					}},
			},
			Pools: []Pool{
				{ID: "pool_rr", Protocol: "http", Algorithm: "url_param", HashKey: "p",
					Persistence: Persistence{Type: "cookie_insert", CookieName: "SRV", CookieTTLSeconds: 60},
					Monitor:     &Monitor{Type: "http", IntervalMS: 1000, TimeoutMS: 500, Rise: 1, Fall: 1, Method: "GET", Path: "/h", Host: "h.example.com", Expect: "200,204"},
					Members:     []Member{member("mbr_1", "10.0.0.1", 80, 1), member("mbr_2", "backend.example.com", 80, 1)}},
				{ID: "pool_hdr", Protocol: "http", Algorithm: "header", HashKey: "X-H",
					Persistence: Persistence{Type: "app_cookie", CookieName: "sid"},
					Members:     []Member{member("mbr_3", "10.0.0.3", 80, 1)}},
			},
		}},
	}
}

func fuzzFields() []fuzzField {
	cond := func(i int) func(c *Config) *Condition {
		return func(c *Config) *Condition { return &fuzzRule(c, 0).Conditions[i] }
	}
	var fields []fuzzField
	add := func(name, benign string, set func(c *Config, v string)) {
		strict := true
		for _, free := range []string{"global.", "cert_files", ".values", "redirect_url", "redirect_prefix", "content_type", "body", "monitor.path", "monitor.host"} {
			if strings.Contains(name, free) {
				strict = false
			}
		}
		if strings.Contains(name, "method/") || strings.Contains(name, "source_ip/") {
			strict = true
		}
		fields = append(fields, fuzzField{name: name, benign: benign, set: set, strict: strict})
	}
	add("global.stats_socket", "/run/haproxy.sock", func(c *Config, v string) { c.Global.StatsSocket = v })
	add("global.server_state_file", "/var/lib/state", func(c *Config, v string) { c.Global.ServerStateFile = v })
	add("lb.id", "lb_1", func(c *Config, v string) { fuzzLB(c).ID = v })
	add("listener.id", "lsn_tls", func(c *Config, v string) { fuzzLB(c).Listeners[0].ID = v })
	add("listener.cert_files[0]", "/c/a.pem", func(c *Config, v string) { fuzzLB(c).Listeners[0].CertFiles[0] = v })
	add("listener.cert_files[1]", "/c/b.pem", func(c *Config, v string) { fuzzLB(c).Listeners[0].CertFiles[1] = v })
	add("rule.id", "rule_a", func(c *Config, v string) { fuzzRule(c, 0).ID = v })
	for i, f := range fuzzBase().LoadBalancers[0].Listeners[1].Rules[0].Conditions {
		name := fmt.Sprintf("condition[%d](%s/%s)", i, f.Field, f.Match)
		get := cond(i)
		add(name+".values[0]", f.Values[0], func(c *Config, v string) { get(c).Values[0] = v })
		add(name+".values[1]", f.Values[0], func(c *Config, v string) { get(c).Values = append(get(c).Values, v) })
		if f.Key != "" {
			add(name+".key", f.Key, func(c *Config, v string) { get(c).Key = v })
		}
	}
	add("action.redirect_url", "https://a.example.com/x", func(c *Config, v string) { fuzzRule(c, 1).Action.RedirectURL = v })
	add("action.redirect_prefix", "https://b.example.com", func(c *Config, v string) { fuzzRule(c, 2).Action.RedirectPrefix = v })
	add("action.redirect_scheme", "https", func(c *Config, v string) { fuzzRule(c, 3).Action.RedirectScheme = v })
	add("action.redirect_host", "c.example.com", func(c *Config, v string) { fuzzRule(c, 3).Action.RedirectHost = v })
	add("action.content_type", "text/plain", func(c *Config, v string) { fuzzRule(c, 4).Action.ContentType = v })
	add("action.body", "ok", func(c *Config, v string) { fuzzRule(c, 4).Action.Body = v })
	add("action.pools[0].pool_id", "pool_rr", func(c *Config, v string) { fuzzRule(c, 0).Action.Pools[0].PoolID = v })
	add("pool.hash_key(url_param)", "p", func(c *Config, v string) { fuzzPool(c, "pool_rr").HashKey = v })
	add("pool.hash_key(header)", "X-H", func(c *Config, v string) { fuzzPool(c, "pool_hdr").HashKey = v })
	add("pool.cookie_name(insert)", "SRV", func(c *Config, v string) { fuzzPool(c, "pool_rr").Persistence.CookieName = v })
	add("pool.cookie_name(app)", "sid", func(c *Config, v string) { fuzzPool(c, "pool_hdr").Persistence.CookieName = v })
	add("monitor.method", "GET", func(c *Config, v string) { fuzzPool(c, "pool_rr").Monitor.Method = v })
	add("monitor.path", "/h", func(c *Config, v string) { fuzzPool(c, "pool_rr").Monitor.Path = v })
	add("monitor.host", "h.example.com", func(c *Config, v string) { fuzzPool(c, "pool_rr").Monitor.Host = v })
	add("monitor.expect", "200,204", func(c *Config, v string) { fuzzPool(c, "pool_rr").Monitor.Expect = v })
	add("member.id", "mbr_1", func(c *Config, v string) { fuzzPool(c, "pool_rr").Members[0].ID = v })
	add("member.address", "backend.example.com", func(c *Config, v string) { fuzzPool(c, "pool_rr").Members[1].Address = v })
	return fields
}

// enumField is a string field of the model with a fixed set of values.
type enumField struct {
	name    string
	allowed []string
	set     func(c *Config, v string)
}

func enumFields() []enumField {
	l := func(c *Config) *Listener { return &fuzzLB(c).Listeners[1] }
	return []enumField{
		{"listener.protocol", []string{"tcp", "http", "https"}, func(c *Config, v string) { l(c).Protocol = v }},
		{"listener.rate_limit.type", []string{"requests", "connections"}, func(c *Config, v string) { l(c).RateLimit.Type = v }},
		{"condition.field", []string{"host", "path", "header", "query", "cookie", "method", "source_ip"}, func(c *Config, v string) { fuzzRule(c, 0).Conditions[0].Field = v }},
		{"condition.match", []string{"exact", "prefix", "suffix", "contains", "regex"}, func(c *Config, v string) { fuzzRule(c, 0).Conditions[4].Match = v }},
		{"action.type", []string{"forward", "redirect", "fixed_response", "deny"}, func(c *Config, v string) { fuzzRule(c, 4).Action.Type = v }},
		{"pool.protocol", []string{"tcp", "http"}, func(c *Config, v string) { fuzzPool(c, "pool_hdr").Protocol = v }},
		{"pool.algorithm", []string{"round_robin", "static_round_robin", "least_connections", "source_ip", "uri", "url_param", "header", "random", "first"},
			func(c *Config, v string) { fuzzPool(c, "pool_hdr").Algorithm = v }},
		{"pool.persistence.type", []string{"", "none", "source_ip", "cookie_insert", "cookie_rewrite", "cookie_prefix", "app_cookie"},
			func(c *Config, v string) { fuzzPool(c, "pool_hdr").Persistence.Type = v }},
		{"pool.proxy_protocol", []string{"", "none", "v1", "v2"}, func(c *Config, v string) { fuzzPool(c, "pool_hdr").ProxyProtocol = v }},
		{"monitor.type", []string{"tcp", "http", "https"}, func(c *Config, v string) { fuzzPool(c, "pool_rr").Monitor.Type = v }},
	}
}

// benignFor returns the benign value standing for v in field f: empty
// stays empty (an empty optional value leaves words out), and an exact
// host keeps its wildcard form (a wildcard is matched by suffix, on its own
// acl line).
func benignFor(f fuzzField, v string) string {
	switch {
	case v == "":
		return ""
	case strings.Contains(f.name, "(host/exact)") && strings.HasPrefix(v, "*."):
		return "*.example.com"
	}
	return f.benign
}

var benignShapes sync.Map // field names and benign values -> []lineShape

// checkNoInjection renders the base model with v in every field of fs and,
// if that succeeds, checks that the output has exactly the shape of the
// same model with benign values.
func checkNoInjection(t *testing.T, fs []fuzzField, v string) {
	t.Helper()
	c := fuzzBase()
	for _, f := range fs {
		f.set(&c, v)
	}
	got, err := Render(c)
	if err != nil {
		return
	}
	names := make([]string, len(fs))
	for i, f := range fs {
		names[i] = f.name
	}
	what := strings.Join(names, ",")
	gotShape, err := configShape(got)
	if err != nil {
		t.Fatalf("%s=%q: %v\n%s", what, v, err, got)
	}

	key := what
	for _, f := range fs {
		key += "\x00" + benignFor(f, v)
	}
	var wantShape []lineShape
	if s, ok := benignShapes.Load(key); ok {
		wantShape = s.([]lineShape)
	} else {
		b := fuzzBase()
		for _, f := range fs {
			f.set(&b, benignFor(f, v))
		}
		text, err := Render(b)
		if err != nil {
			t.Fatalf("%s: benign model failed: %v", what, err)
		}
		if wantShape, err = configShape(text); err != nil {
			t.Fatalf("%s benign: %v", what, err)
		}
		benignShapes.Store(key, wantShape)
	}

	if !slices.Equal(gotShape, wantShape) {
		for i := range min(len(gotShape), len(wantShape)) {
			if gotShape[i] != wantShape[i] {
				t.Fatalf("%s=%q changes line %d: %+v, benign %+v\n%s", what, v, i+1, gotShape[i], wantShape[i], got)
			}
		}
		t.Fatalf("%s=%q changes the number of lines: %d, benign %d\n%s", what, v, len(gotShape), len(wantShape), got)
	}
}

func FuzzRenderNoInjection(f *testing.F) {
	seeds := []string{
		"", "a", "x\ny", "x\r\ny", "x\x00y", "a b", "a\tb", `a"b`, `a\"b`, `a\`, "a'b", "'", `"`, "#", "a #b",
		"$HOME", "${HOME}", `\$x`, "%[src]", "%%", "%{+Q}o", "-f /etc/passwd", "-m reg", "--", "-i",
		"if", "{ always_true }", "x if TRUE", "a)", "a),hdr(b", "a,b", "(", ")", "\\x41", "\\n",
		"unix@/tmp/sock", "ipv4@1.2.3.4", "1.2.3.4", "::1", "[::1]", "*.example.com", "*.", ".",
		"\u2028", "\u0085", "\xff\xfe", "é", "200", "200-399", "100,599", "600", "2OO",
		"https", "HTTP://", "tcp", "http", "requests", "connections", "header", "regex", "deny", "forward",
		"fixed_response", "source_ip", "method", "app_cookie", "cookie_insert", "v2", "url_param", "first", "lsn_tls", "pool_hdr", "pool_nope", "mbr_2", "GET", "get me", "/ok", "/a b",
		strings.Repeat("x", 300), "\n\nbackend evil\n  server x 1.2.3.4:80",
		"\" \n frontend evil", "' # \\ \" $ %",
	}
	fields := fuzzFields()
	var freeText []fuzzField
	for _, f := range fields {
		if !f.strict {
			freeText = append(freeText, f)
		}
	}
	enums := enumFields()
	// which selects the field v goes into: a string field, an enum field,
	// or (the last choice) every free-text field at once.
	choices := len(fields) + len(enums) + 1
	for _, s := range seeds {
		for which := range choices {
			f.Add(uint8(which), s)
		}
	}
	f.Fuzz(func(t *testing.T, which uint8, v string) {
		// Length adds nothing to the structure of a value and long inputs
		// make minimization crawl (TestRenderErrors covers size limits).
		if len(v) > 1024 {
			v = v[:1024]
		}
		switch i := int(which) % choices; {
		case i < len(fields):
			checkNoInjection(t, fields[i:i+1], v)
		case i < len(fields)+len(enums):
			// An enum changes the structure legitimately; only its known
			// values may render.
			e := enums[i-len(fields)]
			c := fuzzBase()
			e.set(&c, v)
			if _, err := Render(c); err == nil && !slices.Contains(e.allowed, v) {
				t.Fatalf("%s=%q rendered; allowed: %q", e.name, v, e.allowed)
			}
		default:
			checkNoInjection(t, freeText, v)
		}
		// Round trips of the escaping helpers.
		if w, err := quoteWord(v); err == nil {
			words, err := splitConfigLine("k " + w)
			if err != nil || len(words) != 2 || words[1] != v {
				t.Fatalf("quoteWord(%q) = %s reads back as %q, %v", v, w, words, err)
			}
		} else if checkText(v) == nil {
			t.Fatalf("quoteWord(%q) failed on valid text: %v", v, err)
		}
		if w, err := quoteBody(v); err == nil {
			words, err := splitConfigLine("k " + w)
			if err != nil || len(words) != 2 || words[1] != v {
				t.Fatalf("quoteBody(%q) = %s reads back as %q, %v", v, w, words, err)
			}
			if !utf8.ValidString(w) {
				t.Fatalf("quoteBody(%q) = %q is not valid UTF-8", v, w)
			}
		} else if v != "" && !strings.Contains(v, "\x00") {
			t.Fatalf("quoteBody(%q): %v", v, err)
		}
		if w, err := fetchWithArg("req.hdr", v); err == nil {
			words, err := splitConfigLine("k " + w)
			if err != nil || len(words) != 2 {
				t.Fatalf("fetchWithArg(%q) = %s reads back as %q, %v", v, w, words, err)
			}
			arg, err := sampleArg(words[1], "req.hdr")
			if err != nil || arg != v {
				t.Fatalf("fetchWithArg(%q) = %s: argument reads back as %q, %v", v, w, arg, err)
			}
		}
		if w, err := quoteLogFormat(v); err == nil {
			words, err := splitConfigLine("k " + w)
			if err != nil || len(words) != 2 || logFormatLiteral(words[1]) != v {
				t.Fatalf("quoteLogFormat(%q) = %s reads back as %q, %v", v, w, words, err)
			}
		}
	})
}

// sampleArg returns the single argument of fetch(arg) as HAProxy's argument
// parser reads it: plain up to ')', or double-quoted with \\ and \".
func sampleArg(word, fetch string) (string, error) {
	rest, ok := strings.CutPrefix(word, fetch+"(")
	if !ok {
		return "", errors.New("not a call of " + fetch)
	}
	if !strings.HasPrefix(rest, `"`) {
		arg, tail, ok := strings.Cut(rest, ")")
		if !ok || tail != "" || strings.ContainsAny(arg, `,'"\ `) {
			return "", fmt.Errorf("bad plain argument %q", rest)
		}
		return arg, nil
	}
	var b strings.Builder
	for i := 1; i < len(rest); i++ {
		switch c := rest[i]; c {
		case '\\':
			if i+1 >= len(rest) {
				return "", errors.New("dangling backslash")
			}
			b.WriteByte(rest[i+1])
			i++
		case '"':
			if rest[i+1:] != ")" {
				return "", fmt.Errorf("trailing garbage %q", rest[i+1:])
			}
			return b.String(), nil
		default:
			b.WriteByte(c)
		}
	}
	return "", errors.New("unterminated quoted argument")
}

// logFormatLiteral decodes a log-format string made only of literal text
// and "%%"; anything else is returned marked so that it cannot match.
func logFormatLiteral(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '%' {
			if i+1 < len(s) && s[i+1] == '%' {
				b.WriteByte('%')
				i++
				continue
			}
			return "\x00not a literal"
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func TestSplitConfigLine(t *testing.T) {
	cases := []struct {
		line string
		want []string
	}{
		{`  acl a hdr(x) -m str -- "a b" c # comment`, []string{"acl", "a", "hdr(x)", "-m", "str", "--", "a b", "c"}},
		{`x "a\"b\\c\$d" 'e\f'`, []string{"x", `a"b\c$d`, `e\f`}},
		{`x "\n\r\t\x41"`, []string{"x", "\n\r\tA"}},
		{`x a\ b`, []string{"x", "a b"}},
	}
	for _, c := range cases {
		got, err := splitConfigLine(c.line)
		if err != nil || !slices.Equal(got, c.want) {
			t.Errorf("splitConfigLine(%q) = %q, %v; want %q", c.line, got, err, c.want)
		}
	}
	for _, bad := range []string{`x "$HOME"`, `x "a`, `x 'a`, "x \"a\nb\"", `x \q`} {
		if got, err := splitConfigLine(bad); err == nil {
			t.Errorf("splitConfigLine(%q) = %q, want an error", bad, got)
		}
	}
}
