package agent

import (
	"context"
	"net/http"
	"strings"
	"time"

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
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-a.reportCh:
		}
		if err := a.report(ctx); err != nil && ctx.Err() == nil {
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
func (a *Agent) report(ctx context.Context) error {
	a.mu.Lock()
	snap, live := a.snap, a.live
	lbErrors := make([]openapi.LoadBalancerError, 0, len(a.lbErrors))
	for id, msg := range a.lbErrors {
		lbErrors = append(lbErrors, openapi.LoadBalancerError{LoadBalancerId: id, Message: truncate(msg, 8000)})
	}
	a.mu.Unlock()
	if snap == nil || live == nil {
		return nil
	}
	body := openapi.NodeReport{Revision: snap.Revision, Status: openapi.Ack, LoadBalancerErrors: &lbErrors}
	proxies, servers, err := a.runtime.Stats(ctx)
	if err == nil {
		members := make([]struct {
			Check  *string                         `json:"check,omitempty"`
			Id     string                          `json:"id"`
			Status openapi.NodeReportMembersStatus `json:"status"`
		}, 0, len(servers))
		for _, s := range servers {
			if !strings.HasPrefix(s.Server, "mbr_") {
				continue
			}
			check := truncate(s.CheckStatus, 250)
			st := memberStatus(s.Status)
			if s.CheckStatus == "" && st == openapi.NodeReportMembersStatusOnline {
				st = openapi.NodeReportMembersStatusNoMonitor
			}
			members = append(members, struct {
				Check  *string                         `json:"check,omitempty"`
				Id     string                          `json:"id"`
				Status openapi.NodeReportMembersStatus `json:"status"`
			}{&check, s.Server, st})
		}
		body.Members = &members
		lbOf := map[string]string{}
		for _, lb := range live.LoadBalancers {
			for _, l := range lb.Listeners {
				lbOf[l.ID] = lb.ID
			}
		}
		sums := map[string]*openapi.LoadBalancerStats{}
		for _, p := range proxies {
			lbID, ok := lbOf[p.Name]
			if !ok || p.Type != "frontend" {
				continue
			}
			s := sums[lbID]
			if s == nil {
				s = &openapi.LoadBalancerStats{LoadBalancerId: lbID, ConnectionsCurrent: new(int64), ConnectionsTotal: new(int64),
					RequestsTotal: new(int64), BytesIn: new(int64), BytesOut: new(int64), Responses1xx: new(int64), Responses2xx: new(int64),
					Responses3xx: new(int64), Responses4xx: new(int64), Responses5xx: new(int64), Errors: new(int64)}
				sums[lbID] = s
			}
			*s.ConnectionsCurrent += p.CurrentSessions
			*s.ConnectionsTotal += p.TotalSessions
			*s.RequestsTotal += p.Requests
			*s.BytesIn += p.BytesIn
			*s.BytesOut += p.BytesOut
			*s.Responses1xx += p.HRsp1xx
			*s.Responses2xx += p.HRsp2xx
			*s.Responses3xx += p.HRsp3xx
			*s.Responses4xx += p.HRsp4xx
			*s.Responses5xx += p.HRsp5xx
			*s.Errors += p.Errors
		}
		stats := make([]openapi.LoadBalancerStats, 0, len(sums))
		for _, s := range sums {
			stats = append(stats, *s)
		}
		body.Stats = &stats
	}
	res, err := a.client.ReportNodeWithResponse(ctx, a.cfg.NodeName, body)
	if err != nil {
		return err
	}
	if res.StatusCode() != http.StatusNoContent {
		a.log.Warn("report rejected", "status", res.StatusCode(), "body", string(res.Body))
	}
	return nil
}

// reportNack tells the API a snapshot could not be applied at all.
func (a *Agent) reportNack(ctx context.Context, revision int64, cause error) {
	msg := truncate(cause.Error(), 8000)
	res, err := a.client.ReportNodeWithResponse(ctx, a.cfg.NodeName, openapi.NodeReport{Revision: revision, Status: openapi.Nack, Message: &msg})
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
