package agent

import (
	"context"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/fulcrumlb/fulcrum/openapi"
)

// agentMetrics are the agent's own instruments (served in Prometheus format
// by `fulcrum agent --metrics-addr`): fulcrum_agent_apply_duration_seconds,
// fulcrum_agent_apply_errors_total, fulcrum_agent_reloads_total{cause},
// fulcrum_agent_runtime_changes_total{op}, fulcrum_agent_snapshot_bytes,
// fulcrum_agent_applied_revision and fulcrum_agent_load_balancer_errors.
type agentMetrics struct {
	applyDuration  metric.Float64Histogram
	applyErrors    metric.Int64Counter
	reloads        metric.Int64Counter
	runtimeChanges metric.Int64Counter
	snapshotBytes  metric.Int64Gauge
	// runtimeFailed marks that the next reload replaces a runtime change
	// that failed.
	runtimeFailed atomic.Bool
}

func newAgentMetrics(a *Agent, mp metric.MeterProvider) *agentMetrics {
	m := mp.Meter("github.com/fulcrumlb/fulcrum/dataplane/agent")
	am := &agentMetrics{}
	// Errors creating instruments leave no-op instruments: metrics must never
	// stop the dataplane.
	am.applyDuration, _ = m.Float64Histogram("fulcrum.agent.apply.duration", metric.WithUnit("s"),
		metric.WithDescription("Time to apply a snapshot: validation, config write, reload or runtime changes."),
		metric.WithExplicitBucketBoundaries(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
	am.applyErrors, _ = m.Int64Counter("fulcrum.agent.apply.errors", metric.WithDescription("Snapshots that could not be applied at all."))
	am.reloads, _ = m.Int64Counter("fulcrum.agent.reloads", metric.WithDescription("HAProxy reloads, by cause: config (a change the runtime API cannot make) or runtime_failed."))
	am.runtimeChanges, _ = m.Int64Counter("fulcrum.agent.runtime_changes", metric.WithDescription("Changes made through HAProxy's runtime API without a reload, by operation."))
	am.snapshotBytes, _ = m.Int64Gauge("fulcrum.agent.snapshot.size", metric.WithUnit("By"), metric.WithDescription("Size of the last snapshot received."))
	_, _ = m.Int64ObservableGauge("fulcrum.agent.applied_revision", metric.WithDescription("Revision HAProxy serves."),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			o.Observe(a.AppliedRevision())
			return nil
		}))
	_, _ = m.Int64ObservableGauge("fulcrum.agent.load_balancer_errors", metric.WithDescription("Load balancers HAProxy rejected, kept at their last good version or left out."),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			a.mu.Lock()
			n := len(a.lbErrors)
			a.mu.Unlock()
			o.Observe(int64(n))
			return nil
		}))
	// fulcrum_agent_proxy_info{proxy, load_balancer_id, tenant_id} 1: joins
	// HAProxy's exporter series (labelled proxy="<listener or pool id>") to
	// their load balancer and tenant.
	_, _ = m.Int64ObservableGauge("fulcrum.agent.proxy.info", metric.WithDescription("1 per HAProxy proxy (listener or pool id), naming its load balancer and tenant."),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			a.mu.Lock()
			live, snap := a.live, a.snap
			a.mu.Unlock()
			if live == nil {
				return nil
			}
			tenant := map[string]string{}
			if snap != nil {
				for _, lb := range snap.LoadBalancers {
					tenant[lb.LoadBalancer.Id] = lb.LoadBalancer.TenantId
				}
			}
			for _, lb := range live.LoadBalancers {
				ids := attribute.NewSet(attribute.String("load_balancer_id", lb.ID), attribute.String("tenant_id", tenant[lb.ID]))
				for _, l := range lb.Listeners {
					o.Observe(1, metric.WithAttributes(append(ids.ToSlice(), attribute.String("proxy", l.ID))...))
				}
				for _, p := range lb.Pools {
					o.Observe(1, metric.WithAttributes(append(ids.ToSlice(), attribute.String("proxy", p.ID))...))
				}
			}
			return nil
		}))
	return am
}

// observeApply records one Apply (deferred at its start).
func (m *agentMetrics) observeApply(ctx context.Context, start time.Time, snap *openapi.Snapshot, err *error) {
	result := "ok"
	if *err != nil {
		result = "error"
		m.applyErrors.Add(ctx, 1)
	}
	m.applyDuration.Record(ctx, time.Since(start).Seconds(), metric.WithAttributes(attribute.String("result", result)))
}

// observeSnapshot records the size of a snapshot received (its body as read,
// uncompressed): encoding it again per apply would cost more than the apply.
func (m *agentMetrics) observeSnapshot(ctx context.Context, body []byte) {
	m.snapshotBytes.Record(ctx, int64(len(body)))
}

// observeReload counts a reload (called just before it).
func (m *agentMetrics) observeReload(ctx context.Context) {
	cause := "config"
	if m.runtimeFailed.Swap(false) {
		cause = "runtime_failed"
	}
	m.reloads.Add(ctx, 1, metric.WithAttributes(attribute.String("cause", cause)))
}

// observeRuntime counts the runtime changes of one apply, or marks that they
// failed (the apply falls back to a reload).
func (m *agentMetrics) observeRuntime(ctx context.Context, ops []memberOp, err error) {
	if err != nil {
		m.runtimeFailed.Store(true)
		return
	}
	for _, op := range ops {
		m.runtimeChanges.Add(ctx, 1, metric.WithAttributes(attribute.String("op", op.kind)))
	}
}
