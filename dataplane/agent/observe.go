package agent

import (
	"context"
	"fmt"
	"sort"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/fulcrumlb/fulcrum/openapi"
)

// Span attribute keys shared by the agent's spans.
const (
	attrRevision       = "fulcrum.revision"
	attrNode           = "fulcrum.node"
	attrLoadBalancerID = "fulcrum.load_balancer_id"
	attrTenantID       = "fulcrum.tenant_id"
)

// applySpanOptions links the apply span of snap to every write the snapshot
// folds (its traceparents, and the newest write's traceparent), once each,
// and names the revision and the node.
func applySpanOptions(snap *openapi.Snapshot, node string) []trace.SpanStartOption {
	var tps []string
	if snap.Traceparents != nil {
		tps = append(tps, *snap.Traceparents...)
	}
	if snap.Traceparent != nil {
		tps = append(tps, *snap.Traceparent)
	}
	seen := map[trace.SpanID]bool{}
	var links []trace.Link
	for _, tp := range tps {
		sc := trace.SpanContextFromContext(propagation.TraceContext{}.Extract(context.Background(), propagation.MapCarrier{"traceparent": tp}))
		if !sc.IsValid() || seen[sc.SpanID()] {
			continue
		}
		seen[sc.SpanID()] = true
		links = append(links, trace.Link{SpanContext: sc})
	}
	return []trace.SpanStartOption{
		trace.WithLinks(links...),
		trace.WithAttributes(attribute.Int64(attrRevision, snap.Revision), attribute.String(attrNode, node)),
	}
}

// recordLBErrors marks the apply span as failed when HAProxy rejected load
// balancers, with one event per load balancer naming it, its tenant and
// HAProxy's message.
func recordLBErrors(span trace.Span, snap *openapi.Snapshot, lbErrors map[string]string) {
	if len(lbErrors) == 0 {
		return
	}
	tenant := map[string]string{}
	for _, lb := range snap.LoadBalancers {
		tenant[lb.LoadBalancer.Id] = lb.LoadBalancer.TenantId
	}
	ids := make([]string, 0, len(lbErrors))
	for id := range lbErrors {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		span.AddEvent("load balancer rejected", trace.WithAttributes(
			attribute.String(attrLoadBalancerID, id),
			attribute.String(attrTenantID, tenant[id]),
			attribute.String("exception.message", truncate(lbErrors[id], 2000)),
		))
	}
	span.SetStatus(codes.Error, fmt.Sprintf("HAProxy rejected %d load balancer(s): %v", len(ids), ids))
}
