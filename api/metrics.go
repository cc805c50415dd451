package api

import (
	"context"
	"fmt"
	"log/slog"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/fulcrumlb/fulcrum/api/store"
	"github.com/fulcrumlb/fulcrum/internal/telemetry"
)

const meterName = "github.com/fulcrumlb/fulcrum/api"

// Request-path instruments, from the global meter provider (which delegates
// to the one Setup installs, whenever that happens).
var (
	meter = otel.Meter(meterName)
	// fulcrum_api_snapshot_waiters: agents' long-polls waiting for a change.
	snapshotWaiters, _ = meter.Int64UpDownCounter("fulcrum.api.snapshot.waiters",
		metric.WithDescription("Agents' snapshot long-polls waiting for a change."))
	// fulcrum_api_node_reports_total: node reports received (rate ⇒ reports/s).
	nodeReports, _ = meter.Int64Counter("fulcrum.api.node.reports",
		metric.WithDescription("Node reports received, by status (ack, nack)."))
)

// waitSnapshot counts one long-poll waiter until the returned func is called.
func waitSnapshot(ctx context.Context) func() {
	snapshotWaiters.Add(ctx, 1)
	return func() { snapshotWaiters.Add(context.WithoutCancel(ctx), -1) }
}

// countReport counts a node report with its status.
func countReport(ctx context.Context, status string) {
	opt, ok := reportStatusOpts[status]
	if !ok {
		opt = metric.WithAttributes(attribute.String("status", status))
	}
	nodeReports.Add(ctx, 1, opt)
}

// reportStatusOpts are the attributes of the statuses counted at fleet
// rates, made once (every heartbeat and poll would allocate them).
var reportStatusOpts = func() map[string]metric.AddOption {
	m := map[string]metric.AddOption{}
	for _, s := range []string{"ack", "nack", "shed", "poll_ack"} {
		m[s] = metric.WithAttributeSet(attribute.NewSet(attribute.String("status", s)))
	}
	return m
}()

// registerStoreMetrics observes, at each collection, the objects by kind and
// provisioning status and each live node's revision lag (its group's revision
// minus the one it applied). The returned func unregisters them.
func registerStoreMetrics(tel *telemetry.Telemetry, st *store.Store, log *slog.Logger) func() {
	if tel == nil {
		return func() {}
	}
	m := tel.Meter(meterName)
	objects, err1 := m.Int64ObservableGauge("fulcrum.api.objects",
		metric.WithDescription("Live objects by kind and provisioning status."))
	lag, err2 := m.Int64ObservableGauge("fulcrum.api.node.revision_lag",
		metric.WithDescription("Revisions a node is behind its node group (0: up to date)."))
	if err1 != nil || err2 != nil {
		log.Warn("store metrics", "err", fmt.Sprint(err1, err2))
		return func() {}
	}
	reg, err := m.RegisterCallback(func(ctx context.Context, o metric.Observer) error {
		counts, err := st.ObjectCountByStatus(ctx)
		if err != nil {
			return err
		}
		for _, c := range counts {
			o.ObserveInt64(objects, c.N, metric.WithAttributes(attribute.String("kind", c.Table), attribute.String("provisioning_status", c.ProvisioningStatus)))
		}
		return st.Read(ctx, func(tx *store.Tx) error {
			nodes, err := store.NodeListLive(ctx, tx)
			if err != nil {
				return err
			}
			groupRev := map[string]int64{}
			for _, n := range nodes {
				rev, ok := groupRev[n.NodeGroupID]
				if !ok {
					if rev, err = store.GroupRevision(ctx, tx, n.NodeGroupID); err != nil {
						return err
					}
					groupRev[n.NodeGroupID] = rev
				}
				o.ObserveInt64(lag, max(rev-n.AppliedRevision, 0), metric.WithAttributes(attribute.String("node", n.Name)))
			}
			return nil
		})
	}, objects, lag)
	if err != nil {
		log.Warn("store metrics", "err", err)
		return func() {}
	}
	return func() { _ = reg.Unregister() }
}
