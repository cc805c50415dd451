package haproxy

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
)

// PeersSection names the peers section every stick table of the config
// shares.
const PeersSection = "fulcrum"

// Peers share stick tables (per-client rate limits, source-IP persistence)
// among a node group's HAProxies, so they survive a VIP move.
type Peers struct {
	// Local is this node's peer name (HAProxy's localpeer); it must be one
	// of Nodes, whose address HAProxy listens on for the other peers.
	Local string
	// Nodes are the group's peers, this node included.
	Nodes []Peer
}

// Peer is one node of a peers section.
type Peer struct {
	Name string
	Addr netip.AddrPort
}

// active says whether p has anything to share: this node and another.
func (p *Peers) active() bool {
	if p == nil || len(p.Nodes) < 2 {
		return false
	}
	for _, n := range p.Nodes {
		if n.Name == p.Local {
			return true
		}
	}
	return false
}

// withPeers adds g.Peers to a rendered config: localpeer in global, a peers
// section, and every stick table shared through it. A config without peers
// (fewer than two nodes, or this node not among them) is returned unchanged.
func withPeers(g Global, cfg []byte) ([]byte, error) {
	p := g.Peers
	if !p.active() {
		return cfg, nil
	}
	var section bytes.Buffer
	fmt.Fprintf(&section, "\npeers %s\n", PeersSection)
	for _, n := range p.Nodes {
		if err := checkID(n.Name); err != nil {
			return nil, fieldError("peers: name", err)
		}
		if !n.Addr.IsValid() || n.Addr.Port() == 0 {
			return nil, fieldError("peers: "+n.Name, errors.New("needs ip:port"))
		}
		addr, err := addrPort(n.Addr.Addr(), int(n.Addr.Port()))
		if err != nil {
			return nil, fieldError("peers: "+n.Name, err)
		}
		fmt.Fprintf(&section, "    peer %s %s\n", n.Name, addr)
	}
	var out bytes.Buffer
	for _, line := range bytes.SplitAfter(cfg, []byte("\n")) {
		switch {
		case bytes.HasPrefix(line, []byte("    stick-table ")):
			out.Write(bytes.TrimRight(line, "\n"))
			fmt.Fprintf(&out, " peers %s\n", PeersSection)
		case bytes.Equal(line, []byte("global\n")):
			out.Write(line)
			fmt.Fprintf(&out, "    localpeer %s\n", p.Local)
		default:
			out.Write(line)
		}
	}
	out.Write(section.Bytes())
	return out.Bytes(), nil
}
