package haproxy

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"testing"
)

func TestCanBind(t *testing.T) {
	// A port another process holds without SO_REUSEPORT cannot be bound.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	held := netip.MustParseAddrPort(ln.Addr().String())
	err = CanBind(held)
	if err == nil || !strings.Contains(err.Error(), "cannot bind socket (Address already in use) ["+held.String()+"]") {
		t.Fatalf("held port: %v", err)
	}
	// A wildcard listener holds the port on every address.
	wild, err := net.Listen("tcp", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	defer wild.Close()
	port := uint16(wild.Addr().(*net.TCPAddr).Port)
	if err := CanBind(netip.AddrPortFrom(netip.MustParseAddr("127.0.0.9"), port)); err == nil {
		t.Fatal("a port held on 0.0.0.0 should not be bindable on a VIP")
	}

	// Another HAProxy sharing the VIP through SO_REUSEPORT does not count.
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		_ = c.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, 0xf, 1) })
		return serr
	}}
	shared, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer shared.Close()
	if err := CanBind(netip.MustParseAddrPort(shared.Addr().String())); err != nil {
		t.Fatalf("a port shared through SO_REUSEPORT: %v", err)
	}
	// The check leaves nothing bound.
	free := netip.MustParseAddrPort("127.0.0.1:0")
	if err := CanBind(free); err != nil {
		t.Fatal(err)
	}
	// IPv6 loopback works too, when the host has it.
	if l6, err := net.Listen("tcp", "[::1]:0"); err == nil {
		defer l6.Close()
		if err := CanBind(netip.MustParseAddrPort(l6.Addr().String())); err == nil {
			t.Fatal("held IPv6 port")
		}
	}
}
