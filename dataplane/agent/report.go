package agent

import (
	"context"
	"net/http"
	"strings"
	"time"

	"github.com/fulcrumlb/fulcrum/openapi"
)

// reportLoop reports after every apply and every ReportInterval.
func (a *Agent) reportLoop(ctx context.Context) {
	t := time.NewTicker(a.cfg.ReportInterval)
	defer t.Stop()
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
		stats := a.lbStats(ctx, proxies, live)
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
