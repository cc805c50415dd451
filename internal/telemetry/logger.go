package telemetry

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"

	"go.opentelemetry.io/otel/trace"
)

// Log attribute keys added from the record's context.
const (
	LogKeyTraceID   = "trace_id"
	LogKeySpanID    = "span_id"
	LogKeyRequestID = "request_id"
)

// NewLogger returns a JSON slog logger writing to w at level. Records logged
// with a context (logger.InfoContext(ctx, ...)) get top-level trace_id and
// span_id attributes from the context's active span, and request_id when the
// context carries one (see RequestIDFrom).
func NewLogger(w io.Writer, level slog.Level) *slog.Logger {
	return slog.New(NewContextHandler(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level})))
}

// NewContextHandler wraps inner so that records logged with a context get
// trace_id, span_id and request_id attributes (see NewLogger). The attributes
// stay top-level even when the logger has groups (logger.WithGroup).
func NewContextHandler(inner slog.Handler) slog.Handler {
	return &contextHandler{inner: inner, root: inner}
}

type contextHandler struct {
	// inner is the fully configured handler (all WithAttrs/WithGroup applied).
	inner slog.Handler
	// root is inner as it was before the first WithGroup; ops replays the
	// WithGroup/WithAttrs calls made from then on. Context attributes are
	// added to root so they are not nested inside a group.
	root slog.Handler
	ops  []func(slog.Handler) slog.Handler
}

func (h *contextHandler) Enabled(ctx context.Context, level slog.Level) bool {
	return h.inner.Enabled(ctx, level)
}

func (h *contextHandler) Handle(ctx context.Context, r slog.Record) error {
	var buf [3]slog.Attr
	extra := contextAttrs(ctx, buf[:0])
	if len(extra) == 0 {
		return h.inner.Handle(ctx, r)
	}
	if len(h.ops) == 0 {
		r = r.Clone()
		r.AddAttrs(extra...)
		return h.inner.Handle(ctx, r)
	}
	inner := h.root.WithAttrs(extra)
	for _, op := range h.ops {
		inner = op(inner)
	}
	return inner.Handle(ctx, r)
}

func (h *contextHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	if len(attrs) == 0 {
		return h
	}
	n := &contextHandler{inner: h.inner.WithAttrs(attrs)}
	if len(h.ops) == 0 {
		n.root = n.inner
	} else {
		attrs = slices.Clone(attrs)
		n.root = h.root
		n.ops = append(slices.Clip(h.ops), func(x slog.Handler) slog.Handler { return x.WithAttrs(attrs) })
	}
	return n
}

func (h *contextHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	return &contextHandler{
		inner: h.inner.WithGroup(name),
		root:  h.root,
		ops:   append(slices.Clip(h.ops), func(x slog.Handler) slog.Handler { return x.WithGroup(name) }),
	}
}

func contextAttrs(ctx context.Context, dst []slog.Attr) []slog.Attr {
	if ctx == nil {
		return dst
	}
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		dst = append(dst,
			slog.String(LogKeyTraceID, sc.TraceID().String()),
			slog.String(LogKeySpanID, sc.SpanID().String()),
		)
	}
	if id := RequestIDFrom(ctx); id != "" {
		dst = append(dst, slog.String(LogKeyRequestID, id))
	}
	return dst
}

// Logger returns logger, also sending its records to the OpenTelemetry logs
// exporter when OTEL_LOGS_EXPORTER names one (with the trace context of the
// record's context); otherwise logger itself.
func (t *Telemetry) Logger(logger *slog.Logger) *slog.Logger {
	h := t.LogHandler()
	if h == nil {
		return logger
	}
	return slog.New(teeHandler{logger.Handler(), h})
}

// teeHandler sends each record to every handler that is enabled for it.
type teeHandler []slog.Handler

func (t teeHandler) Enabled(ctx context.Context, level slog.Level) bool {
	for _, h := range t {
		if h.Enabled(ctx, level) {
			return true
		}
	}
	return false
}

func (t teeHandler) Handle(ctx context.Context, r slog.Record) error {
	var errs []error
	for _, h := range t {
		if h.Enabled(ctx, r.Level) {
			if err := h.Handle(ctx, r.Clone()); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

func (t teeHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	out := make(teeHandler, len(t))
	for i, h := range t {
		out[i] = h.WithAttrs(attrs)
	}
	return out
}

func (t teeHandler) WithGroup(name string) slog.Handler {
	out := make(teeHandler, len(t))
	for i, h := range t {
		out[i] = h.WithGroup(name)
	}
	return out
}
