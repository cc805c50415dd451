package keepalived

import (
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fulcrumlb/fulcrum/internal/testenv"
)

func TestInstancesStableAndSpread(t *testing.T) {
	s := Settings{Interface: "eth0", RouterIDMin: 10, RouterIDMax: 19, AdvertIntervalMS: 100}
	a := netip.MustParseAddr("10.0.0.1")
	b := netip.MustParseAddr("10.0.0.2")
	one := Instances(s, "n1", []netip.Addr{a})
	two := Instances(s, "n1", []netip.Addr{a, b, netip.MustParseAddr("fd00::1")})
	var idA int
	for _, in := range two {
		for _, v := range in.VIPs {
			if v == a {
				idA = in.RouterID
			}
		}
		if in.RouterID < 10 || in.RouterID > 19 {
			t.Fatalf("router id %d outside the range", in.RouterID)
		}
	}
	if len(one) != 1 || one[0].RouterID != idA {
		t.Fatalf("adding VIPs moved %s: %+v vs %+v", a, one, two)
	}
	// Over many router ids, each of three nodes is the first choice for some.
	first := map[string]int{}
	for id := 1; id <= 60; id++ {
		best, bestP := "", -1
		for _, n := range []string{"node-a", "node-b", "node-c"} {
			if p := Priority(n, id); p > bestP {
				best, bestP = n, p
			}
			if p := Priority(n, id); p < 1 || p > MaxBasePriority || p+HolderBonus > 254 {
				t.Fatalf("priority %d", p)
			}
		}
		first[best]++
	}
	for _, n := range []string{"node-a", "node-b", "node-c"} {
		if first[n] < 8 {
			t.Errorf("node %s owns %d of 60 router ids: %v", n, first[n], first)
		}
	}
}

// keepalived itself accepts the rendered config.
func TestRenderAcceptedByKeepalived(t *testing.T) {
	bin := testenv.RequireKeepalived(t)
	iface := ""
	ifs, _ := net.Interfaces()
	for _, i := range ifs {
		if i.Flags&net.FlagLoopback == 0 && i.Flags&net.FlagUp != 0 {
			iface = i.Name
			break
		}
	}
	if iface == "" {
		t.Skip("no non-loopback interface to name in the config")
	}
	s := Settings{Interface: iface, RouterIDMin: 1, RouterIDMax: 255, AdvertIntervalMS: 100}
	in := Instances(s, "node-1", []netip.Addr{netip.MustParseAddr("10.213.0.10"), netip.MustParseAddr("10.213.0.11"), netip.MustParseAddr("fd00:213::10")})
	dir := t.TempDir()
	text := Render(s, "node-1", filepath.Join(dir, "ready"), func(name string) string { return filepath.Join(dir, "hold_"+name) }, in)
	for _, want := range []string{"vrrp_version 3", "advert_int 0.1", "nopreempt", "track_file fulcrum_ready", "track_file hold_" + in[0].Name, "10.213.0.10/32 dev " + iface, "fd00:213::10/128 dev " + iface} {
		if !strings.Contains(string(text), want) {
			t.Errorf("config lacks %q:\n%s", want, text)
		}
	}
	// The config is the same whoever holds what: only the VIPs change it.
	if again := Render(s, "node-1", filepath.Join(dir, "ready"), func(name string) string { return filepath.Join(dir, "hold_"+name) }, in); string(again) != string(text) {
		t.Errorf("rendering twice differs")
	}
	f := filepath.Join(dir, "keepalived.conf")
	if err := os.WriteFile(f, text, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "--config-test", "--use-file", f).CombinedOutput()
	if err != nil {
		t.Fatalf("keepalived --config-test: %v\n%s\n%s", err, out, text)
	}
}
