package keepalived

import (
	"fmt"
	"hash/fnv"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
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

// The nodes of a group never share a priority for a router id, and the
// priorities are spread: when a VIP's owner goes away, the first two of
// the others (whose master-down timers end (256 - priority)/256 of an
// advert interval after the owner's last advert) time out far apart, so only
// one becomes master. Hashed priorities alone collide or come close.
func TestRankedPrioritySpread(t *testing.T) {
	nodes := []string{"fh4332-n1", "fh4332-n2", "fh4332-n3"}
	near := 0
	for id := 1; id <= 255; id++ {
		var ranked, hashed []int
		for _, n := range nodes {
			p := RankedPriority(n, id, nodes)
			if p < 1 || p > MaxBasePriority {
				t.Fatalf("router id %d: ranked priority %d of %s outside 1..%d", id, p, n, MaxBasePriority)
			}
			// The same order as the hashed priorities (the preferred owner
			// of a router id stays), whatever order the nodes come in.
			if again := RankedPriority(n, id, []string{nodes[2], nodes[0], nodes[1], nodes[0]}); again != p {
				t.Fatalf("router id %d: %s ranked %d, then %d with the nodes in another order", id, n, p, again)
			}
			ranked, hashed = append(ranked, p), append(hashed, Priority(n, id))
		}
		slices.Sort(ranked)
		if ranked[0] != 1 || ranked[1] != 64 || ranked[2] != MaxBasePriority {
			t.Fatalf("router id %d: ranked priorities %v; want 1, 64, %d", id, ranked, MaxBasePriority)
		}
		for i := range nodes {
			for j := range nodes {
				if i < j && (hashed[i]-hashed[j])*(RankedPriority(nodes[i], id, nodes)-RankedPriority(nodes[j], id, nodes)) < 0 {
					t.Fatalf("router id %d: ranking reverses the hashed order of %s and %s", id, nodes[i], nodes[j])
				}
			}
		}
		slices.Sort(hashed)
		if hashed[1]-hashed[0] <= 2 || hashed[2]-hashed[1] <= 2 {
			near++
		}
	}
	t.Logf("hashed priorities of 3 nodes within 2 of each other for %d of 255 router ids; ranked: none", near)
	if RankedPriority("other", 7, nodes) != 0 || RankedPriority(nodes[0], 7, nodes[:1]) != 0 || RankedPriority(nodes[0], 7, nil) != 0 {
		t.Fatal("a node outside the group, or a group of one, must keep its hashed priority (0)")
	}
	// Many nodes: still no two alike.
	var many []string
	for i := 0; i < 40; i++ {
		many = append(many, fmt.Sprintf("node-%02d", i))
	}
	seen := map[int]string{}
	for _, n := range many {
		p := RankedPriority(n, 42, many)
		if o, dup := seen[p]; dup {
			t.Fatalf("%s and %s share priority %d", n, o, p)
		}
		seen[p] = n
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
	text := Render(s, "node-1", filepath.Join(dir, "ready"), func(name string) string { return filepath.Join(dir, "hold_"+name) }, func(name string) string { return filepath.Join(dir, "rank_"+name) }, in)
	for _, want := range []string{"vrrp_version 3", "advert_int 0.1", "nopreempt", "track_file fulcrum_ready", "track_file hold_" + in[0].Name, "track_file rank_" + in[0].Name, "    rank_" + in[0].Name + "\n", "10.213.0.10/32 dev " + iface, "fd00:213::10/128 dev " + iface} {
		if !strings.Contains(string(text), want) {
			t.Errorf("config lacks %q:\n%s", want, text)
		}
	}
	// The config is the same whoever holds what: only the VIPs change it.
	if again := Render(s, "node-1", filepath.Join(dir, "ready"), func(name string) string { return filepath.Join(dir, "hold_"+name) }, func(name string) string { return filepath.Join(dir, "rank_"+name) }, in); string(again) != string(text) {
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

// The manager writes each instance's rank file so that the hashed priority
// in the config plus the file's value is the node's ranked priority among
// the group's nodes it was handed; 0 while the node is not among them.
func TestManagerRankFiles(t *testing.T) {
	s := Settings{Interface: "eth0", RouterIDMin: 1, RouterIDMax: 255, AdvertIntervalMS: 100}
	vip := netip.MustParseAddr("10.213.7.129")
	nodes := []string{"g-n1", "g-n2", "g-n3"}
	read := func(m *Manager, in Instance) int {
		t.Helper()
		b, err := os.ReadFile(m.RankFile(in.Name))
		if err != nil {
			t.Fatal(err)
		}
		v, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	seen := map[int]string{}
	for _, n := range nodes {
		m := New(Config{Dir: t.TempDir(), NodeName: n})
		m.Update(&s, []netip.Addr{vip})
		in := Instances(s, n, []netip.Addr{vip})[0]
		m.ensureHolds(true)
		if v := read(m, in); v != 0 {
			t.Fatalf("%s: rank file %d before the group's nodes are known; want 0", n, v)
		}
		m.SetGroupNodes([]string{"g-n3", "g-n1", "g-n2", "g-n1"})
		m.ensureHolds(false)
		p := in.Priority + read(m, in)
		if want := RankedPriority(n, in.RouterID, nodes); p != want {
			t.Fatalf("%s: priority %d + rank file = %d; want %d", n, in.Priority, p, want)
		}
		if o, dup := seen[p]; dup {
			t.Fatalf("%s and %s share priority %d", n, o, p)
		}
		seen[p] = n
		m.SetGroupNodes([]string{"g-n7", "g-n8"}) // this node not among them
		m.ensureHolds(false)
		if v := read(m, in); v != 0 {
			t.Fatalf("%s: rank file %d when not among the group's nodes; want 0", n, v)
		}
	}
}

// RankedPriority's one pass gives the ranks of sorting the nodes by
// Priority (then name), and Priority hashes what it always did
// (node/routerID): a node's priorities do not change with the agent's version.
func TestRankedPriorityOnePassAsSorted(t *testing.T) {
	sorted := func(node string, id int, nodes []string) int {
		order := slices.Clone(nodes)
		slices.Sort(order)
		order = slices.Compact(order)
		if len(order) < 2 || !slices.Contains(order, node) {
			return 0
		}
		slices.SortStableFunc(order, func(a, b string) int { return Priority(b, id) - Priority(a, id) })
		return MaxBasePriority - slices.Index(order, node)*(MaxBasePriority-1)/(len(order)-1)
	}
	for _, size := range []int{2, 3, 7, 130, 1000} {
		var nodes []string
		for i := 0; i < size; i++ {
			nodes = append(nodes, fmt.Sprintf("edge-%d.dc1", i*7919%size))
		}
		for _, id := range []int{1, 42, 255} {
			seen := map[int]bool{}
			for _, n := range nodes[:min(size, 40)] {
				got, want := RankedPriority(n, id, nodes), sorted(n, id, nodes)
				if got != want {
					t.Fatalf("%d nodes, router id %d: %s ranked %d, want %d", size, id, n, got, want)
				}
				if size <= MaxBasePriority && seen[got] {
					t.Fatalf("%d nodes, router id %d: priority %d twice", size, id, got)
				}
				seen[got] = true
			}
		}
	}
	for _, n := range []string{"a", "node-1", strings.Repeat("x", 100)} {
		h := fnv.New32a()
		fmt.Fprintf(h, "%s/%d", n, 77)
		x := h.Sum32()
		x ^= x >> 16
		x *= 0x45d9f3b
		x ^= x >> 16
		if want := 1 + int(x%MaxBasePriority); Priority(n, 77) != want {
			t.Fatalf("Priority(%q, 77) = %d, want %d", n, Priority(n, 77), want)
		}
	}
}

// BenchmarkRankedPriority1000: one router id's rank among 1,000 nodes (what
// a change of the group's nodes costs per instance; the check loop reuses it).
func BenchmarkRankedPriority1000(b *testing.B) {
	var nodes []string
	for i := 0; i < 1000; i++ {
		nodes = append(nodes, fmt.Sprintf("edge-%04d.dc1", i))
	}
	for i := 0; i < b.N; i++ {
		RankedPriority("edge-0500.dc1", 1+i%255, nodes)
	}
}
