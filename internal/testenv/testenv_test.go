package testenv

import (
	"strings"
	"testing"
)

// recorder is a testing.TB that records how the test would end.
type recorder struct {
	testing.TB
	failed, skipped string
}

func (r *recorder) Helper()           {}
func (r *recorder) Fatal(args ...any) { r.failed = args[0].(string) }
func (r *recorder) Skip(args ...any)  { r.skipped = args[0].(string) }

// A missing program fails the test with how to install it, unless skips
// are allowed outside CI.
func TestRequireBinaryMissing(t *testing.T) {
	const name = "fulcrum-no-such-program"
	cases := []struct {
		allow, ci string
		wantSkip  bool
	}{
		{"", "", false},
		{"1", "", true},
		{"1", "true", false},
		{"0", "", false},
	}
	for _, tc := range cases {
		t.Setenv("FULCRUM_ALLOW_SKIP", tc.allow)
		t.Setenv("CI", tc.ci)
		r := &recorder{TB: t}
		if got := RequireBinary(r, name, "apt-get install "+name); got != "" {
			t.Fatalf("found %q", got)
		}
		msg := r.failed
		if tc.wantSkip {
			msg = r.skipped
		}
		if (r.skipped != "") != tc.wantSkip || (r.failed != "") == tc.wantSkip {
			t.Fatalf("FULCRUM_ALLOW_SKIP=%q CI=%q: failed %q, skipped %q", tc.allow, tc.ci, r.failed, r.skipped)
		}
		for _, want := range []string{name + " not found", "apt-get install " + name, "FULCRUM_ALLOW_SKIP=1"} {
			if !strings.Contains(msg, want) {
				t.Fatalf("message %q lacks %q", msg, want)
			}
		}
	}
}

// A program on PATH (or in an sbin directory) is found.
func TestRequireBinaryFound(t *testing.T) {
	if p := RequireBinary(t, "sh", "apt-get install dash"); !strings.HasSuffix(p, "/sh") {
		t.Fatalf("sh: %q", p)
	}
}
