package api

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/fulcrumlb/fulcrum/api/store"
)

// Notifier wakes the long-polls of the node groups a write changed. It LISTENs
// on the revision channel over one connection; a notification carries a group
// and a revision only (store.ListenRevisions), and wakes that group's pollers
// alone. A (re)connect of the listener wakes every poller, since notifications
// may have been missed meanwhile; a missed notification costs a poller at most
// one wait period, never correctness: pollers always read the node and its
// group's revision from the database.
type Notifier struct {
	mu sync.Mutex
	// seq counts wake-ups; woken is the seq of each group's last one (groups
	// never woken are absent) and all that of the last wake-up of every group.
	seq   uint64
	woken map[string]uint64
	all   uint64
	// waiting holds the channel of each group with pollers waiting, closed
	// (and removed) at the group's next wake-up.
	waiting map[string]chan struct{}
	done    chan struct{}
	once    sync.Once
}

// NewNotifier returns a notifier; Run connects it.
func NewNotifier() *Notifier {
	return &Notifier{woken: map[string]uint64{}, waiting: map[string]chan struct{}{}, done: make(chan struct{})}
}

// Done is closed when Run has ended (the server is shutting down), so
// long-polls can answer at once instead of holding up the shutdown.
func (n *Notifier) Done() <-chan struct{} { return n.done }

// Mark is the point a poller reads from: take it before reading the state a
// wake-up would change, then wait on ChangedSince(group, mark), so no change
// between the read and the wait is lost.
func (n *Notifier) Mark() uint64 {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.seq
}

// closed is a channel that is always ready.
var closed = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// ChangedSince returns a channel closed at the next wake-up of group groupID,
// or one already closed when the group was woken after mark (see Mark).
func (n *Notifier) ChangedSince(groupID string, mark uint64) <-chan struct{} {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.all > mark || n.woken[groupID] > mark {
		return closed
	}
	ch := n.waiting[groupID]
	if ch == nil {
		ch = make(chan struct{})
		n.waiting[groupID] = ch
	}
	return ch
}

// wake wakes the pollers of group groupID, or of every group when it is "".
func (n *Notifier) wake(groupID string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.seq++
	if groupID == "" {
		n.all = n.seq
		for g, ch := range n.waiting {
			close(ch)
			delete(n.waiting, g)
		}
		// Every group is newer than all now: forget their marks.
		clear(n.woken)
		return
	}
	n.woken[groupID] = n.seq
	if ch := n.waiting[groupID]; ch != nil {
		close(ch)
		delete(n.waiting, groupID)
	}
}

// Run listens until ctx ends, reconnecting after errors. Every (re)connect
// wakes every poller, since notifications may have been missed meanwhile.
func (n *Notifier) Run(ctx context.Context, st *store.Store, log *slog.Logger) {
	defer n.once.Do(func() { close(n.done) })
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := st.ListenRevisions(ctx, func(groupID string, _ int64) { n.wake(groupID) })
		if ctx.Err() != nil {
			return
		}
		log.Warn("revision listener lost; reconnecting", "err", err, "in", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}
