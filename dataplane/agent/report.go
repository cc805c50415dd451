package agent

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/fulcrumlb/fulcrum/dataplane/haproxy"
	"github.com/fulcrumlb/fulcrum/openapi"
)

// DefaultReportInterval is the report interval before the first snapshot
// tells the node group's (the API's default heartbeat interval).
const DefaultReportInterval = 2 * time.Second

// reportInterval is Config.ReportInterval when set, else the node group's
// heartbeat interval from the last snapshot.
func (a *Agent) reportInterval() time.Duration {
	if a.cfg.ReportInterval > 0 {
		return a.cfg.ReportInterval
	}
	a.mu.Lock()
	snap := a.snap
	a.mu.Unlock()
	if snap != nil && snap.HeartbeatIntervalMs != nil && *snap.HeartbeatIntervalMs > 0 {
		return time.Duration(*snap.HeartbeatIntervalMs) * time.Millisecond
	}
	return DefaultReportInterval
}

// AdminState is what the last applied snapshot says an admin set for this
// node: in_service, cordoned (keep serving, claim no new VIPs) or draining
// (give up the node's VIPs, let connections finish, then stop serving). VIP
// management acts on it.
func (a *Agent) AdminState() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.snap == nil || a.snap.Node == nil {
		return string(openapi.SnapshotNodeAdminStateInService)
	}
	return string(a.snap.Node.AdminState)
}

// reportLoop reports after every apply and every report interval (the node
// group's heartbeat interval unless configured), and logs changes of the
// node's admin state.
func (a *Agent) reportLoop(ctx context.Context) {
	interval := a.reportInterval()
	t := time.NewTicker(interval)
	defer t.Stop()
	state := a.AdminState()
	for {
		var tick bool // a heartbeat, not a report after an apply
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			tick = true
			select {
			case <-a.reportCh: // an apply as well
				tick = false
			default:
			}
		case <-a.reportCh:
		}
		if err := a.reportWith(ctx, tick); err != nil && ctx.Err() == nil {
			a.log.Debug("report failed", "err", err)
		}
		if d := a.reportInterval(); d != interval {
			a.log.Info("report interval changed", "interval", d)
			interval = d
			t.Reset(d)
		}
		if s := a.AdminState(); s != state {
			a.log.Info("node admin state changed", "admin_state", s)
			state = s
		}
	}
}

// memberStatus maps HAProxy's server status to the API's.
func memberStatus(s string) openapi.NodeReportMembersStatus {
	switch {
	case strings.HasPrefix(s, "UP"):
		return openapi.NodeReportMembersStatusOnline
	case strings.HasPrefix(s, "DOWN"):
		return openapi.NodeReportMembersStatusOffline
	case strings.HasPrefix(s, "MAINT"):
		return openapi.NodeReportMembersStatusMaint
	case strings.HasPrefix(s, "DRAIN"), strings.HasPrefix(s, "NOLB"):
		return openapi.NodeReportMembersStatusDraining
	}
	return openapi.NodeReportMembersStatusNoMonitor
}

// report sends the applied revision, load balancer errors, member health and counters.
func (a *Agent) report(ctx context.Context) error { return a.reportWith(ctx, false) }

// reportWith reports; a heartbeat (tick) reads HAProxy's counters and
// health only when they may have changed since the last report the API
// accepted (see quietReports).
func (a *Agent) reportWith(ctx context.Context, tick bool) error {
	body, live := a.reportBody()
	if body == nil {
		return nil
	}
	var statsSent, membersSent func()
	now := time.Now()
	// The first heartbeat after a reload reads the whole new worker, as
	// the report after an apply that reloaded did before (noteScope).
	whole := tick && a.takeWholeAtTick()
	// A node whose frontends showed no traffic at the last read, without
	// health checks: heartbeats read nothing until the next idle read is
	// due (quietReports.resting).
	if tick && !whole && live != nil && !monitored(live) && a.quiet.resting(now, idleReadHeartbeats*a.reportInterval()) {
		return a.send(ctx, body, nil)
	}
	// The frontends' rows first: a heartbeat with them as they were at the
	// last report, on a node without health checks, has nothing new to say.
	// After an apply they are read only for a whole read (below): a report
	// of a few pools' members does not use them, and at 1,000 load
	// balancers they are 1,000 rows HAProxy writes and the agent reads
	// right as the change takes effect.
	front := ""
	readFront := func() {
		if f, err := a.runtime.Command(ctx, "show stat -1 1 -1"); err == nil {
			front = f
		}
	}
	if tick {
		readFront()
	}
	if tick && !whole && live != nil && front != "" && !monitored(live) {
		if a.quiet.unchanged(front, now) {
			a.quiet.rest(now)
			return a.send(ctx, body, nil)
		}
		// Traffic through a few load balancers: their rows only.
		if a.reportTraffic(ctx, body, live, front, now) {
			return nil
		}
	}
	if !tick && live != nil {
		// After applies that changed a few pools without a reload: the
		// health of their members only; counters wait for the heartbeat.
		if pools, ok := a.takeReportScope(); ok {
			if a.reportPools(ctx, body, pools) {
				return nil
			}
		}
	}
	if !tick {
		readFront()
	}
	if live != nil {
		// Every member and counter, read in pieces (wholeread.go) so that
		// the worker keeps serving while it writes them; a heartbeat
		// paces them, a report after an apply (the node's errors) does not.
		var between func(context.Context) error
		if tick {
			between = pause(wholeReadPause)
		}
		if proxies, servers, err := a.readWhole(ctx, live, between); err == nil {
			members := a.withParked(memberRows(servers))
			// Only the members whose health changed (members_report.go).
			// A report with every member's health carries no counters (the
			// next one does): at 1,000 load balancers of 10 members each is
			// 0.4–0.8 MB, together more than the API takes (1 MB), and a
			// report refused would be sent in full again and again.
			fullMembers := a.memberReports.fullDue(now)
			changed, sent := a.memberReports.unsent(members, now)
			if len(changed) > 0 {
				body.Members = &changed
			}
			membersSent = sent
			if !fullMembers {
				// Only the load balancers whose counters changed (stats.go).
				stats, sent := a.stats.unsent(a.lbStats(ctx, proxies, servers, live), now)
				body.Stats = &stats
				statsSent = sent
			}
		} else {
			a.log.Debug("whole read failed", "err", err)
		}
	}
	accepted := func() {
		if statsSent != nil {
			statsSent()
		}
		if membersSent != nil {
			membersSent()
		}
		if statsSent != nil {
			a.quiet.read(front, now) // counters and health as of front
		}
	}
	if !tick && a.ackedByPoll(body) { // pollack.go: a poll carries the acknowledgement
		accepted()
		return nil
	}
	return a.send(ctx, body, accepted)
}

// memberRows are the members' health in servers (rows of `show stat`).
func memberRows(servers []haproxy.ServerStat) []reportMember {
	members := make([]reportMember, 0, len(servers))
	for _, s := range servers {
		if !strings.HasPrefix(s.Server, "mbr_") {
			continue
		}
		check := truncate(s.CheckStatus, 250)
		st := memberStatus(s.Status)
		if s.CheckStatus == "" && st == openapi.NodeReportMembersStatusOnline {
			st = openapi.NodeReportMembersStatusNoMonitor
		}
		members = append(members, reportMember{Check: &check, Id: s.Server, Status: st})
	}
	return members
}

// withParked adds the members of load balancers without listeners (in no
// backend) to members.
func (a *Agent) withParked(members []reportMember) []reportMember {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, pm := range a.parked {
		members = append(members, reportMember{Id: pm.id, Status: pm.status})
	}
	return members
}

// maxScopedPools bounds the pools a report after applies reads one by one;
// beyond, it reads everything.
const maxScopedPools = 20

// reportScope is what changed in HAProxy since the last report after an
// apply: the pools whose servers changed through the runtime API, or all
// (a reload, a start, many pools). a.mu guards it.
type reportScope struct {
	pools map[string]bool
	all   bool
	// wholeAtTick: a reload replaced the worker since; the next heartbeat
	// reads the whole of the new one (not only what changed, and not
	// resting). It outlives the report after the apply.
	wholeAtTick bool
}

// noteScope records what an apply changed; a.mu held.
//
// A reload is scoped like a runtime change: the report right after it
// reads the pools of the load balancers that changed (their members'
// health), and the next heartbeat reads the whole new worker. Read at once
// (as before session 9), the whole worker — 3.3 MB of `show stat` at 1,000
// load balancers, ≈ 64 ms of the agent's CPU and its garbage, and HAProxy's
// new worker writing it — came right while that worker took its first
// requests: the first member change after a listener's creation took 35–120
// ms instead of 10. (That heartbeat's read is in paced pieces since session
// 10: wholeread.go.) What the rest of the worker says does not change with
// the reload (the server-state file carries the members' health across it;
// its counters start again at zero).
func (a *Agent) noteScope(reloaded bool, prev map[string]haproxy.LoadBalancer, cfg haproxy.Config, changed []string) {
	if reloaded {
		a.scope.wholeAtTick = true
	}
	if a.scope.all {
		return
	}
	if a.scope.pools == nil {
		a.scope.pools = map[string]bool{}
	}
	for _, lb := range cfg.LoadBalancers {
		if !slices.Contains(changed, lb.ID) {
			continue
		}
		for _, p := range lb.Pools {
			a.scope.pools[p.ID] = true
		}
		for _, p := range prev[lb.ID].Pools {
			a.scope.pools[p.ID] = true
		}
	}
	if len(a.scope.pools) > maxScopedPools {
		a.scope = reportScope{all: true, wholeAtTick: a.scope.wholeAtTick}
	}
}

// takeWholeAtTick says, once, whether a heartbeat must read the whole
// worker (a reload since the last one that did).
func (a *Agent) takeWholeAtTick() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	w := a.scope.wholeAtTick
	a.scope.wholeAtTick = false
	return w
}

// takeReportScope returns the pools to read, and false when everything must
// be read; the scope starts over.
func (a *Agent) takeReportScope() ([]string, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	sc := a.scope
	a.scope = reportScope{wholeAtTick: sc.wholeAtTick}
	if sc.all || !a.memberReports.any() {
		return nil, false
	}
	pools := make([]string, 0, len(sc.pools))
	for id := range sc.pools {
		pools = append(pools, id)
	}
	sort.Strings(pools)
	return pools, true
}

// reportPools sends body with the health of the members of pools (read
// with `show stat <pool> -1 -1`, a few rows each) that changed, and
// reports whether it did; false leaves the report to a full read.
func (a *Agent) reportPools(ctx context.Context, body *openapi.NodeReport, pools []string) bool {
	var members []reportMember
	for _, id := range pools {
		_, servers, err := a.runtime.StatsOf(ctx, id)
		if err != nil {
			var ce *haproxy.CommandError
			if errors.As(err, &ce) {
				continue // a pool HAProxy no longer has
			}
			a.markScopeAll()
			return false
		}
		members = append(members, memberRows(servers)...)
	}
	changed, sent := a.memberReports.unsentOf(a.withParked(members))
	if len(changed) > 0 {
		body.Members = &changed
	}
	if a.ackedByPoll(body) { // pollack.go: a poll carries the acknowledgement
		sent()
		return true
	}
	if err := a.send(ctx, body, sent); err != nil {
		a.markScopeAll()
		a.log.Debug("report failed", "err", err)
	}
	return true
}

func (a *Agent) markScopeAll() {
	a.mu.Lock()
	a.scope = reportScope{all: true}
	a.mu.Unlock()
}

// reportTraffic sends a heartbeat with the counters of the load balancers
// whose frontends' rows differ from the last read (front against the rows
// of that read), reading only their frontends and pools (`show stat <name>
// -1 -1`), and reports whether it did. When HAProxy's worker is not the one
// the counters were read from (a reload the agent did not make), those
// are the load balancers with counts in the new worker (movedLBs). It does
// not when many changed or when the periodic full read (quietEvery) is
// due; the caller then reads everything.
func (a *Agent) reportTraffic(ctx context.Context, body *openapi.NodeReport, live *haproxy.Config, front string, now time.Time) bool {
	prev, ok := a.quiet.last(now)
	if !ok || a.stats.fullDue(now) {
		return false
	}
	before := map[string]string{}
	for _, line := range strings.Split(prev, "\n") {
		if name, _, ok := strings.Cut(line, ","); ok && !strings.HasPrefix(line, "#") {
			before[name] = line
		}
	}
	owner := map[string]string{} // listener id → LB id
	for _, lb := range live.LoadBalancers {
		for _, l := range lb.Listeners {
			owner[l.ID] = lb.ID
		}
	}
	worker, err := a.workerPid(ctx)
	if err != nil {
		return false
	}
	same := a.stats.sameWorker(worker)
	lbs := map[string]bool{}
	if same {
		for _, line := range strings.Split(front, "\n") {
			name, _, ok := strings.Cut(line, ",")
			if !ok || strings.HasPrefix(line, "#") || before[name] == line {
				continue
			}
			lb, known := owner[name]
			if !known {
				continue // not a tenant's listener (the exporter, say)
			}
			lbs[lb] = true
		}
		if len(lbs) == 0 {
			return false
		}
	} else {
		// A worker the counters were not read from (a reload the agent
		// did not make, HAProxy restarted): the load balancers with
		// counts in it, as before a reload (sampleStats).
		fronts, _, err := haproxy.ParseStat(front)
		if err != nil {
			return false
		}
		lbs = a.stats.movedLBs(worker, fronts, live)
	}
	if len(lbs) > maxScopedPools {
		return false
	}
	proxies, servers, err := a.statsOfLBs(ctx, live, lbs)
	if err != nil {
		return false
	}
	sub := subConfig(live, lbs)
	objs := statObjects(sub)
	var entries map[string]statEntry
	if same {
		entries = a.stats.observeSome(worker, readings(proxies, servers, objs), objs)
	} else {
		// Every entry moves to the base; those read take the new counts.
		entries = a.stats.sample(worker, readings(proxies, servers, objs), objs, true)
	}
	stats, sent := a.stats.unsentOf(buildStats(entries, sub))
	body.Stats = &stats
	if err := a.send(ctx, body, func() { sent(); a.quiet.advance(front) }); err != nil {
		a.log.Debug("report failed", "err", err)
	}
	return true
}

// send sends a report; accepted runs when the API accepted it.
func (a *Agent) send(ctx context.Context, body *openapi.NodeReport, accepted func()) error {
	res, err := a.client.ReportNodeWithResponse(ctx, a.cfg.NodeName, *body)
	if err != nil {
		return err
	}
	if res.StatusCode() != http.StatusNoContent {
		a.log.Warn("report rejected", "status", res.StatusCode(), "body", string(res.Body))
		return nil
	}
	if accepted != nil {
		accepted()
	}
	return nil
}

// monitored reports whether any member of cfg has health checks: their
// results change without traffic.
func monitored(cfg *haproxy.Config) bool {
	for i := range cfg.LoadBalancers { // by index: a LoadBalancer is large to copy
		pools := cfg.LoadBalancers[i].Pools
		for j := range pools {
			if pools[j].Monitor != nil && len(pools[j].Members) > 0 {
				return true
			}
		}
	}
	return false
}

// quietEvery bounds how long heartbeats go without reading every counter
// and member (3.3 MB of `show stat` at 1,000 load balancers of 10 members,
// parsed, and two reports of every member and every load balancer: most of
// an idle node's CPU when it was every minute).
const quietEvery = 5 * time.Minute

// idleReadHeartbeats is how many heartbeats apart those of an idle node (no
// traffic through its frontends at the last read, no health checks) read
// the frontends' rows (10 s at the default 2 s): traffic that starts after
// a quiet spell reaches the counters within this (plus a heartbeat); while
// traffic flows, every heartbeat reads them.
const idleReadHeartbeats = 5

// quietReports lets heartbeats of an idle node skip reading and parsing
// `show stat` (3.3 MB at 1,000 load balancers of 10 members): all traffic
// enters through the frontends, so while their rows (`show stat -1 1 -1`,
// cumulative sessions and bytes) are as they were when the last full report
// was accepted, no counter changed; without health checks, a member's health
// changes only by an apply, and every apply is followed by a full report.
// Every quietEvery a full read happens anyway. Once a read finds the
// frontends as they were, heartbeats read nothing for idleReadHeartbeats: even
// the frontends' rows are 248 KB for HAProxy to write at 1,000 load
// balancers.
type quietReports struct {
	mu     sync.Mutex
	front  string    // the frontends' rows read just before the last full report accepted
	fullAt time.Time // when that report read them
	// restAt is when a heartbeat last found the frontends unchanged (zero
	// after traffic or a full read); every, when set, replaces the
	// interval resting is given (tests).
	restAt time.Time
	every  time.Duration
}

// resting says whether a heartbeat may skip reading the frontends: the
// last read found them unchanged less than every ago, and the periodic
// full read (quietEvery) is not due.
func (q *quietReports) resting(now time.Time, every time.Duration) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.every > 0 {
		every = q.every
	}
	return q.front != "" && !q.restAt.IsZero() && now.Sub(q.restAt) < every && now.Sub(q.fullAt) < quietEvery
}

// rest notes a heartbeat's read that found the frontends unchanged.
func (q *quietReports) rest(now time.Time) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.restAt = now
}

func (q *quietReports) unchanged(front string, now time.Time) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.front != "" && front == q.front && now.Sub(q.fullAt) < quietEvery
}

// last is the frontends' rows the counters were last read at, while the
// periodic full read (quietEvery) is not due.
func (q *quietReports) last(now time.Time) (string, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.front, q.front != "" && now.Sub(q.fullAt) < quietEvery
}

// advance notes that the counters are read as of front (some load balancers'
// rows read; the others' did not change).
func (q *quietReports) advance(front string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.front != "" {
		q.front = front
	}
	q.restAt = time.Time{}
}

func (q *quietReports) read(front string, at time.Time) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.front, q.fullAt, q.restAt = front, at, time.Time{}
}

// reportBody is the report without health and counters: the revision
// served, the load balancers held back and the node's errors. nil when there
// is nothing to say yet.
func (a *Agent) reportBody() (*openapi.NodeReport, *haproxy.Config) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if (a.snap == nil || a.live == nil) && len(a.nodeErrors) == 0 {
		return nil, nil
	}
	lbErrors := make([]openapi.LoadBalancerError, 0, len(a.lbErrors))
	for id, f := range a.lbErrors {
		e := openapi.LoadBalancerError{LoadBalancerId: id, Message: truncate(f.Message, 8000)}
		if f.ObjectID != "" {
			e.ObjectId = &f.ObjectID
		}
		if f.Field != "" {
			e.Field = &f.Field
		}
		lbErrors = append(lbErrors, e)
	}
	sort.Slice(lbErrors, func(i, j int) bool { return lbErrors[i].LoadBalancerId < lbErrors[j].LoadBalancerId })
	nodeErrors := make([]openapi.NodeError, 0, len(a.nodeErrors))
	for kind, msg := range a.nodeErrors {
		nodeErrors = append(nodeErrors, openapi.NodeError{Kind: kind, Message: msg})
	}
	sort.Slice(nodeErrors, func(i, j int) bool { return nodeErrors[i].Kind < nodeErrors[j].Kind })
	body := &openapi.NodeReport{Status: openapi.Ack, LoadBalancerErrors: &lbErrors, NodeErrors: &nodeErrors}
	if a.snap != nil {
		body.Revision = a.snap.Revision
	}
	return body, a.live
}

// reportNack tells the API a snapshot could not be applied at all.
func (a *Agent) reportNack(ctx context.Context, revision int64, cause error) {
	msg := truncate(cause.Error(), 8000)
	body, _ := a.reportBody()
	if body == nil {
		body = &openapi.NodeReport{}
	}
	body.Revision, body.Status, body.Message = revision, openapi.Nack, &msg
	res, err := a.client.ReportNodeWithResponse(ctx, a.cfg.NodeName, *body)
	if err != nil || res.StatusCode() != http.StatusNoContent {
		a.log.Warn("nack report failed", "err", err)
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

// reportOnce registers and reports now, bounded: the node's errors reach the
// API even when the agent cannot go on.
func (a *Agent) reportOnce(ctx context.Context) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := a.register(ctx); err != nil {
		return
	}
	if err := a.report(ctx); err != nil {
		a.log.Warn("report failed", "err", err)
	}
}

// pollAfter is the revision the next poll asks to be newer than: the one
// served, or one that failed as a whole (it is not fetched again).
func (a *Agent) pollAfter() int64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	after := a.failedRev
	if a.snap != nil {
		after = max(after, a.snap.Revision)
	}
	return after
}

// retryInterval is how often a failure that may pass is retried (a state
// dir that was not writable, a port another process held). Retries cost no
// reload unless the failure has passed.
const retryInterval = 2 * time.Second

// retryLoop re-applies the newest snapshot while a failure that may pass
// is in force.
// While the failure lasts, the interval doubles up to maxRetryInterval.
func (a *Agent) retryLoop(ctx context.Context) {
	wait := retryInterval
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		a.mu.Lock()
		snap := a.want
		if snap == nil {
			snap = a.snap
		}
		retry := a.retry && snap != nil && a.live != nil
		a.mu.Unlock()
		if !retry {
			wait = retryInterval
			continue
		}
		if err := a.apply(ctx, snap, true); err != nil && ctx.Err() == nil {
			a.log.Debug("retry apply", "revision", snap.Revision, "err", err)
		}
		wait = min(2*wait, maxRetryInterval)
	}
}

// maxRetryInterval bounds the retry interval.
const maxRetryInterval = 10 * time.Second
