package agent

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/fulcrumlb/fulcrum/dataplane/haproxy"
)

// A whole read of the worker (every listener's, pool's and member's row of
// `show stat`: the heartbeat after a reload, the periodic full read of
// quietReports, the member reports' full list) is made of pieces: one
// exchange asks for a few load balancers' proxies (`show stat <name> -1 -1`
// each, haproxy.Runtime.StatsOfEach), and the agent pauses between
// exchanges. In one exchange (`show stat`, 3.3 MB at 1,000 load balancers
// of 10 members) HAProxy's worker spent 45–60 ms writing while it served,
// and requests through it waited up to 35 ms (a member change met it at 52
// ms); the agent parsed the 3.3 MB right after, 64 ms of a second core. In
// pieces of wholeReadRows no request waited more than 1–2 ms for one
// (BENCHMARKS.md, issue 10 session 10: member). HAProxy writes a header
// line per command, so the pieces carry 1.7× the bytes of one `show stat`.

// wholeReadRows bounds the rows one exchange of a whole read asks for
// (each listener, pool and member counts one): about 5 load balancers of
// 10 members, 16 KB of rows and 1.3 KB of header per proxy.
const wholeReadRows = 60

// wholeReadPause is the pause between two exchanges of a whole read:
// HAProxy's worker serves undisturbed meanwhile. At 1,000 load balancers of
// 10 members a whole read takes 200 exchanges, about 0.6 s.
const wholeReadPause = 2 * time.Millisecond

// errWorkerChanged: HAProxy's worker changed during a whole read (a
// reload), so its pieces are not of one worker.
var errWorkerChanged = errors.New("haproxy's worker changed during the read")

// readWhole returns the rows of `show stat` of every listener, pool and
// member of live (what a whole `show stat` has of them, in its order), read
// in pieces of at most wholeReadRows rows; between two, it calls between
// when set (pause). It fails when the worker changed meanwhile.
func (a *Agent) readWhole(ctx context.Context, live *haproxy.Config, between func(context.Context) error) ([]haproxy.ProxyStat, []haproxy.ServerStat, error) {
	before, err := a.workerPid(ctx)
	if err != nil {
		return nil, nil, err
	}
	var proxies []haproxy.ProxyStat
	var servers []haproxy.ServerStat
	var names []string
	rows, pieces := 0, 0
	read := func() error {
		if len(names) == 0 {
			return nil
		}
		if pieces > 0 && between != nil {
			if err := between(ctx); err != nil {
				return err
			}
		}
		px, sv, err := a.runtime.StatsOfEach(ctx, names)
		if err != nil {
			return err
		}
		proxies, servers = append(proxies, px...), append(servers, sv...)
		names, rows = names[:0], 0
		pieces++
		return nil
	}
	for i := range live.LoadBalancers { // by index: a LoadBalancer is large to copy
		lb := &live.LoadBalancers[i]
		n := len(lb.Listeners) + len(lb.Pools)
		for _, p := range lb.Pools {
			n += len(p.Members)
		}
		if rows > 0 && rows+n > wholeReadRows {
			if err := read(); err != nil {
				return nil, nil, err
			}
		}
		for _, l := range lb.Listeners {
			names = append(names, l.ID)
		}
		for _, p := range lb.Pools {
			names = append(names, p.ID)
		}
		rows += n
	}
	if err := read(); err != nil {
		return nil, nil, err
	}
	after, err := a.workerPid(ctx)
	if err != nil {
		return nil, nil, err
	}
	if after != before {
		return nil, nil, fmt.Errorf("whole read: %w (pid %s, then %s)", errWorkerChanged, before, after)
	}
	return proxies, servers, nil
}

// pause returns a between for readWhole that waits d.
func pause(d time.Duration) func(context.Context) error {
	return func(ctx context.Context) error {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
			return nil
		}
	}
}
