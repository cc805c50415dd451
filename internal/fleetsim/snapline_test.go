package fleetsim

import "testing"

// The driver reads the simulator's receipt lines as the simulator writes
// them (sim.go, stream.go: "snap %d %d %d %d"), and nothing else.
func TestParseSnapLine(t *testing.T) {
	v, ok := parseSnapLine([]byte("snap 17 4242 1117 1764330000123456789"))
	if !ok || v != [4]int64{17, 4242, 1117, 1764330000123456789} {
		t.Fatalf("parsed %v, %v", v, ok)
	}
	for _, bad := range []string{"snap", "snap 1 2 3", "snap 1 2 3 4 5", "snap 1  2 3 4", "snap -1 2 3 4", "snap 1 2 3 4x", "ready", "stats 1 2 3 4",
		"snap 1 2 3 92233720368547758070"} {
		if _, ok := parseSnapLine([]byte(bad)); ok {
			t.Errorf("parsed %q", bad)
		}
	}
}
