package agent

import (
	"net/netip"

	"github.com/fulcrumlb/fulcrum/dataplane/haproxy"
	"github.com/fulcrumlb/fulcrum/openapi"
)

// peersOf reads a snapshot's HAProxy peers: the group's nodes that
// registered a peer address, this node (the snapshot's node) the local one.
// nil when the group shares nothing or this node takes no part.
func peersOf(snap *openapi.Snapshot) *haproxy.Peers {
	if snap == nil || snap.Peers == nil || snap.Node == nil {
		return nil
	}
	p := &haproxy.Peers{Local: snap.Node.Name}
	for _, sp := range *snap.Peers {
		ap, err := netip.ParseAddrPort(sp.Address)
		if err != nil {
			continue
		}
		p.Nodes = append(p.Nodes, haproxy.Peer{Name: sp.Name, Addr: ap})
	}
	return p
}

// globalFor is the node-wide HAProxy settings for serving snap.
func (a *Agent) globalFor(snap *openapi.Snapshot) haproxy.Global {
	g := a.global()
	g.Peers = peersOf(snap)
	return g
}
