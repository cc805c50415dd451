package api

import (
	"context"
	"sync"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/fulcrumlb/fulcrum/api/snapshot"
)

// Shared wake-ups of a group's streams (issue 10): one goroutine per group
// with open streams on this replica reads the group's poll view once per
// wake-up (a notification for the group, or the view's expiry) and hands
// it to every stream of the group, instead of each stream reading the view
// (its single flight, the notifier's lock) on its own wake-up. A stream
// then only looks its node up in the shared view and picks the shared
// snapshot bytes for the revision it last sent (the snapshot cache).

// streamFeedRetry is how long a group's feed waits before reading a view
// again after a failed read (its streams read the view themselves
// meanwhile).
const streamFeedRetry = time.Second

// streamFeeds holds the feeds of the groups with open streams.
type streamFeeds struct {
	h      *handlers
	mu     sync.Mutex
	groups map[string]*groupFeed

	// tokens holds the open streams whose token is checked again, and the
	// function that ends each; stopTokens stops their check after the last.
	tokens     map[*nodeStream]context.CancelCauseFunc
	stopTokens context.CancelFunc

	// acks reads the raw streams' messages (node_streamacks.go), nil while
	// none is open.
	acks *ackReader
}

// groupFeed is one group's feed.
type groupFeed struct {
	group string
	// streams counts the open streams that joined it; the last to leave
	// stops it.
	streams int
	stop    context.CancelFunc

	mu sync.Mutex
	// view is the group's view as last read, nil before the first read
	// or after a failed one.
	view *snapshot.View
	// members are the open streams of the group; list is them as a slice
	// (rebuilt after a change, never modified: the feed's goroutine reads
	// it without the lock).
	members map[*nodeStream]struct{}
	list    []*nodeStream
	changed bool
}

// join adds stream r to group's feed, starting it for the first.
func (f *streamFeeds) join(group string, r *nodeStream) *groupFeed {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.groups == nil {
		f.groups = map[string]*groupFeed{}
	}
	g := f.groups[group]
	if g == nil {
		ctx, cancel := context.WithCancel(context.Background())
		g = &groupFeed{group: group, stop: cancel}
		f.groups[group] = g
		go g.run(ctx, f.h)
	}
	g.streams++
	g.mu.Lock()
	if g.members == nil {
		g.members = map[*nodeStream]struct{}{}
	}
	g.members[r] = struct{}{}
	g.changed = true
	g.mu.Unlock()
	return g
}

// leave removes stream r from g, stopping it after the last.
func (f *streamFeeds) leave(g *groupFeed, r *nodeStream) {
	f.mu.Lock()
	defer f.mu.Unlock()
	g.mu.Lock()
	delete(g.members, r)
	g.changed = true
	g.mu.Unlock()
	g.streams--
	if g.streams == 0 {
		g.stop()
		if f.groups[g.group] == g {
			delete(f.groups, g.group)
		}
	}
}

// streamList is the group's open streams.
func (g *groupFeed) streamList() []*nodeStream {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.changed {
		g.list = make([]*nodeStream, 0, len(g.members))
		for r := range g.members {
			g.list = append(g.list, r)
		}
		g.changed = false
	}
	return g.list
}

// current is the group's view as last read (nil when none is).
func (g *groupFeed) current() *snapshot.View {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.view
}

// publish replaces the group's view with v and hands it to the group's
// streams (node_streamfan.go).
func (g *groupFeed) publish(ctx context.Context, h *handlers, v *snapshot.View) {
	g.mu.Lock()
	g.view = v
	g.mu.Unlock()
	g.fanout(ctx, v)
}

// run reads the view at every wake-up of the group until ctx ends, and
// sends its streams' keep-alives.
func (g *groupFeed) run(ctx context.Context, h *handlers) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	// The group's streams' keep-alives (keepalive).
	keep := time.NewTicker(StreamKeepalive / 2)
	defer keep.Stop()
	// woke is when the group's notification woke the feed (zero for the
	// first read and an expiry): the start of its "stream.feed" span, which
	// covers the view's read and the frames written, so a trace shows how
	// long a change took from the notification to the streams' sockets.
	var woke time.Time
	for {
		fctx, span := ctx, trace.SpanFromContext(ctx)
		if !woke.IsZero() {
			fctx, span = otel.Tracer("github.com/fulcrumlb/fulcrum/api").Start(ctx, "stream.feed",
				trace.WithTimestamp(woke), trace.WithAttributes(attribute.String("fulcrum.node_group_id", g.group)))
		}
		v, err := h.views.Get(fctx, g.group) // bounds its reads itself
		if ctx.Err() != nil {
			span.End()
			return
		}
		var changed <-chan struct{}
		wait := streamFeedRetry
		if err != nil {
			v = nil
		} else {
			changed = h.notify.ChangedSince(g.group, v.Mark())
			wait = time.Until(v.Expires())
		}
		g.publish(fctx, h, v)
		span.End()
		woke = time.Time{}
		timer.Reset(wait)
	wait:
		for {
			select {
			case <-changed:
				woke = time.Now()
				// The group's part is read while the view is (the
				// streams woken by the view join that build).
				h.snapcache.Prefetch(g.group)
				break wait
			case <-timer.C:
				break wait
			case <-keep.C:
				g.keepalive(time.Now()) // node_streamfan.go
			case <-h.notify.Done():
				return
			case <-ctx.Done():
				return
			}
		}
		timer.Stop()
	}
}

// watchToken has the token of stream r checked again every
// streamAuthEvery (once per distinct token for all the replica's open
// streams, through the token cache) until unwatchToken; a revoked token, a
// deleted node or a token that changed scope ends it through end.
func (f *streamFeeds) watchToken(r *nodeStream, end context.CancelCauseFunc) {
	if r.authz == "" {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.tokens == nil {
		f.tokens = map[*nodeStream]context.CancelCauseFunc{}
	}
	f.tokens[r] = end
	if f.stopTokens == nil {
		ctx, cancel := context.WithCancel(context.Background())
		f.stopTokens = cancel
		go f.checkTokens(ctx)
	}
}

func (f *streamFeeds) unwatchToken(r *nodeStream) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.tokens, r)
	if len(f.tokens) == 0 && f.stopTokens != nil {
		f.stopTokens()
		f.stopTokens = nil
	}
}

// checkTokens checks the open streams' tokens every streamAuthEvery until
// ctx ends.
func (f *streamFeeds) checkTokens(ctx context.Context) {
	h := f.h
	t := time.NewTicker(h.streamAuthEvery())
	defer t.Stop()
	type open struct {
		r   *nodeStream
		end context.CancelCauseFunc
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-h.notify.Done():
			return
		case <-t.C:
		}
		f.mu.Lock()
		byToken := map[string][]open{}
		for r, end := range f.tokens {
			byToken[r.authz] = append(byToken[r.authz], open{r, end})
		}
		f.mu.Unlock()
		for authz, streams := range byToken {
			actx, cancel := ctx, context.CancelFunc(func() {})
			if h.requestTimeout > 0 {
				actx, cancel = context.WithTimeout(ctx, h.requestTimeout)
			}
			p, err := h.auth.Authenticate(actx, authz)
			if ctx.Err() != nil {
				cancel()
				return
			}
			for _, s := range streams {
				if err := s.r.authorized(actx, p, err); err != nil {
					s.end(err)
				}
			}
			cancel()
		}
	}
}
