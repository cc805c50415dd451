package keepalived

import (
	"bytes"
	"fmt"
	"hash/fnv"
	"net/netip"
	"slices"
	"strconv"
)

// Settings are a node group's VRRP settings.
type Settings struct {
	// Interface carries the VRRP adverts and the VIPs.
	Interface string
	// RouterIDMin and RouterIDMax bound the virtual router ids used.
	RouterIDMin, RouterIDMax int
	// AdvertIntervalMS is the VRRPv3 advert interval (centiseconds precision).
	AdvertIntervalMS int
}

// Instance is one VRRP instance: a router id and the VIPs it carries.
type Instance struct {
	Name     string
	RouterID int
	Priority int
	IPv6     bool
	VIPs     []netip.Addr
}

// Instances buckets vips by router id: a VIP always maps to the same id of the
// range (a hash of its address), so adding or removing a VIP never moves
// another. IPv4 and IPv6 VIPs use separate instances.
func Instances(s Settings, node string, vips []netip.Addr) []Instance {
	size := s.RouterIDMax - s.RouterIDMin + 1
	if size < 1 {
		return nil
	}
	type key struct {
		v6 bool
		id int
	}
	byKey := map[key]*Instance{}
	for _, vip := range vips {
		vip = vip.Unmap()
		h := fnv.New32a()
		h.Write(vip.AsSlice())
		k := key{v6: vip.Is6(), id: s.RouterIDMin + int(h.Sum32()%uint32(size))}
		in := byKey[k]
		if in == nil {
			fam := "v4"
			if k.v6 {
				fam = "v6"
			}
			in = &Instance{Name: "fulcrum_" + fam + "_" + strconv.Itoa(k.id), RouterID: k.id, IPv6: k.v6, Priority: Priority(node, k.id)}
			byKey[k] = in
		}
		if !slices.Contains(in.VIPs, vip) {
			in.VIPs = append(in.VIPs, vip)
		}
	}
	out := make([]Instance, 0, len(byKey))
	for _, in := range byKey {
		slices.SortFunc(in.VIPs, func(a, b netip.Addr) int { return a.Compare(b) })
		out = append(out, *in)
	}
	slices.SortFunc(out, func(a, b Instance) int {
		if a.IPv6 != b.IPv6 {
			if a.IPv6 {
				return 1
			}
			return -1
		}
		return a.RouterID - b.RouterID
	})
	return out
}

// Priority is node's base VRRP priority for a router id, from 1 to
// MaxBasePriority: a rendezvous hash, so every node computes the same order of
// owners for a router id without knowing the others, and the first choices
// spread evenly. The holder of an instance's VIPs adds HolderBonus (see
// Render), so it outranks every node that does not hold them.
func Priority(node string, routerID int) int {
	h := fnv.New32a()
	// node/routerID, without fmt: RankedPriority hashes every node of
	// the group.
	var buf [64]byte
	b := append(append(buf[:0], node...), '/')
	h.Write(strconv.AppendInt(b, int64(routerID), 10))
	// Mix the bits: FNV's low bits differ little between similar names.
	x := h.Sum32()
	x ^= x >> 16
	x *= 0x45d9f3b
	x ^= x >> 16
	return 1 + int(x%MaxBasePriority)
}

// RankedPriority is node's priority for routerID among the group's nodes
// (node among them; the order of nodes does not matter): the nodes in
// rendezvous order (Priority, then name) get priorities spread evenly from
// MaxBasePriority down to 1, so no two nodes share a priority and the
// next two choices of a router id are far apart. That matters when a VIP's
// owner goes away: every backup's master-down timer ends a skew after the
// last advert, (256 - priority)/256 of an advert interval, and two backups
// whose priorities are close (or equal: hashed priorities collide) time out
// together, both become master and send gratuitous ARP, and the VIP moves
// twice. Spread over three nodes, the two survivors' timers end at least a
// quarter of an advert interval apart, and the first master's advert reaches
// the other before it times out. It returns 0 when node is not among nodes
// or there are fewer than two.
func RankedPriority(node string, routerID int, nodes []string) int {
	// One pass over the nodes (sorted, to skip duplicates): node's rank is
	// how many others come before it (a higher Priority, or the same and
	// a smaller name), no sort by priority; a group of 1,000 nodes costs
	// 1,000 hashes per router id.
	if !slices.IsSorted(nodes) {
		nodes = slices.Clone(nodes)
		slices.Sort(nodes)
	}
	mine := Priority(node, routerID)
	distinct, ahead, found := 0, 0, false
	for i, n := range nodes {
		if i > 0 && n == nodes[i-1] {
			continue
		}
		distinct++
		if n == node {
			found = true
			continue
		}
		if p := Priority(n, routerID); p > mine || p == mine && n < node {
			ahead++
		}
	}
	if !found || distinct < 2 {
		return 0
	}
	return MaxBasePriority - ahead*(MaxBasePriority-1)/(distinct-1)
}

// MaxBasePriority bounds the hashed base priorities; HolderBonus lifts the
// holder of an instance above all of them (126 + 128 = 254, keepalived's top).
const (
	MaxBasePriority = 126
	HolderBonus     = 128
)

// Hold-file values (see Render): none, the holder's bonus, and FAULT (a
// cordoned node claims no VIP it does not hold: below -253 keepalived puts
// the instance in FAULT).
const (
	holdNone  = 0
	holdBonus = HolderBonus
	holdFault = -254
)

// Render writes keepalived's config: VRRPv3, every instance BACKUP with
// nopreempt, all tracking the ready file (weight 0: a non-zero value puts the
// instance in FAULT, which gives its VIPs up at once), each its own hold
// file and its own rank file (weight 1: their values are added to the
// instance's priority). The rank file moves the hashed priority to the
// node's RankedPriority among the group's nodes, which the config does not
// depend on (see Manager.SetGroupNodes).
//
// Ownership is stable by design. nopreempt: a node never takes VIPs from a
// live owner for having a higher priority (a returning node does not take its
// VIPs back), so a VIP moves only when its owner stops advertising (dies,
// fails its HAProxy check, drains, stops). But nopreempt does not decide who
// wins when two nodes are master at once (a backup whose adverts came late on
// a busy machine, the two backups of a dead owner timing out together): the
// higher priority wins. The manager therefore writes HolderBonus to the hold
// file of an instance whose VIPs the node has held for a while (Config.Settle),
// so the established owner always wins such a contest; a fresh master does
// not get it until it has settled. The config itself depends only on the VIPs
// and the node, not on who holds what: adding a VIP changes the config of
// every node the same way, and keepalived keeps each instance's state (and
// reads the hold files again) over the reload, so no other VIP moves.
func Render(s Settings, node, readyFile string, holdFile, rankFile func(instance string) string, instances []Instance) []byte {
	var b bytes.Buffer
	b.WriteString("# Written by the fulcrum agent; changes are overwritten.\n")
	// A raised (nice) priority for the VRRP process, not real-time
	// scheduling: keepalived 2.2.7 cannot set its real-time CPU limit again
	// on a reload, and the kernel then kills the VRRP process (RLIMIT_RTTIME)
	// soon after; its restart drops every VIP of the node, and the VIPs move
	// (this was the "other VIP moved when an LB was added"). An advert that
	// goes out late on a busy node no longer moves a VIP either: the holder
	// outranks the backup that took over meanwhile (see the hold files).
	fmt.Fprintf(&b, "global_defs {\n  router_id %s\n  vrrp_version 3\n  vrrp_garp_master_delay 1\n  vrrp_garp_master_repeat 3\n  vrrp_priority -10\n}\n\n", quote(node))
	fmt.Fprintf(&b, "track_file fulcrum_ready {\n  file %s\n  weight 0\n}\n", quote(readyFile))
	for _, in := range instances {
		fmt.Fprintf(&b, "track_file %s {\n  file %s\n  weight 1\n}\n", holdName(in.Name), quote(holdFile(in.Name)))
		fmt.Fprintf(&b, "track_file %s {\n  file %s\n  weight 1\n}\n", rankName(in.Name), quote(rankFile(in.Name)))
	}
	advert := strconv.FormatFloat(float64(s.AdvertIntervalMS)/1000, 'f', -1, 64)
	for _, in := range instances {
		prefix := "/32"
		if in.IPv6 {
			prefix = "/128"
		}
		fmt.Fprintf(&b, "\nvrrp_instance %s {\n  state BACKUP\n  nopreempt\n  interface %s\n  virtual_router_id %d\n  priority %d\n  advert_int %s\n",
			in.Name, s.Interface, in.RouterID, in.Priority, advert)
		fmt.Fprintf(&b, "  track_file {\n    fulcrum_ready\n    %s\n    %s\n  }\n  virtual_ipaddress {\n", holdName(in.Name), rankName(in.Name))
		for _, vip := range in.VIPs {
			fmt.Fprintf(&b, "    %s%s dev %s\n", vip, prefix, s.Interface)
		}
		b.WriteString("  }\n}\n")
	}
	return b.Bytes()
}

func holdName(instance string) string { return "hold_" + instance }

func rankName(instance string) string { return "rank_" + instance }

func quote(s string) string { return strconv.Quote(s) }
