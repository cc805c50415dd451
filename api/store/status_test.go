package store

import (
	"slices"
	"testing"
)

func TestEffectiveReservedPorts(t *testing.T) {
	for _, c := range []struct {
		operator, want []int
	}{
		{nil, []int{22, 8404, 8405, 8406}},
		{[]int{9000, 22, 80}, []int{22, 80, 8404, 8405, 8406, 9000}},
		{[]int{8405, 8405}, []int{22, 8404, 8405, 8406}},
	} {
		if got := EffectiveReservedPorts(c.operator); !slices.Equal(got, c.want) {
			t.Errorf("EffectiveReservedPorts(%v) = %v, want %v", c.operator, got, c.want)
		}
	}
	// The result never aliases the always-reserved list.
	p := EffectiveReservedPorts(nil)
	p[0] = 1
	if AlwaysReservedPorts()[0] != PortSSH {
		t.Fatal("AlwaysReservedPorts was changed through a result")
	}
}

func TestObjectTable(t *testing.T) {
	for id, want := range map[string]string{
		"lsn_01abc": "listeners", "pool_01abc": "pools", "mbr_01abc": "members", "rule_01abc": "routing_rules",
		"cert_01abc": "certificates", "lb_01abc": "", "": "", "bogus": "",
	} {
		if got := objectTable(id); got != want {
			t.Errorf("objectTable(%q) = %q, want %q", id, got, want)
		}
	}
}

func TestNodeErrorKinds(t *testing.T) {
	got := NodeErrorKinds([]NodeError{{Kind: "disk"}, {Kind: "bind"}, {Kind: "disk"}})
	if got != "disk, bind" {
		t.Fatalf("NodeErrorKinds = %q", got)
	}
}
