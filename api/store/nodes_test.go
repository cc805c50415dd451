package store

import (
	"testing"
	"time"
)

func TestNodeStateOf(t *testing.T) {
	now := time.Now()
	g := &NodeGroup{DownTimeoutMs: 10000, ApplyGraceMs: 30000}
	ago := func(d time.Duration) *time.Time { x := now.Add(-d); return &x }
	for _, c := range []struct {
		name    string
		n       Node
		want    string
		failing bool
	}{
		{"never reported", Node{}, NodeRegistered, false},
		{"cordoned before reporting", Node{AdminState: NodeCordoned}, NodeCordoned, false},
		{"reporting", Node{LastSeenAt: ago(time.Second)}, NodeOnline, false},
		{"silent past the down-timeout", Node{LastSeenAt: ago(11 * time.Second)}, NodeDown, false},
		{"down wins over cordoned", Node{LastSeenAt: ago(11 * time.Second), AdminState: NodeCordoned}, NodeDown, false},
		{"draining", Node{LastSeenAt: ago(time.Second), AdminState: NodeDraining}, NodeDraining, false},
		{"node errors", Node{LastSeenAt: ago(time.Second), Errors: []NodeError{{Kind: "disk", Since: now}}}, NodeErrored, false},
		{"node errors past the grace", Node{LastSeenAt: ago(time.Second), Errors: []NodeError{{Kind: "bind", Since: now.Add(-time.Minute)}}}, NodeErrored, true},
		{"nacking", Node{LastSeenAt: ago(time.Second), ApplyFailingSince: ago(time.Second)}, NodeErrored, false},
		{"nacking past the grace", Node{LastSeenAt: ago(time.Second), ApplyFailingSince: ago(31 * time.Second)}, NodeErrored, true},
	} {
		if got := NodeStateOf(&c.n, g, now); got != c.want {
			t.Errorf("%s: state %s, want %s", c.name, got, c.want)
		}
		if got := NodeFailingPastGrace(&c.n, g, now); got != c.failing {
			t.Errorf("%s: failing past grace %v, want %v", c.name, got, c.failing)
		}
	}
}
