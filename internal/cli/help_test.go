package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// helpCommands are every command line whose -h must print help and exit 0.
var helpCommands = [][]string{
	{"-h"},
	{"api", "-h"},
	{"migrate", "-h"},
	{"agent", "-h"},
	{"dev", "-h"},
	{"admin", "-h"},
	{"admin", "--help"},
	{"admin", "tenant", "-h"},
	{"admin", "tenant", "create", "-h"},
	{"admin", "tenant", "list", "-h"},
	{"admin", "token", "create", "-h"},
	{"admin", "token", "list", "-h"},
	{"admin", "token", "revoke", "-h"},
	{"admin", "node-group", "create", "-h"},
	{"admin", "node-group", "list", "-h"},
}

func help(t *testing.T, args ...string) string {
	t.Helper()
	var out bytes.Buffer
	if code := Main(args, &out, &out); code != 0 {
		t.Errorf("fulcrum %s: exit code %d, want 0:\n%s", strings.Join(args, " "), code, out.String())
	}
	if !strings.Contains(out.String(), "Usage") {
		t.Errorf("fulcrum %s: no usage:\n%s", strings.Join(args, " "), out.String())
	}
	return out.String()
}

// TestHelp: every command prints help with -h, names the environment variable
// of every flag that reads one, and never prints a secret taken from the
// environment.
func TestHelp(t *testing.T) {
	secrets := map[string]string{
		"FULCRUM_SECRET_KEY":   "c2VjcmV0LWtleS1ub3QtdG8tYmUtcHJpbnRlZA==",
		"FULCRUM_NODE_TOKEN":   "tok_x.node-secret-not-to-be-printed",
		"FULCRUM_DATABASE_URL": "postgres://fulcrum:db-password-not-to-be-printed@db/fulcrum",
	}
	for k, v := range secrets {
		t.Setenv(k, v)
	}
	var all strings.Builder
	for _, args := range helpCommands {
		out := help(t, args...)
		all.WriteString(out)
		for k, v := range secrets {
			if strings.Contains(out, v) {
				t.Errorf("fulcrum %s prints the value of %s:\n%s", strings.Join(args, " "), k, out)
			}
		}
	}

	// Each variable a flag reads is named in some -h.
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	read := regexp.MustCompile(`(?:env\(|Getenv\(|secretFlag\(fs, "[a-z-]+", )"(FULCRUM_[A-Z0-9_]+)"`)
	seen := 0
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range read.FindAllStringSubmatch(string(src), -1) {
			seen++
			if !strings.Contains(all.String(), "env "+m[1]) {
				t.Errorf("%s reads %s but no -h names it as (env %s)", f, m[1], m[1])
			}
		}
	}
	if seen < 10 {
		t.Errorf("found only %d environment variables read by flags: is the pattern stale?", seen)
	}

	// The API's and the agent's variables, each in its own command's help.
	for cmd, vars := range map[string][]string{
		"api":   {"FULCRUM_DATABASE_URL", "FULCRUM_API_ADDR", "FULCRUM_SECRET_KEY", "FULCRUM_SECRET_KEY_FILE", "FULCRUM_LOG_LEVEL", "FULCRUM_HAPROXY"},
		"agent": {"FULCRUM_ENDPOINT", "FULCRUM_NODE_TOKEN", "FULCRUM_NODE_NAME", "FULCRUM_NODE_GROUP", "FULCRUM_AGENT_STATE_DIR", "FULCRUM_HAPROXY", "FULCRUM_LOG_LEVEL"},
	} {
		out := help(t, cmd, "-h")
		for _, v := range vars {
			if !strings.Contains(out, "env "+v) {
				t.Errorf("fulcrum %s -h does not name %s", cmd, v)
			}
		}
	}
}
