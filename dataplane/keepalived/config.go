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

// Priority is node's VRRP priority for a router id, from 1 to 254: a
// rendezvous hash, so every node computes the same order of owners for a
// router id without knowing the others, and the first choices spread evenly.
func Priority(node string, routerID int) int {
	h := fnv.New32a()
	fmt.Fprintf(h, "%s/%d", node, routerID)
	// Mix the bits: FNV's low bits differ little between similar names.
	x := h.Sum32()
	x ^= x >> 16
	x *= 0x45d9f3b
	x ^= x >> 16
	return 1 + int(x%254)
}

// Render writes keepalived's config: VRRPv3, every instance BACKUP with
// nopreempt (a returning node never takes a VIP back, so nothing flaps), all
// tracking the ready file (weight 0: a non-zero value puts the instance in
// FAULT, which gives its VIPs up at once).
func Render(s Settings, node, readyFile string, instances []Instance) []byte {
	var b bytes.Buffer
	b.WriteString("# Written by the fulcrum agent; changes are overwritten.\n")
	// Real-time scheduling for the VRRP process: adverts every 100 ms must go
	// out on time on a busy node, or a backup takes over (and the VIP flaps).
	fmt.Fprintf(&b, "global_defs {\n  router_id %s\n  vrrp_version 3\n  vrrp_garp_master_delay 1\n  vrrp_garp_master_repeat 3\n  vrrp_rt_priority 50\n  vrrp_priority -10\n}\n\n", quote(node))
	fmt.Fprintf(&b, "track_file fulcrum_ready {\n  file %s\n  weight 0\n}\n", quote(readyFile))
	advert := strconv.FormatFloat(float64(s.AdvertIntervalMS)/1000, 'f', -1, 64)
	for _, in := range instances {
		prefix := "/32"
		if in.IPv6 {
			prefix = "/128"
		}
		fmt.Fprintf(&b, "\nvrrp_instance %s {\n  state BACKUP\n  nopreempt\n  interface %s\n  virtual_router_id %d\n  priority %d\n  advert_int %s\n",
			in.Name, s.Interface, in.RouterID, in.Priority, advert)
		b.WriteString("  track_file {\n    fulcrum_ready\n  }\n  virtual_ipaddress {\n")
		for _, vip := range in.VIPs {
			fmt.Fprintf(&b, "    %s%s dev %s\n", vip, prefix, s.Interface)
		}
		b.WriteString("  }\n}\n")
	}
	return b.Bytes()
}

func quote(s string) string { return strconv.Quote(s) }
