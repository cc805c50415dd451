package haproxy

import (
	"bytes"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
)

// With peers, every stick table is shared through the peers section and
// HAProxy accepts the config; without (or alone), nothing changes.
func TestRenderPeers(t *testing.T) {
	pool := httpPool("pool_src")
	pool.Persistence = Persistence{Type: "source_ip"}
	pool.Members = append(pool.Members, member("mbr_src2", "10.0.1.2", 8080, 1))
	c := Config{Global: testGlobal(), LoadBalancers: []LoadBalancer{{
		ID: "lb_peers", VIP: netip.MustParseAddr("10.0.0.10"), Enabled: true,
		Listeners: []Listener{{ID: "lsn_peers", Protocol: "http", Port: 80, DefaultPoolID: pool.ID}},
		Pools:     []Pool{pool},
	}}}
	c.Global.ServerStateFile = "" // haproxy -c warns about a missing one
	plain, err := Render(c)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(plain, []byte("stick-table ")) {
		t.Fatalf("source-IP persistence renders no stick table:\n%s", plain)
	}
	c.Global.Peers = &Peers{Local: "node-b", Nodes: []Peer{{Name: "node-a", Addr: netip.MustParseAddrPort("127.0.0.1:10001")}}}
	if alone, err := Render(c); err != nil || !bytes.Equal(alone, plain) {
		t.Fatalf("peers without this node changed the config (%v):\n%s", err, alone)
	}
	c.Global.Peers.Nodes = append(c.Global.Peers.Nodes, Peer{Name: "node-b", Addr: netip.MustParseAddrPort("127.0.0.1:10002")})
	text, err := Render(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"\n    localpeer node-b\n", "\npeers fulcrum\n    peer node-a 127.0.0.1:10001\n    peer node-b 127.0.0.1:10002\n"} {
		if !bytes.Contains(text, []byte(want)) {
			t.Errorf("config lacks %q:\n%s", want, text)
		}
	}
	for _, line := range strings.Split(string(text), "\n") {
		if strings.HasPrefix(line, "    stick-table ") && !strings.HasSuffix(line, " peers fulcrum") {
			t.Errorf("stick table not shared: %q", line)
		}
	}
	if hp, err := exec.LookPath("haproxy"); err == nil {
		haproxyCheck(t, hp, text)
	}
	c.Global.Peers.Nodes[0].Name = "bad name"
	if _, err := Render(c); err == nil {
		t.Fatal("a peer name with a space rendered")
	}
}
