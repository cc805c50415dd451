package haproxy

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const checkDefaults = `global
    maxconn 4000
defaults
    mode http
    timeout connect 2s
    timeout client 10s
    timeout server 10s
`

func TestCheckBrokenConfigs(t *testing.T) {
	bin := htBinary(t)
	cases := []struct {
		name string
		cfg  string
		want []Alert // Message is matched as a substring
	}{
		{
			name: "unknown keyword in a backend",
			cfg: checkDefaults + `frontend lsn_a
    bind 127.0.0.1:28080
    default_backend pool_a
backend pool_a
    balance roundrobin
    bogus_directive on
`,
			want: []Alert{{Line: 13, Section: "backend pool_a", Message: "unknown keyword 'bogus_directive'"}},
		},
		{
			name: "bad server address",
			cfg: checkDefaults + `backend pool_a
    server mbr_1 127.0.0.1:notaport
`,
			want: []Alert{{Line: 9, Section: "backend pool_a", Server: "mbr_1", Message: "mbr_1"}},
		},
		{
			name: "several alerts, bad action and invalid port",
			cfg: checkDefaults + `frontend lsn_a
    bind 127.0.0.1:99999
    http-request bogus-action
`,
			want: []Alert{
				{Line: 9, Section: "frontend lsn_a", Message: "invalid port '99999'"},
				{Line: 10, Section: "frontend lsn_a", Message: "but got 'bogus-action'"},
			},
		},
		{
			name: "missing backend (no line, named proxy)",
			cfg: checkDefaults + `frontend lsn_q
    bind 127.0.0.1:28081
    use_backend pool_nope if { path_beg /a }
`,
			want: []Alert{{Line: 0, Section: "frontend lsn_q", Message: "unable to find required use_backend: 'pool_nope'"}},
		},
		{
			name: "duplicate frontend",
			cfg: checkDefaults + `frontend lsn_dup
    bind 127.0.0.1:28082
frontend lsn_dup
    bind 127.0.0.1:28083
`,
			want: []Alert{{Line: 10, Section: "frontend lsn_dup", Message: "has the same name"}},
		},
		{
			name: "track of a missing server",
			cfg: checkDefaults + `backend pool_t
    server mbr_1 127.0.0.1:1
backend pool_c
    server mbr_c 127.0.0.1:1 track pool_t/mbr_zz
`,
			want: []Alert{{Line: 11, Section: "backend pool_c", Server: "mbr_c", Message: "unable to find required server 'mbr_zz'"}},
		},
		{
			name: "mode mismatch names the frontend",
			cfg: checkDefaults + `frontend lsn_h
    bind 127.0.0.1:28084
    use_backend pool_tcp
backend pool_tcp
    mode tcp
    server mbr_1 127.0.0.1:1
`,
			want: []Alert{{Line: 8, Section: "frontend lsn_h", Message: "incompatible tcp backend 'pool_tcp'"}},
		},
		{
			name: "global section",
			cfg:  "global\n    maxconn 4000\n    bogus_global_kw 1\n",
			want: []Alert{{Line: 3, Section: "global", Message: "bogus_global_kw"}},
		},
	}
	dir := t.TempDir()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "_")+".cfg")
			if err := os.WriteFile(path, []byte(tc.cfg), 0o644); err != nil {
				t.Fatal(err)
			}
			err := Check(htCtx(t, 30*time.Second), bin, path)
			var ce *CheckError
			if !errors.As(err, &ce) {
				t.Fatalf("Check = %v; want *CheckError", err)
			}
			if !strings.Contains(ce.Output, "[ALERT]") {
				t.Errorf("Output lacks HAProxy's text: %q", ce.Output)
			}
			if len(ce.Alerts) != len(tc.want) {
				t.Fatalf("alerts:\n%s\nwant %d\noutput:\n%s", alertList(ce.Alerts), len(tc.want), ce.Output)
			}
			for i, w := range tc.want {
				g := ce.Alerts[i]
				if g.Line != w.Line || g.Section != w.Section || g.Server != w.Server || !strings.Contains(g.Message, w.Message) {
					t.Errorf("alert %d = %#v\nwant %#v", i, g, w)
				}
				if strings.Contains(g.Message, path) || strings.HasPrefix(g.Message, "config :") {
					t.Errorf("alert %d message keeps HAProxy's prefixes: %q", i, g.Message)
				}
			}
			if msg := err.Error(); !strings.Contains(msg, tc.want[0].Section) {
				t.Errorf("Error() = %q; want the section named", msg)
			}
		})
	}
}

func alertList(as []Alert) string {
	var b strings.Builder
	for _, a := range as {
		b.WriteString("  ")
		b.WriteString(a.String())
		b.WriteString("\n")
	}
	return b.String()
}

func TestCheckValidConfig(t *testing.T) {
	bin := htBinary(t)
	path := filepath.Join(t.TempDir(), "ok.cfg")
	cfg := checkDefaults + "frontend lsn_a\n    bind 127.0.0.1:28080\n    default_backend pool_a\nbackend pool_a\n    server mbr_1 127.0.0.1:8080\n"
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Check(htCtx(t, 30*time.Second), bin, path); err != nil {
		t.Fatal(err)
	}
}

func TestCheckCannotRun(t *testing.T) {
	err := Check(htCtx(t, 5*time.Second), filepath.Join(t.TempDir(), "no-haproxy"), "/nonexistent.cfg")
	var ce *CheckError
	if err == nil || errors.As(err, &ce) {
		t.Fatalf("Check with a missing binary = %v; want a plain error", err)
	}
	// A missing config file is HAProxy's alert.
	bin := htBinary(t)
	err = Check(htCtx(t, 30*time.Second), bin, "/nonexistent/haproxy.cfg")
	if !errors.As(err, &ce) || len(ce.Alerts) != 1 || !strings.Contains(ce.Alerts[0].Message, "Cannot open configuration file") {
		t.Fatalf("Check of a missing file = %v", err)
	}
}

func TestCheckParseAlerts(t *testing.T) {
	// The config file cannot be read here: sections come from the messages.
	out := `[NOTICE]   (1234) : haproxy version is 2.6.12-1+deb12u4
[ALERT]    (1234) : config : parsing [/tmp/x.cfg:12] : 'server mbr_1' : invalid address: 'x' in 'x'
[ALERT]    (1234) : config : Proxy 'pool_x': unable to find required default_backend: 'pool_z'.
[ALERT]    (1234) : config : Proxy 'lsn_y', server 'mbr_2' [/tmp/x.cfg:40] verify is enabled by default but no CA file specified.
[ALERT]    (1234) : config : [/tmp/x.cfg:18] : 'server pool_c/mbr_c' : could not resolve address 'nosuchhost.invalid'.
[WARNING]  (1234) : config : missing timeouts for frontend 'lsn_q'.
   | While not properly invalid, you will certainly encounter various problems
[ALERT]    (1234) : Binding [/tmp/x.cfg:9] for frontend lsn_b: cannot bind socket (Address already in use) for [127.0.0.1:28099]
[ALERT]    (1234) : config : parsing [/tmp/x.cfg:5] : 'bind 127.0.0.1:1234' in section 'frontend' : unable to stat SSL certificate from file '/x.pem' : No such file or directory.
[ALERT]    (1234) : config : http frontend 'lsn_q' (/tmp/x.cfg:8) tries to use incompatible tcp backend 'pool_tcp' (/tmp/x.cfg:13) in a 'use_backend' rule (see 'mode').
[ALERT]    (1234) : config : long message
   | second line
[ALERT]    (1234) : config : Error(s) found in configuration file : /tmp/x.cfg
[ALERT]    (1234) : config : Fatal errors found in configuration.
`
	got := parseAlerts(out, "/tmp/x.cfg")
	want := []Alert{
		{Line: 12, Server: "mbr_1", Message: "'server mbr_1' : invalid address: 'x' in 'x'"},
		{Section: "backend pool_x", Message: "Proxy 'pool_x': unable to find required default_backend: 'pool_z'."},
		{Line: 40, Section: "frontend lsn_y", Server: "mbr_2", Message: "Proxy 'lsn_y', server 'mbr_2' [line 40] verify is enabled"},
		{Line: 18, Section: "backend pool_c", Server: "mbr_c", Message: "'server pool_c/mbr_c' : could not resolve address"},
		{Line: 9, Section: "frontend lsn_b", Message: "Binding [line 9] for frontend lsn_b: cannot bind socket"},
		{Line: 5, Message: "'bind 127.0.0.1:1234' in section 'frontend' : unable to stat SSL certificate"},
		{Line: 8, Section: "frontend lsn_q", Message: "http frontend 'lsn_q' (line 8) tries to use"},
		{Message: "long message\nsecond line"},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d alerts:\n%s", len(got), alertList(got))
	}
	for i, w := range want {
		g := got[i]
		if g.Line != w.Line || g.Section != w.Section || g.Server != w.Server || !strings.HasPrefix(g.Message, w.Message) {
			t.Errorf("alert %d = %#v\nwant %#v", i, g, w)
		}
	}

	// Only summaries: they are kept.
	only := "[ALERT]    (1) : config : Fatal errors found in configuration.\n"
	if got := parseAlerts(only, ""); len(got) != 1 || got[0].Message != "Fatal errors found in configuration." {
		t.Fatalf("summary only: %+v", got)
	}
	// "[127.0.0.1:28099]" is not a line of the config file.
	if got := parseAlerts("[ALERT] (1) : cannot bind [127.0.0.1:28099]\n", "/tmp/x.cfg"); len(got) != 1 || got[0].Line != 0 {
		t.Fatalf("address taken for a line: %+v", got)
	}
}

func TestCheckIndexConfig(t *testing.T) {
	idx := indexConfig([]byte("# c\nglobal\n  maxconn 1\n\ndefaults web\n  mode http\nfrontend lsn_a # x\n  bind :1\nbackend pool_b\n  server mbr_1 1.2.3.4:80\nlisten lb_c\n"))
	for line, want := range map[int]string{1: "", 2: "global", 3: "global", 5: "defaults web", 8: "frontend lsn_a", 10: "backend pool_b", 11: "listen lb_c", 99: "listen lb_c"} {
		if got := idx.sectionAt(line); got != want {
			t.Errorf("sectionAt(%d) = %q; want %q", line, got, want)
		}
	}
	for name, want := range map[string]string{"lsn_a": "frontend", "pool_b": "backend", "lb_c": "listen", "pool_zz": "backend", "lsn_zz": "frontend", "other": "proxy"} {
		if got := idx.kindOf(name); got != want {
			t.Errorf("kindOf(%q) = %q; want %q", name, got, want)
		}
	}
}
