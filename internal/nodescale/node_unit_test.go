package nodescale

import (
	"testing"

	"github.com/fulcrumlb/fulcrum/dataplane/haproxy"
)

// TestParseShowProc reads HAProxy 2.6's `show proc` as the benchmark's
// reload count and bare reload need it (the agent's own parser is not
// exported): the master, its reload and failed-reload counters, the current
// and the old workers.
func TestParseShowProc(t *testing.T) {
	out := `#<PID>          <type>          <reloads>       <uptime>        <version>
9865            master          3 [failed: 1]   0d00h01m07s     2.6.12-1+deb12u4
# workers
12018           worker          0               0d00h00m01s     2.6.12-1+deb12u4
# old workers
11522           worker          1               0d00h00m42s     2.6.12-1+deb12u4
# programs

`
	st, err := parseShowProc(out)
	if err != nil {
		t.Fatal(err)
	}
	want := []haproxy.Worker{{PID: 12018, Reloads: 0}, {PID: 11522, Reloads: 1, Old: true}}
	if st.master != 9865 || st.reloads != 3 || st.failed != 1 || len(st.workers) != 2 || st.workers[0] != want[0] || st.workers[1] != want[1] {
		t.Fatalf("parsed %+v", st)
	}
	if _, err := parseShowProc("Unknown command.\n"); err == nil {
		t.Fatal("an answer without a master line parsed")
	}
}

// TestGCLine: the gctrace lines counted, and only those.
func TestGCLine(t *testing.T) {
	for line, want := range map[string]bool{
		"gc 12 @22.454s 0%: 0.048+8.6+0.003 ms clock, 0.096+0.067/3.9/1.2+0.007 ms cpu, 11->11->6 MB, 12 MB goal, 0 MB stacks, 0 MB globals, 2 P": true,
		`{"time":"2026-11-28T14:00:00Z","level":"INFO","msg":"applied snapshot"}`:                                                                 false,
		"gc is not a line of gctrace": false,
	} {
		if gcLineRE.MatchString(line) != want {
			t.Errorf("%q: counted %v", line, !want)
		}
	}
}
