// Package testenv finds the programs tests run for real (HAProxy,
// keepalived, iproute2) and fails the test when one is missing, saying how
// to install it: a test that skips silently when HAProxy is not there proves
// nothing, and `make test` must not pass without having run it.
//
// FULCRUM_ALLOW_SKIP=1 turns these failures into skips, for a quick run on a
// machine without the programs; under CI (CI set and not "false" or "0") it
// is ignored and a missing program always fails. Skips for what a machine
// may honestly refuse (network namespaces without root, say) are the tests'
// own, with their reason.
//
// Imports: nothing of Fulcrum's; only tests import it (internal/importrules
// enforces both).
package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// sbinDirs are searched after PATH: Debian installs haproxy and keepalived
// in /usr/sbin, which an unprivileged user's PATH often lacks.
var sbinDirs = []string{"/usr/local/sbin", "/usr/sbin", "/sbin"}

// Find returns the path of the program name: on PATH, else in an sbin
// directory.
func Find(name string) (string, error) {
	p, err := exec.LookPath(name)
	if err == nil {
		return p, nil
	}
	for _, d := range sbinDirs {
		q := filepath.Join(d, name)
		if fi, serr := os.Stat(q); serr == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return q, nil
		}
	}
	return "", err
}

// AllowSkip reports whether a missing program skips the test rather than
// failing it: FULCRUM_ALLOW_SKIP=1, outside CI.
func AllowSkip() bool {
	return os.Getenv("FULCRUM_ALLOW_SKIP") == "1" && !inCI()
}

func inCI() bool {
	switch os.Getenv("CI") {
	case "", "0", "false":
		return false
	}
	return true
}

// RequireBinary returns the path of the program name, or ends the test: a
// failure by default (a skip with FULCRUM_ALLOW_SKIP=1 outside CI), with
// install as the way to get it ("apt-get install haproxy").
func RequireBinary(tb testing.TB, name, install string) string {
	tb.Helper()
	p, err := Find(name)
	if err == nil {
		return p
	}
	msg := name + " not found: install it (" + install + ") or run with FULCRUM_ALLOW_SKIP=1"
	if AllowSkip() {
		tb.Skip(msg)
		return ""
	}
	tb.Fatal(msg)
	return ""
}

// RequireHAProxy returns the path of the haproxy binary, or ends the test
// (see RequireBinary).
func RequireHAProxy(tb testing.TB) string {
	tb.Helper()
	return RequireBinary(tb, "haproxy", "apt-get install haproxy")
}

// RequireKeepalived returns the path of the keepalived binary, or ends the
// test (see RequireBinary).
func RequireKeepalived(tb testing.TB) string {
	tb.Helper()
	return RequireBinary(tb, "keepalived", "apt-get install keepalived")
}
