package fulcrum

import (
	"context"

	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// startWait starts a span named name under the operation's span in ctx,
// made by that span's tracer provider (none when ctx has no span): the polls
// of a wait are grouped under it. Call the returned func with the wait's
// result.
func startWait(ctx context.Context, name string) (context.Context, func(error)) {
	tp := trace.SpanFromContext(ctx).TracerProvider()
	ctx, span := tp.Tracer("github.com/fulcrumlb/fulcrum/provider").Start(ctx, name)
	return ctx, func(err error) {
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
	}
}
