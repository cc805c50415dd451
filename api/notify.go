package api

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/fulcrumlb/fulcrum/api/store"
)

// Notifier wakes long-polls when any write commits. It LISTENs on the revision
// channel over one connection; a notification carries only a revision, and a
// missed one costs a poller at most one wait period, never correctness: pollers
// always read the snapshot from the database.
type Notifier struct {
	mu   sync.Mutex
	ch   chan struct{}
	done chan struct{}
	once sync.Once
}

// NewNotifier returns a notifier; Run connects it.
func NewNotifier() *Notifier { return &Notifier{ch: make(chan struct{}), done: make(chan struct{})} }

// Done is closed when Run has ended (the server is shutting down), so
// long-polls can answer at once instead of holding up the shutdown.
func (n *Notifier) Done() <-chan struct{} { return n.done }

// Changed returns a channel closed at the next notification. Take it before
// reading the state it guards, so no change between the read and the wait is lost.
func (n *Notifier) Changed() <-chan struct{} {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.ch
}

func (n *Notifier) broadcast() {
	n.mu.Lock()
	close(n.ch)
	n.ch = make(chan struct{})
	n.mu.Unlock()
}

// Run listens until ctx ends, reconnecting after errors. Every (re)connect
// broadcasts, since notifications may have been missed meanwhile.
func (n *Notifier) Run(ctx context.Context, st *store.Store, log *slog.Logger) {
	defer n.once.Do(func() { close(n.done) })
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := st.ListenRevisions(ctx, func(int64) { n.broadcast() })
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
