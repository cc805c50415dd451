package acceptance

import (
	"encoding/binary"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
	"unsafe"
)

// wire records what the client's link carries (a packet socket on the
// client's veth in the root namespace, kernel timestamps): VRRP adverts
// (every one is flooded to every port of the bridge), ARP (the gratuitous
// ARPs that move a VIP) and the client's SYNs and the resets it gets, each
// with the MAC it went to or came from. It tells, to the millisecond, which
// nodes advertised as master for a router id after a fault and whose ARP
// the client followed: a VIP that moves twice shows as two advertisers.
type wire struct {
	fd   int
	done chan struct{}

	mu     sync.Mutex
	events []wireEvent
	macs   map[string]string // MAC → node name
}

// wireEvent is one packet of interest.
type wireEvent struct {
	at   time.Time
	kind string // "vrrp", "garp", "arp", "syn", "rst"
	mac  string // sender's MAC (vrrp, arp, rst) or destination's (syn)
	src  string // sender's IP
	dst  string // VIP (syn, rst) or ARP target
	vrid int    // vrrp
	prio int    // vrrp
}

const wireMaxEvents = 500000

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// startWire opens the capture on link (an interface of the root namespace).
func (h *haNet) startWire(link string) *wire {
	t := h.t
	t.Helper()
	ifi, err := net.InterfaceByName(link)
	if err != nil {
		t.Fatalf("wire: %v", err)
	}
	fd, err := syscall.Socket(syscall.AF_PACKET, syscall.SOCK_RAW|syscall.SOCK_CLOEXEC, int(htons(syscall.ETH_P_ALL)))
	if err != nil {
		t.Fatalf("wire: packet socket: %v", err)
	}
	if err := syscall.Bind(fd, &syscall.SockaddrLinklayer{Protocol: htons(syscall.ETH_P_ALL), Ifindex: ifi.Index}); err != nil {
		syscall.Close(fd)
		t.Fatalf("wire: bind %s: %v", link, err)
	}
	_ = syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_TIMESTAMPNS, 1)
	tv := syscall.NsecToTimeval(int64(200 * time.Millisecond))
	_ = syscall.SetsockoptTimeval(fd, syscall.SOL_SOCKET, syscall.SO_RCVTIMEO, &tv)
	w := &wire{fd: fd, done: make(chan struct{}), macs: map[string]string{}}
	for _, n := range h.nodes {
		out, _ := exec.Command("ip", "-n", n.ns, "-o", "link", "show", haIface).Output()
		if f := strings.Fields(string(out)); len(f) > 0 {
			for i, x := range f {
				if x == "link/ether" && i+1 < len(f) {
					w.macs[f[i+1]] = n.name
				}
			}
		}
	}
	stop := make(chan struct{})
	go w.read(stop)
	h.t.Cleanup(func() { close(stop); <-w.done; syscall.Close(fd) })
	return w
}

func (w *wire) read(stop chan struct{}) {
	defer close(w.done)
	buf := make([]byte, 2048)
	oob := make([]byte, 128)
	for {
		select {
		case <-stop:
			return
		default:
		}
		n, oobn, _, _, err := syscall.Recvmsg(w.fd, buf, oob, 0)
		if err != nil {
			continue // timeout (SO_RCVTIMEO) or interrupted: look at stop again
		}
		at := time.Now()
		if msgs, err := syscall.ParseSocketControlMessage(oob[:oobn]); err == nil {
			for _, m := range msgs {
				if m.Header.Level == syscall.SOL_SOCKET && m.Header.Type == syscall.SO_TIMESTAMPNS && len(m.Data) >= int(unsafe.Sizeof(syscall.Timespec{})) {
					ts := (*syscall.Timespec)(unsafe.Pointer(&m.Data[0]))
					at = time.Unix(ts.Sec, ts.Nsec)
				}
			}
		}
		if ev, ok := parseFrame(buf[:n]); ok {
			ev.at = at
			w.mu.Lock()
			if len(w.events) < wireMaxEvents {
				w.events = append(w.events, ev)
			}
			w.mu.Unlock()
		}
	}
}

// parseFrame keeps VRRP, ARP and TCP SYN / RST frames.
func parseFrame(b []byte) (wireEvent, bool) {
	if len(b) < 14 {
		return wireEvent{}, false
	}
	dstMAC, srcMAC := net.HardwareAddr(b[0:6]).String(), net.HardwareAddr(b[6:12]).String()
	switch binary.BigEndian.Uint16(b[12:14]) {
	case 0x0806: // ARP
		p := b[14:]
		if len(p) < 28 {
			return wireEvent{}, false
		}
		spa, tpa := net.IP(p[14:18]).String(), net.IP(p[24:28]).String()
		kind := "arp"
		if spa == tpa {
			kind = "garp"
		}
		return wireEvent{kind: kind, mac: srcMAC, src: spa, dst: tpa}, true
	case 0x0800: // IPv4
		p := b[14:]
		if len(p) < 20 {
			return wireEvent{}, false
		}
		ihl := int(p[0]&0x0f) * 4
		if len(p) < ihl {
			return wireEvent{}, false
		}
		src, dst := net.IP(p[12:16]).String(), net.IP(p[16:20]).String()
		switch p[9] {
		case 112: // VRRP
			v := p[ihl:]
			if len(v) < 4 {
				return wireEvent{}, false
			}
			return wireEvent{kind: "vrrp", mac: srcMAC, src: src, vrid: int(v[1]), prio: int(v[2])}, true
		case 6: // TCP
			tcp := p[ihl:]
			if len(tcp) < 14 {
				return wireEvent{}, false
			}
			flags := tcp[13]
			switch {
			case flags&0x02 != 0 && flags&0x10 == 0: // SYN
				return wireEvent{kind: "syn", mac: dstMAC, src: src, dst: dst}, true
			case flags&0x04 != 0: // RST
				return wireEvent{kind: "rst", mac: srcMAC, src: src, dst: src}, true
			}
		}
	}
	return wireEvent{}, false
}

// since returns the events from t on.
func (w *wire) since(t time.Time) []wireEvent {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []wireEvent
	for _, e := range w.events {
		if !e.at.Before(t) {
			out = append(out, e)
		}
	}
	return out
}

// node names a MAC.
func (w *wire) node(mac string) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	if n, ok := w.macs[mac]; ok {
		return n
	}
	return mac
}

// masters lists, in order, the nodes that sent a VRRP advert with a
// non-zero priority for vrid in [from, to), but skip (a killed node's
// last adverts).
func (w *wire) masters(from, to time.Time, vrid int, skip string) []string {
	var out []string
	for _, e := range w.since(from) {
		if !e.at.Before(to) {
			break
		}
		if e.kind != "vrrp" || e.vrid != vrid || e.prio == 0 {
			continue
		}
		n := w.node(e.mac)
		if n == skip {
			continue
		}
		if len(out) == 0 || out[len(out)-1] != n {
			out = append(out, n)
		}
	}
	return out
}

// timeline describes what the wire saw for vip and vrid in [from, to):
// adverts (one line per change of advertiser or priority), ARPs for the
// VIP, and the MAC each SYN to the VIP went to (one line per change).
func (w *wire) timeline(from, to time.Time, vip string, vrid int) string {
	var b strings.Builder
	lastAdv := map[string]int{}
	lastSyn := ""
	for _, e := range w.since(from) {
		if !e.at.Before(to) {
			break
		}
		rel := e.at.Sub(from).Round(100 * time.Microsecond)
		switch {
		case e.kind == "vrrp" && e.vrid == vrid:
			n := w.node(e.mac)
			if p, ok := lastAdv[n]; ok && p == e.prio {
				continue
			}
			lastAdv[n] = e.prio
			fmt.Fprintf(&b, "  +%v advert vrid %d from %s priority %d\n", rel, vrid, n, e.prio)
		case (e.kind == "garp" || e.kind == "arp") && (e.dst == vip || e.src == vip):
			fmt.Fprintf(&b, "  +%v %s %s→%s from %s\n", rel, e.kind, e.src, e.dst, w.node(e.mac))
		case e.kind == "syn" && e.dst == vip:
			if n := w.node(e.mac); n != lastSyn {
				lastSyn = n
				fmt.Fprintf(&b, "  +%v client SYNs to %s now go to %s\n", rel, vip, n)
			}
		case e.kind == "rst" && e.src == vip:
			fmt.Fprintf(&b, "  +%v reset from %s (%s)\n", rel, vip, w.node(e.mac))
		}
	}
	return b.String()
}
