package api

import (
	"net/netip"

	"github.com/fulcrumlb/fulcrum/api/problem"
	"github.com/fulcrumlb/fulcrum/openapi"
)

// peerAddress checks a registration's peer_address: "" or ip:port.
func peerAddress(b openapi.NodeRegistration) (string, error) {
	if b.PeerAddress == nil || *b.PeerAddress == "" {
		return "", nil
	}
	ap, err := netip.ParseAddrPort(*b.PeerAddress)
	if err != nil || ap.Port() == 0 || !ap.Addr().IsValid() || ap.Addr().IsUnspecified() {
		return "", problem.InvalidField("peer_address", "must be ip:port (the node's LAN address and a port for HAProxy peers)")
	}
	return ap.String(), nil
}
