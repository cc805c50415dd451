package haproxy

import (
	"errors"
	"fmt"
	"net/netip"
	"syscall"
)

// CanBind reports whether HAProxy could bind a listener on addr: it binds a
// TCP socket there with the options HAProxy 2.6 uses on Linux (SO_REUSEADDR
// and SO_REUSEPORT; a plain bind otherwise, so a non-local address needs
// net.ipv4.ip_nonlocal_bind as it does for HAProxy) and closes it again
// without listening, so no connection is ever queued on it. A port another
// process holds without SO_REUSEPORT fails with "Address already in use";
// HAProxies sharing a VIP through SO_REUSEPORT (two nodes on one host) do not.
// The error reads like HAProxy's: "cannot bind socket (<reason>) [<addr>]".
func CanBind(addr netip.AddrPort) error {
	if !addr.IsValid() {
		return errors.New("cannot bind socket (invalid address)")
	}
	family := syscall.AF_INET
	if addr.Addr().Is6() && !addr.Addr().Is4In6() {
		family = syscall.AF_INET6
	}
	fd, err := syscall.Socket(family, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, syscall.IPPROTO_TCP)
	if err != nil {
		return bindError(addr, err)
	}
	defer syscall.Close(fd)
	_ = syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1)
	const soReusePort = 0xf // SO_REUSEPORT on Linux
	_ = syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, soReusePort, 1)
	var sa syscall.Sockaddr
	if family == syscall.AF_INET6 {
		_ = syscall.SetsockoptInt(fd, syscall.IPPROTO_IPV6, syscall.IPV6_V6ONLY, 1)
		sa6 := &syscall.SockaddrInet6{Port: int(addr.Port()), Addr: addr.Addr().As16()}
		sa = sa6
	} else {
		sa = &syscall.SockaddrInet4{Port: int(addr.Port()), Addr: addr.Addr().Unmap().As4()}
	}
	if err := syscall.Bind(fd, sa); err != nil {
		return bindError(addr, err)
	}
	return nil
}

func bindError(addr netip.AddrPort, err error) error {
	msg := err.Error()
	if errors.Is(err, syscall.EADDRINUSE) {
		msg = "Address already in use"
	} else if errors.Is(err, syscall.EADDRNOTAVAIL) {
		msg = "Cannot assign requested address"
	}
	return fmt.Errorf("cannot bind socket (%s) [%s]", msg, addr)
}
