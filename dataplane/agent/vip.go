package agent

import (
	"context"
	"fmt"
	"net/netip"
	"strings"

	"github.com/fulcrumlb/fulcrum/dataplane/keepalived"
	"github.com/fulcrumlb/fulcrum/openapi"
)

// haproxyHealthy asks HAProxy's stats socket whether a worker serves: the
// check that lets keepalived hold this node's VIPs.
func (a *Agent) haproxyHealthy(ctx context.Context) error {
	out, err := a.runtime.Command(ctx, "show info")
	if err != nil {
		return err
	}
	if !strings.Contains(out, "Pid:") {
		return fmt.Errorf("haproxy: unexpected answer to show info")
	}
	return nil
}

// vrrpOf reads a snapshot's VRRP settings and VIPs (nil settings: the group
// uses no VRRP).
func vrrpOf(snap *openapi.Snapshot) (*keepalived.Settings, []netip.Addr) {
	if snap == nil || snap.Vrrp == nil || snap.Vrrp.Interface == "" {
		return nil, nil
	}
	v := snap.Vrrp
	s := &keepalived.Settings{Interface: v.Interface, RouterIDMin: v.RouterIdMin, RouterIDMax: v.RouterIdMax, AdvertIntervalMS: v.AdvertIntervalMs}
	var vips []netip.Addr
	for _, lb := range snap.LoadBalancers {
		if ip, err := netip.ParseAddr(lb.LoadBalancer.VipAddress); err == nil {
			vips = append(vips, ip)
		}
	}
	return s, vips
}

// prepareVIPs lets HAProxy bind VIPs this node does not hold yet, before a
// snapshot of a VRRP group is applied.
func (a *Agent) prepareVIPs(snap *openapi.Snapshot) {
	if s, _ := vrrpOf(snap); s != nil {
		if err := keepalived.EnableNonlocalBind(); err != nil {
			a.log.Error("VIPs of this group need ip_nonlocal_bind", "err", err)
		}
	}
}

// updateVIPs hands keepalived the VIPs of the snapshot just applied and the
// node's admin state: a draining node gives its VIPs up (HAProxy keeps
// serving the connections it has), a cordoned one claims no VIP it does not
// hold.
func (a *Agent) updateVIPs(snap *openapi.Snapshot) {
	if snap == nil {
		return
	}
	state := ""
	if snap.Node != nil {
		state = string(snap.Node.AdminState)
	}
	a.vips.SetAdminState(state)
	a.vips.SetGroupNodes(groupNodes(snap))
	a.vips.Update(vrrpOf(snap))
}

// groupNodes names the group's nodes a snapshot lists, from which
// keepalived ranks the nodes' priorities for each VIP
// (keepalived.RankedPriority): every node of the group (vrrp.nodes, with or
// without a peer address); from an API that does not send that list, the
// peers (the nodes that registered a peer address).
func groupNodes(snap *openapi.Snapshot) []string {
	if snap.Vrrp != nil && snap.Vrrp.Nodes != nil {
		return *snap.Vrrp.Nodes
	}
	if snap.Peers == nil {
		return nil
	}
	names := make([]string, 0, len(*snap.Peers))
	for _, p := range *snap.Peers {
		names = append(names, p.Name)
	}
	return names
}

// VIPs is the keepalived manager (for tests and tools).
func (a *Agent) VIPs() *keepalived.Manager { return a.vips }
