package importrules

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
)

const module = "github.com/fulcrumlb/fulcrum"

// A rule binds the packages matching from (but not except): they never
// depend — directly or through other packages — on a package matching deny,
// and, when closed, on no package of Fulcrum's outside only. Patterns are
// relative to the module ("api/..." is api and every package under it) or,
// for other modules, full import paths.
type rule struct {
	doc    string // the file whose "Imports:" paragraph states the rule
	what   string // the rule in words
	from   []string
	except []string
	deny   []string
	only   []string
	closed bool
}

// testSupport are the packages only tests import.
var testSupport = []string{"internal/teststack", "internal/pgtest", "internal/testcerts", "internal/testenv",
	"internal/telemetry/otlptest", "provider/internal/acctest"}

var rules = []rule{
	{doc: "api/doc.go", what: "the API never imports the agent, keepalived, the provider, internal/cli or test stacks",
		from: []string{"api/..."},
		deny: append([]string{"dataplane/agent/...", "dataplane/keepalived/...", "provider/...", "internal/cli/..."}, testSupport...)},
	{doc: "api/store/store.go", what: "the store speaks no HTTP: never the API, api/problem, api/auth or api/reqcheck, nor the dataplane or the provider",
		from: []string{"api/store/..."},
		deny: []string{"api", "api/problem/...", "api/auth/...", "api/reqcheck/...", "dataplane/...", "provider/..."}},
	{doc: "dataplane/agent/doc.go", what: "the dataplane never imports the control plane (api/...), the provider, internal/cli or test stacks",
		from: []string{"dataplane/..."},
		deny: append([]string{"api/...", "provider/...", "internal/cli/..."}, testSupport...)},
	{doc: "dataplane/haproxy/doc.go", what: "dataplane/haproxy imports nothing of Fulcrum's",
		from: []string{"dataplane/haproxy/..."}, closed: true, only: []string{"dataplane/haproxy/..."}},
	{doc: "dataplane/keepalived/doc.go", what: "keepalived imports only internal helpers of Fulcrum's: no openapi, other dataplane packages, API or provider",
		from: []string{"dataplane/keepalived/..."}, closed: true, only: []string{"dataplane/keepalived/...", "internal/..."}},
	{doc: "provider/doc.go", what: "the provider imports only openapi, provider/... and internal/telemetry of Fulcrum's",
		from: []string{"provider/..."}, except: []string{"provider/internal/acctest"},
		closed: true, only: []string{"openapi/...", "provider/...", "internal/telemetry"}},
	{doc: "provider/doc.go", what: "a provider resource package imports only openapi and provider/internal/fulcrum of Fulcrum's",
		from: []string{"provider/internal/..."}, except: []string{"provider/internal/fulcrum", "provider/internal/acctest"},
		closed: true, only: []string{"openapi/...", "provider/internal/fulcrum"}},
	{doc: "openapi/doc.go", what: "openapi imports nothing of Fulcrum's outside openapi/",
		from: []string{"openapi/..."}, closed: true, only: []string{"openapi/..."}},
	{doc: "internal/pgtest/pgtest.go", what: "internal/pgtest imports only internal/pgcluster of Fulcrum's",
		from: []string{"internal/pgtest"}, closed: true, only: []string{"internal/pgcluster"}},
	{doc: "internal/teststack/teststack.go", what: "only tests import the test stacks and helpers: no program depends on them",
		from: []string{"..."}, except: testSupport, deny: testSupport},
	{doc: "internal/cli/cli.go", what: "only cmd/fulcrum imports internal/cli",
		from: []string{"..."}, except: []string{"cmd/fulcrum", "internal/cli"}, deny: []string{"internal/cli/..."}},
}

func init() {
	// Leaf helpers: nothing of Fulcrum's.
	for pkg, doc := range map[string]string{
		"internal/atomicfile": "internal/atomicfile/atomicfile.go",
		"internal/secretbox":  "internal/secretbox/secretbox.go",
		"internal/pgcluster":  "internal/pgcluster/pgcluster.go",
		"internal/telemetry":  "internal/telemetry/doc.go",
		"internal/testcerts":  "internal/testcerts/testcerts.go",
		"internal/testenv":    "internal/testenv/testenv.go",
	} {
		rules = append(rules, rule{doc: doc, what: pkg + " imports nothing of Fulcrum's", from: []string{pkg}, closed: true})
	}
}

// known are violations of the rules on the current main that other branches
// of the same work remove, as "<package> → <dependency>" (relative to the
// module). An entry that no longer matches fails the test: delete it.
var known = map[string]string{}

// pkg is what `go list -json` says of a package.
type pkg struct {
	ImportPath string
	Imports    []string
	Standard   bool
	Error      *struct{ Err string }
}

// graph is the production import graph: package → its direct imports.
type graph map[string][]string

func rel(path string) string {
	if path == module {
		return "."
	}
	return strings.TrimPrefix(path, module+"/")
}

func abs(pattern string) string {
	first, _, _ := strings.Cut(pattern, "/")
	if strings.Contains(first, ".") && first != "." && first != "..." {
		return pattern // another module's
	}
	if pattern == "..." {
		return module + "/..."
	}
	return module + "/" + pattern
}

// match reports whether import path p matches pattern (see rule).
func match(pattern, p string) bool {
	a := abs(pattern)
	if base, ok := strings.CutSuffix(a, "/..."); ok {
		return p == base || strings.HasPrefix(p, base+"/")
	}
	return p == a
}

func matchAny(patterns []string, p string) bool {
	return slices.ContainsFunc(patterns, func(pat string) bool { return match(pat, p) })
}

func ours(p string) bool { return p == module || strings.HasPrefix(p, module+"/") }

// chain returns the imports leading from one package to another (a shortest
// path), or nil when from does not depend on to.
func (g graph) chain(from, to string) []string {
	prev := map[string]string{from: ""}
	queue := []string{from}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		if p == to {
			var path []string
			for q := to; q != ""; q = prev[q] {
				path = append(path, q)
			}
			slices.Reverse(path)
			return path
		}
		for _, q := range g[p] {
			if _, seen := prev[q]; !seen {
				prev[q] = p
				queue = append(queue, q)
			}
		}
	}
	return nil
}

// deps lists every package p depends on, sorted.
func (g graph) deps(p string) []string {
	seen := map[string]bool{p: true}
	stack := []string{p}
	for len(stack) > 0 {
		q := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		for _, d := range g[q] {
			if !seen[d] {
				seen[d] = true
				stack = append(stack, d)
			}
		}
	}
	delete(seen, p)
	out := make([]string, 0, len(seen))
	for d := range seen {
		out = append(out, d)
	}
	sort.Strings(out)
	return out
}

// violation is one package depending on what a rule forbids.
type violation struct {
	key   string // "<package> → <dependency>", relative to the module
	chain []string
	rule  rule
}

func (v violation) String() string {
	parts := make([]string, len(v.chain))
	for i, p := range v.chain {
		parts[i] = rel(p)
	}
	return fmt.Sprintf("%s (imports: %s) — against %s: %s", v.key, strings.Join(parts, " → "), v.rule.doc, v.rule.what)
}

// check returns the violations of rules in g, for the module's packages pkgs.
func check(g graph, pkgs []string, rules []rule) []violation {
	var out []violation
	for _, p := range pkgs {
		for _, r := range rules {
			if !matchAny(r.from, p) || matchAny(r.except, p) {
				continue
			}
			for _, d := range g.deps(p) {
				bad := matchAny(r.deny, d)
				if r.closed && ours(d) && !matchAny(r.only, d) {
					bad = true
				}
				if bad {
					out = append(out, violation{key: rel(p) + " → " + rel(d), chain: g.chain(p, d), rule: r})
				}
			}
		}
	}
	return out
}

// load reads the module's production import graph.
func load(t *testing.T) (graph, []string, string) {
	t.Helper()
	root, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}").Output()
	if err != nil {
		t.Fatalf("go list -m: %v", err)
	}
	dir := strings.TrimSpace(string(root))
	cmd := exec.Command("go", "list", "-e", "-deps", "-json=ImportPath,Imports,Standard,Error", "./...")
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -deps: %v: %s", err, stderr.String())
	}
	g := graph{}
	var mine []string
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p pkg
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("decode go list: %v", err)
		}
		if p.Error != nil {
			t.Errorf("%s: %s", p.ImportPath, p.Error.Err)
		}
		g[p.ImportPath] = p.Imports
		if ours(p.ImportPath) {
			mine = append(mine, p.ImportPath)
		}
	}
	sort.Strings(mine)
	if len(mine) < 10 {
		t.Fatalf("go list found only %d packages of %s: %v", len(mine), module, mine)
	}
	return g, mine, dir
}

// Every package keeps the import rules its doc comment states.
func TestImportRules(t *testing.T) {
	g, pkgs, _ := load(t)
	seen := map[string]bool{}
	for _, v := range check(g, pkgs, rules) {
		if _, ok := known[v.key]; ok {
			if !seen[v.key] {
				t.Logf("known, to be removed: %s", v)
			}
			seen[v.key] = true
			continue
		}
		t.Errorf("forbidden import: %s", v)
	}
	for k, why := range known {
		if !seen[k] {
			t.Errorf("the allow-list entry %q (%s) matches no import any more: delete it from known in %s", k, why, "internal/importrules/importrules_test.go")
		}
	}
}

// Each rule is written down where it says: the package comment of its doc
// file states what the package imports ("Imports: …", or in the words of
// the package's owner, "It may import …", "It imports nothing of …").
func TestImportRulesAreDocumented(t *testing.T) {
	_, _, root := load(t)
	files := map[string]bool{}
	for _, r := range rules {
		files[r.doc] = true
	}
	for _, area := range []string{"api", "dataplane/agent", "dataplane/haproxy", "dataplane/keepalived", "provider", "openapi"} {
		files[area+"/doc.go"] = true
	}
	for f := range files {
		b, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		head, _, _ := strings.Cut(string(b), "\npackage ")
		if !strings.Contains(strings.ToLower(head), " import") {
			t.Errorf("%s: its package comment does not state what the package imports (an \"Imports:\" paragraph)", f)
		}
	}
}

// The checker itself: it finds a forbidden dependency through another
// package, names the chain, and respects except, only and the module's
// boundary.
func TestCheckFindsViolations(t *testing.T) {
	m := func(p string) string { return module + "/" + p }
	g := graph{
		m("api"):               {m("api/dryrun"), "net/http"},
		m("api/dryrun"):        {m("dataplane/agent")},
		m("dataplane/agent"):   {m("dataplane/haproxy"), m("openapi")},
		m("dataplane/haproxy"): {"golang.org/x/sys/unix"},
		m("openapi"):           {"github.com/labstack/echo/v4"},
		m("internal/cli"):      {m("api"), m("dataplane/agent")},
	}
	pkgs := []string{m("api"), m("api/dryrun"), m("dataplane/agent"), m("dataplane/haproxy"), m("internal/cli"), m("openapi")}
	rs := []rule{
		{doc: "api/doc.go", from: []string{"api/..."}, deny: []string{"dataplane/agent/..."}},
		{doc: "dataplane/haproxy/doc.go", from: []string{"dataplane/haproxy"}, closed: true},
		{doc: "dataplane/agent/doc.go", from: []string{"dataplane/..."}, except: []string{"dataplane/haproxy"}, closed: true,
			only: []string{"dataplane/...", "openapi"}},
		{doc: "x", from: []string{"..."}, except: []string{"internal/cli"}, deny: []string{"internal/cli"}},
	}
	var got []string
	for _, v := range check(g, pkgs, rs) {
		got = append(got, v.String())
	}
	want := []string{
		"api → dataplane/agent (imports: api → api/dryrun → dataplane/agent) — against api/doc.go: ",
		"api/dryrun → dataplane/agent (imports: api/dryrun → dataplane/agent) — against api/doc.go: ",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("violations:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
