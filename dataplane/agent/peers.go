package agent

import (
	"net/netip"
	"reflect"

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

// globalFor is the node-wide HAProxy settings for serving snap. Peers equal
// to those HAProxy runs with are those very ones (the same pointer), so the
// settings compare equal to what runs (memberOps compares them with ==):
// only a change of the group's peers makes an apply reload for them.
func (a *Agent) globalFor(snap *openapi.Snapshot) haproxy.Global {
	g := a.global()
	g.Peers = peersOf(snap)
	if a.live != nil && a.live.Global.Peers != nil && reflect.DeepEqual(a.live.Global.Peers, g.Peers) {
		g.Peers = a.live.Global.Peers
	}
	return g
}
