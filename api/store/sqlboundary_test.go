package store

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// sqlBoundaryAllowed are files that may run SQL outside the store: none.
var sqlBoundaryAllowed = map[string]bool{}

// sqlBoundarySkipped are trees that talk to Postgres for their own reasons
// (test databases, clusters) or are not Fulcrum code.
var sqlBoundarySkipped = []string{"api/store/", "internal/pgtest/", "internal/pgcluster/", "tools/", "vendor/", "node_modules/"}

// sqlLiteral matches SQL statements in string literals (upper case, as the
// project writes SQL).
var sqlLiteral = regexp.MustCompile(`\bSELECT\s+[\w*(]|\bINSERT\s+INTO\b|\bUPDATE\s+\w+\s+SET\b|\bDELETE\s+FROM\b|\bLISTEN\s+\w|\bpg_notify\(|\bpg_advisory`)

// sqlCalls are the pgx methods that run SQL; a call with a context and a
// statement (two arguments or more) outside the store is a query.
var sqlCalls = map[string]bool{"Exec": true, "Query": true, "QueryRow": true, "SendBatch": true, "CopyFrom": true}

// storeEscapes are the store's methods that hand out pgx handles: tests only.
var storeEscapes = map[string]bool{"PoolForTests": true}

// TestNoSQLOutsideStore enforces that api/store owns every SQL statement:
// no other non-test Go file of the module imports pgx, runs Exec/Query/
// QueryRow with a statement, reaches for the store's pgx handles, or holds
// an SQL statement in a string literal.
func TestNoSQLOutsideStore(t *testing.T) {
	root := moduleRoot(t)
	var problems []string
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel := filepath.ToSlash(strings.TrimPrefix(path, root+string(filepath.Separator)))
		if d.IsDir() {
			if strings.HasPrefix(d.Name(), ".") && path != root {
				return filepath.SkipDir
			}
			for _, s := range sqlBoundarySkipped {
				if rel+"/" == s {
					return filepath.SkipDir
				}
			}
			// Nested modules (the tools) are not this module's code.
			if path != root {
				if _, err := os.Stat(filepath.Join(path, "go.mod")); err == nil {
					return filepath.SkipDir
				}
			}
			return nil
		}
		if !strings.HasSuffix(rel, ".go") || strings.HasSuffix(rel, "_test.go") || sqlBoundaryAllowed[rel] {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.ParseComments)
		if err != nil {
			return err
		}
		if ast.IsGenerated(f) {
			return nil
		}
		at := func(n ast.Node, format string, args ...any) {
			p := fset.Position(n.Pos())
			problems = append(problems, rel+":"+strconv.Itoa(p.Line)+": "+fmt.Sprintf(format, args...))
		}
		for _, imp := range f.Imports {
			if p, _ := strconv.Unquote(imp.Path.Value); strings.HasPrefix(p, "github.com/jackc/pgx") {
				at(imp, "imports %s: only api/store talks to Postgres", p)
			}
		}
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.BasicLit:
				if n.Kind != token.STRING {
					return true
				}
				s, err := strconv.Unquote(n.Value)
				if err != nil {
					return true
				}
				if m := sqlLiteral.FindString(s); m != "" {
					at(n, "SQL in a string literal (%q): move the statement into api/store", m)
				}
			case *ast.CallExpr:
				sel, ok := n.Fun.(*ast.SelectorExpr)
				if !ok {
					return true
				}
				switch {
				case sqlCalls[sel.Sel.Name] && len(n.Args) >= 2:
					at(n, ".%s(ctx, statement, …): only api/store runs SQL", sel.Sel.Name)
				case storeEscapes[sel.Sel.Name]:
					at(n, ".%s(): the store's pgx handles are for tests (and the snapshot code until it moves)", sel.Sel.Name)
				}
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Error(p)
	}
}

// TestSQLBoundaryDetects keeps the scanner honest: each sample must be caught.
func TestSQLBoundaryDetects(t *testing.T) {
	for _, s := range []string{"SELECT * FROM nodes", "select 1; SELECT id FROM x", "INSERT INTO t (a) VALUES (1)",
		"UPDATE nodes SET x = 1", "DELETE FROM tokens WHERE id = $1", "LISTEN fulcrum_revision"} {
		if sqlLiteral.FindString(s) == "" {
			t.Errorf("%q is not detected as SQL", s)
		}
	}
	for _, s := range []string{"Select a node group", "update the listener", "deleted from the pool"} {
		if m := sqlLiteral.FindString(s); m != "" {
			t.Errorf("%q is detected as SQL (%q)", s, m)
		}
	}
}

func moduleRoot(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && strings.Contains(string(b), "module github.com/fulcrumlb/fulcrum\n") {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("module root not found")
		}
		dir = parent
	}
}
