package agent

import (
	"context"
	"net/netip"

	"github.com/fulcrumlb/fulcrum/dataplane/haproxy"
)

// The roles HAProxy plays for Apply, each named for what Apply asks of it.
// New wires the real ones (the dataplane/haproxy types); unit tests of
// Apply's decisions (apply_unit_test.go) put fakes in their place.

// checker runs `haproxy -c` on a candidate configuration file: nil when it
// passes, a *haproxy.CheckError with HAProxy's alerts when HAProxy rejects
// it, any other error when HAProxy could not be run.
type checker interface {
	Check(ctx context.Context, path string) error
}

// reloader reloads HAProxy onto the configuration file through the master
// CLI and confirms the new worker (*haproxy.Process): a *haproxy.ReloadError
// when HAProxy refused the file (the old workers keep serving),
// haproxy.ErrNotRunning when there is no HAProxy to reload.
type reloader interface {
	Reload(ctx context.Context) error
}

// runtimeAPI changes what a running HAProxy serves without a reload
// (haproxy.Runtime): members' address, weight and state, servers added,
// certificates replaced.
type runtimeAPI interface {
	AddServer(ctx context.Context, backend, server, addrPort, options string) error
	SetState(ctx context.Context, backend, server, state string) error
	SetAddr(ctx context.Context, backend, server, addr string, port int) error
	SetWeight(ctx context.Context, backend, server string, weight int) error
	SetSSLCert(ctx context.Context, file, pemBundle string) error
}

// binder tells whether HAProxy could bind a VIP:port it does not bind yet
// (haproxy.CanBind: a test bind with HAProxy's socket options).
type binder interface {
	CanBind(ap netip.AddrPort) error
}

// haproxyChecker is the real checker: the haproxy binary's `-c`.
type haproxyChecker struct{ binary string }

func (c haproxyChecker) Check(ctx context.Context, path string) error {
	return haproxy.Check(ctx, c.binary, path)
}

// socketBinder is the real binder.
type socketBinder struct{}

func (socketBinder) CanBind(ap netip.AddrPort) error { return haproxy.CanBind(ap) }

// The real roles satisfy the interfaces.
var (
	_ checker    = haproxyChecker{}
	_ reloader   = (*haproxy.Process)(nil)
	_ runtimeAPI = haproxy.Runtime{}
	_ binder     = socketBinder{}
)
