package api

import (
	"context"
	"reflect"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/fulcrumlb/fulcrum/internal/telemetry"
)

// Span attribute keys naming what a request touched (ids only, never
// secrets).
const (
	attrTenantID       = "fulcrum.tenant_id"
	attrLoadBalancerID = "fulcrum.load_balancer_id"
)

// annotateSpan sets fulcrum.tenant_id and fulcrum.load_balancer_id on the
// request's span from obj (a store row or an API model, or a pointer to
// one): its TenantID/TenantId and LoadBalancerID/LoadBalancerId fields, or
// its own id when it is a load balancer. It also names the object and its
// load balancer in the request's audit log line.
func annotateSpan(ctx context.Context, obj any) {
	span := trace.SpanFromContext(ctx)
	v := reflect.ValueOf(obj)
	for v.Kind() == reflect.Pointer {
		if v.IsNil() {
			return
		}
		v = v.Elem()
	}
	if v.Kind() != reflect.Struct {
		return
	}
	str := func(names ...string) string {
		for _, n := range names {
			if f := v.FieldByName(n); f.IsValid() && f.Kind() == reflect.String {
				return f.String()
			}
		}
		return ""
	}
	lb := str("LoadBalancerID", "LoadBalancerId")
	if lb == "" && v.Type().Name() == "LoadBalancer" {
		lb = str("ID", "Id")
	}
	telemetry.NoteResource(ctx, str("ID", "Id"), lb)
	if !span.IsRecording() { // no tracing: the attributes would be dropped
		return
	}
	attrs := make([]attribute.KeyValue, 0, 2)
	if id := str("TenantID", "TenantId"); id != "" {
		attrs = append(attrs, attribute.String(attrTenantID, id))
	}
	if lb != "" {
		attrs = append(attrs, attribute.String(attrLoadBalancerID, lb))
	}
	span.SetAttributes(attrs...)
}
