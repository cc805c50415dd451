package haproxy

import (
	"errors"
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

// peersView is the peers section: this node's name (localpeer) and a
// "peer <name> <addr>" line per node.
type peersView struct {
	Local string
	Lines []string
}

// buildPeers resolves g.Peers; nil when there is nothing to share (fewer than
// two nodes, or this node not among them): the config then has no peers.
func buildPeers(g Global) (*peersView, error) {
	p := g.Peers
	if !p.active() {
		return nil, nil
	}
	if err := checkID(p.Local); err != nil {
		return nil, fieldError("peers: local", err)
	}
	pv := &peersView{Local: p.Local}
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
		pv.Lines = append(pv.Lines, "peer "+n.Name+" "+addr)
	}
	return pv, nil
}

// sharePeers makes every stick table of lv shared through the peers section.
func sharePeers(lv *lbView) {
	for i := range lv.Frontends {
		if lv.Frontends[i].StickTable != "" {
			lv.Frontends[i].StickTable += " peers " + PeersSection
		}
	}
	for i := range lv.Backends {
		if lv.Backends[i].StickTable != "" {
			lv.Backends[i].StickTable += " peers " + PeersSection
		}
	}
}

// write lays out the peers section (the renderer's own lines).
func (p *peersView) write(w *cfgWriter) {
	var o Origin
	w.blank()
	w.line(o, "peers ", PeersSection)
	for _, l := range p.Lines {
		w.line(o, "    ", l)
	}
}
