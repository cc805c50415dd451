package snapshot

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sync/singleflight"

	"github.com/fulcrumlb/fulcrum/api/store"
)

// Changes is what tells a View it may be stale: the API's notifier of node
// group wake-ups (api/notify.go).
type Changes interface {
	// Mark is the point a reader reads from (take it before reading).
	Mark() uint64
	// ChangedSince is closed at the next wake-up of the group, or already
	// closed when it was woken after mark.
	ChangedSince(groupID string, mark uint64) <-chan struct{}
}

// Views keeps, per replica, each node group's poll view: what the long-polls
// of the group need besides its snapshot part (Cache) — the group's revision
// and its nodes' admin states and revisions — read from the database once
// per (group, wake-up) by one caller (single flight) and shared by every
// poller of the group, so a write woken to N pollers of a group costs the
// database one small read, not N. A view is fresh until its group's next
// wake-up (every write to the group, a node's cordon or drain included,
// notifies it) and at most MaxAge old, so a missed notification costs a
// poller at most MaxAge.
type Views struct {
	st      *store.Store
	changes Changes
	timeout time.Duration
	maxAge  time.Duration
	flight  singleflight.Group
	loads   atomic.Int64

	mu     sync.Mutex
	groups map[string]*View
	// nodeGroups is the group of each node (by id and by name) as the
	// views and the callers' reads last saw it: where to look for a node
	// when the caller's token is not bound to a group.
	nodeGroups map[string]string
}

// ViewMaxAgeDefault is how long a view serves without a wake-up of its group
// before it is read again.
const ViewMaxAgeDefault = 5 * time.Second

// NewViews returns views read from st in transactions bounded by timeout,
// made stale by changes and older than maxAge (ViewMaxAgeDefault when 0).
func NewViews(st *store.Store, changes Changes, timeout, maxAge time.Duration) *Views {
	if maxAge <= 0 {
		maxAge = ViewMaxAgeDefault
	}
	return &Views{st: st, changes: changes, timeout: timeout, maxAge: maxAge, groups: map[string]*View{}, nodeGroups: map[string]string{}}
}

// Loads counts the views read from the database so far (tests, metrics).
func (v *Views) Loads() int64 { return v.loads.Load() }

// View is a node group's poll view as one read saw it; never modify it.
type View struct {
	GroupID string
	// Revision is the group's revision (store.GroupRevision).
	Revision int64
	byID     map[string]*store.PollNode
	byName   map[string]*store.PollNode
	// mark is the notifier's mark taken before the read; expires is when
	// the view is read again even without a wake-up.
	mark    uint64
	expires time.Time
}

// Mark is the notifier mark the view was read from: wait on
// Changes.ChangedSince(GroupID, Mark()) for what it may not show.
func (v *View) Mark() uint64 { return v.mark }

// Expires is when the view is to be read again even without a wake-up.
func (v *View) Expires() time.Time { return v.expires }

// Node finds a node of the group by id or name (an id match wins, as
// store.NodeGetByName); ok is false when the view does not hold it.
func (v *View) Node(idOrName string) (*store.PollNode, bool) {
	if n, ok := v.byID[idOrName]; ok {
		return n, true
	}
	n, ok := v.byName[idOrName]
	return n, ok
}

// Poll is node n's poll as the view shows it (as ReadPoll reads it).
func (v *View) Poll(n *store.PollNode) Poll {
	return NewPoll(&store.Node{ID: n.ID, Name: n.Name, NodeGroupID: n.NodeGroupID, AdminState: n.AdminState, Revision: n.Revision},
		v.Revision, n.Traceparent)
}

// fresh says whether v shows every write its group was woken for so far.
func (v *Views) fresh(w *View) bool {
	if w == nil || time.Now().After(w.expires) {
		return false
	}
	select {
	case <-v.changes.ChangedSince(w.GroupID, w.mark):
		return false
	default:
		return true
	}
}

// Get returns group groupID's view: the cached one while fresh (no wake-up
// of the group since it was read, younger than MaxAge), else one read now,
// shared with the callers needing one at the same time. Under a stream of
// wake-ups it may return a view already stale after a few reads: the caller
// waiting on ChangedSince(GroupID, Mark()) then comes back at once.
func (v *Views) Get(ctx context.Context, groupID string) (*View, error) {
	v.mu.Lock()
	w := v.groups[groupID]
	v.mu.Unlock()
	for try := 0; !v.fresh(w) && try < 3; try++ {
		// A read under way may have started before the wake-up that made
		// w stale: then the next one reads it.
		r, err, _ := v.flight.Do(groupID, func() (any, error) { return v.load(ctx, groupID) })
		if err != nil {
			return nil, err
		}
		w = r.(*View)
	}
	return w, nil
}

// load reads group groupID's view and caches it. It runs for several
// callers: a caller's end does not cancel it.
func (v *Views) load(ctx context.Context, groupID string) (*View, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), v.timeout)
	defer cancel()
	ctx, span := tracer().Start(ctx, "snapshot.view", trace.WithAttributes(attribute.String("fulcrum.node_group_id", groupID)))
	defer span.End()
	w := &View{GroupID: groupID, mark: v.changes.Mark(), expires: time.Now().Add(v.maxAge)}
	v.mu.Lock()
	floor := int64(-1)
	if old := v.groups[groupID]; old != nil {
		floor = old.Revision
	}
	v.mu.Unlock()
	var nodes []store.PollNode
	err := v.st.ReadSnapshot(ctx, func(tx *store.Tx) error {
		// The revision and the nodes in one round trip; with a previous
		// view, only the rows written since (never below its revision).
		var err error
		w.Revision, nodes, err = store.ReadPollView(ctx, tx, groupID, floor)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("poll view of node group %s: %w", groupID, err)
	}
	w.byID = make(map[string]*store.PollNode, len(nodes))
	w.byName = make(map[string]*store.PollNode, len(nodes))
	for i := range nodes {
		w.byID[nodes[i].ID] = &nodes[i]
		w.byName[nodes[i].Name] = &nodes[i]
	}
	v.loads.Add(1)
	v.mu.Lock()
	if old := v.groups[groupID]; old == nil || old.mark <= w.mark {
		if old != nil {
			for k := range old.byID {
				if v.nodeGroups[k] == groupID {
					delete(v.nodeGroups, k)
				}
			}
			for k := range old.byName {
				if v.nodeGroups[k] == groupID {
					delete(v.nodeGroups, k)
				}
			}
		}
		v.groups[groupID] = w
		for i := range nodes {
			v.nodeGroups[nodes[i].ID], v.nodeGroups[nodes[i].Name] = groupID, groupID
		}
	}
	v.mu.Unlock()
	return w, nil
}

// GroupOf is the group node idOrName was last seen in ("" when unknown): a
// hint, to be checked against the group's view.
func (v *Views) GroupOf(idOrName string) string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.nodeGroups[idOrName]
}
