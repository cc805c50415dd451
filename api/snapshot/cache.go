package snapshot

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sync/singleflight"

	"github.com/fulcrumlb/fulcrum/api/store"
	"github.com/fulcrumlb/fulcrum/openapi"
)

// Cache builds each node group's part of the snapshot once per revision and
// shares it, decoded, JSON-encoded and gzip-compressed, with every poller of
// the group: concurrent pollers needing a newer part than the cached one wait
// for one build (single flight). It keeps only the newest part of each group.
// The node's own part (revision, admin state, trace contexts) is small and
// merged when a node's snapshot is encoded (NodeSnapshot.Encode).
//
// A group's part at revision G depends on the group's rows only, so it is
// the same for every node of the group; object statuses in it are those at
// its build (statuses change without a revision and agents do not read them).
type Cache struct {
	b       *Builder
	st      *store.Store
	timeout time.Duration
	flight  singleflight.Group
	builds  atomic.Int64

	mu     sync.Mutex
	groups map[string]*Group
}

// NewCache returns a cache building with b in transactions of st, each bounded
// by timeout.
func NewCache(b *Builder, st *store.Store, timeout time.Duration) *Cache {
	return &Cache{b: b, st: st, timeout: timeout, groups: map[string]*Group{}}
}

// Builds counts the group parts built so far (for tests and metrics).
func (c *Cache) Builds() int64 { return c.builds.Load() }

// Group is a node group's part of the snapshot at one revision, shared by
// every poller: never modify it or what it points to.
type Group struct {
	// Revision is the group's revision: the newest write to anything the
	// group serves.
	Revision int64
	// Snapshot is the part itself (Builder.Group at Revision): Node and
	// Traceparents are nil.
	Snapshot *openapi.Snapshot
	// writes are the trace contexts of the newest MaxTraceparents writes to
	// the group after writesAfter and at or before Revision, oldest first:
	// those a node holding writesAfter or newer needs. The newest
	// MaxTraceparents of every write at or before Revision (allWrites) are
	// read on the first answer to a node holding an older revision.
	writes      []store.RevisionTraceparent
	writesAfter int64
	allOnce     sync.Once
	allWrites   []store.RevisionTraceparent
	allErr      error
	// body is the JSON of Snapshot's members but the node's own (nodeKeys),
	// without the opening brace: `"certificates":[…],…}`; gz is body as one
	// gzip member. Encoded at the first answer that needs the whole group
	// (encodeOnce): most pollers of a group take deltas.
	encodeOnce sync.Once
	encodeErr  error
	body, gz   []byte
	// purged is the newest delete Purge forgot in the group and deleted the
	// load balancers deleted and not purged yet, both as of Revision: what a
	// delta needs (delta.go).
	purged  int64
	deleted []store.DeletedLoadBalancer
	// deltas are the shared parts of the deltas answered from this part
	// (delta.go), encoded once per (base revision, gzip).
	deltaMu sync.Mutex
	deltas  map[deltaKey]*sharedDelta
}

// nodeKeys are the members of a snapshot that are the node's own, encoded
// per node (nodePart) ahead of the group's body.
var nodeKeys = []string{"revision", "traceparent", "node", "traceparents", "format_version"}

// nodePart is what of a node's snapshot is its own.
type nodePart struct {
	FormatVersion int                   `json:"format_version"`
	Revision      int64                 `json:"revision"`
	Traceparent   *string               `json:"traceparent,omitempty"`
	Node          *openapi.SnapshotNode `json:"node,omitempty"`
	Traceparents  *[]string             `json:"traceparents,omitempty"`
}

// Group returns group groupID's part at revision min or newer: the cached one
// when it is recent enough, else a new build (shared with the callers
// needing one at the same time). min is the group's revision as the caller
// read it (store.GroupRevision), so the part is never older than what the
// caller has seen.
func (c *Cache) Group(ctx context.Context, groupID string, min int64) (*Group, error) {
	c.mu.Lock()
	g := c.groups[groupID]
	c.mu.Unlock()
	// A build under way may have read the database before revision min
	// committed: then the next one reads it.
	for try := 0; (g == nil || g.Revision < min) && try < 3; try++ {
		v, err, _ := c.flight.Do(groupID, func() (any, error) { return c.build(ctx, groupID) })
		if err != nil {
			return nil, err
		}
		g = v.(*Group)
	}
	if g.Revision < min {
		return nil, fmt.Errorf("snapshot of node group %s: built at revision %d, want %d", groupID, g.Revision, min)
	}
	return g, nil
}

// Prefetch starts building group groupID's part now, in the background,
// unless a build is under way: called when the group's pollers are woken,
// so the part is read while their view is, and they join that build
// (Group) instead of starting one after the view. A build already under
// way may have read before the write that woke them: Group then builds
// again, as it would have.
func (c *Cache) Prefetch(groupID string) {
	go func() {
		_, _, _ = c.flight.Do(groupID, func() (any, error) { return c.build(context.Background(), groupID) })
	}()
}

// build builds group groupID's part at its current revision and caches it.
// It runs for several callers: a caller's end does not cancel it.
func (c *Cache) build(ctx context.Context, groupID string) (*Group, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.timeout)
	defer cancel()
	ctx, span := tracer().Start(ctx, "snapshot.build", trace.WithAttributes(attribute.String("fulcrum.node_group_id", groupID)))
	defer span.End()
	g := &Group{}
	c.mu.Lock()
	var prev *openapi.Snapshot
	prevPurged := int64(-1)
	if old := c.groups[groupID]; old != nil {
		prev, prevPurged = old.Snapshot, old.purged
	}
	c.mu.Unlock()
	err := c.st.ReadSnapshot(ctx, func(tx *store.Tx) error {
		// What the build needs besides the load balancers' rows, in one
		// round trip; with a previous part, only the rows written since
		// (never a revision below the previous part's).
		floor := int64(0)
		if prev != nil {
			floor = prev.Revision
		}
		part, err := store.ReadGroupPart(ctx, tx, groupID, floor, MaxTraceparents)
		if err != nil {
			return err
		}
		g.Revision, g.purged, g.deleted = part.Revision, part.Purged, part.Deleted
		if prev == nil || g.purged == prevPurged {
			// Only the load balancers changed since the previous part are
			// read again (all of them for the first part); the writes
			// read are those after it.
			g.Snapshot, err = c.b.GroupOfPart(ctx, tx, part, prev)
			g.writes, g.writesAfter = part.Writes, floor
			return err
		}
		// A purge removed rows since the previous part: the changed load
		// balancers are found by every row's revision.
		if g.Snapshot, err = c.b.GroupFrom(ctx, tx, groupID, g.Revision, prev); err != nil {
			return err
		}
		g.writes, err = store.RevisionTraceparentListByGroupUpTo(ctx, tx, groupID, g.Revision, MaxTraceparents)
		return err
	})
	if err != nil {
		return nil, err
	}
	c.builds.Add(1)
	c.mu.Lock()
	if old := c.groups[groupID]; old == nil || old.Revision <= g.Revision {
		c.groups[groupID] = g
	}
	c.mu.Unlock()
	return g, nil
}

// tracer is the snapshot reads' tracer: their spans (snapshot.build,
// snapshot.view) hold the Postgres statements they send.
func tracer() trace.Tracer { return otel.Tracer("github.com/fulcrumlb/fulcrum/api/snapshot") }

// encoded fills g.body and g.gz from g.Snapshot, once.
func (g *Group) encoded() error {
	g.encodeOnce.Do(func() {
		if g.body, g.encodeErr = encodeShared(g.Snapshot); g.encodeErr != nil {
			return
		}
		g.gz, g.encodeErr = compress(g.body)
	})
	return g.encodeErr
}

// encodeShared is the JSON of snap's members but the node's own (nodeKeys),
// without the opening brace: `"certificates":[…],…}`.
func encodeShared(snap *openapi.Snapshot) ([]byte, error) {
	shared := *snap
	shared.Node, shared.Traceparents = nil, nil
	raw, err := json.Marshal(shared)
	if err != nil {
		return nil, fmt.Errorf("encode snapshot: %w", err)
	}
	var members map[string]json.RawMessage
	if err := json.Unmarshal(raw, &members); err != nil {
		return nil, fmt.Errorf("encode snapshot: %w", err)
	}
	for _, k := range nodeKeys {
		delete(members, k)
	}
	if raw, err = json.Marshal(members); err != nil {
		return nil, fmt.Errorf("encode snapshot: %w", err)
	}
	return raw[1:], nil // members in key order and the closing brace
}

// sharedWriters keep compressors for shared bytes (group parts, deltas)
// between encodings: a new one costs more than a small delta's compression.
var sharedWriters = sync.Pool{New: func() any {
	zw, _ := gzip.NewWriterLevel(nil, gzip.DefaultCompression)
	return zw
}}

// compress is b as one gzip member.
func compress(b []byte) ([]byte, error) {
	var buf bytes.Buffer
	zw := sharedWriters.Get().(*gzip.Writer)
	defer sharedWriters.Put(zw)
	zw.Reset(&buf)
	if _, err := zw.Write(b); err != nil {
		return nil, fmt.Errorf("compress snapshot: %w", err)
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("compress snapshot: %w", err)
	}
	return buf.Bytes(), nil
}

// Poll is what a node's long-poll reads in its own transaction, besides its
// group's cached part: the node and its group's revision.
type Poll struct {
	node          *store.Node
	groupRevision int64
	// nodeTraceparent is the trace context of the node's revision when it is
	// newer than the group's (a cordon, a drain).
	nodeTraceparent string
}

// ReadPoll reads, in tx, what node n's long-poll needs besides its group's
// part.
func ReadPoll(ctx context.Context, tx *store.Tx, n *store.Node) (Poll, error) {
	rev, err := store.GroupRevision(ctx, tx, n.NodeGroupID)
	if err != nil {
		return Poll{}, err
	}
	p := Poll{node: n, groupRevision: rev}
	if n.Revision > rev {
		if p.nodeTraceparent, err = store.RevisionTraceparentGet(ctx, tx, n.Revision); err != nil {
			return Poll{}, err
		}
	}
	return p, nil
}

// NewPoll is the poll of node n whose group's revision is groupRevision (as
// ReadPoll reads them); nodeTraceparent is the trace context of n's revision
// when it is newer than the group's.
func NewPoll(n *store.Node, groupRevision int64, nodeTraceparent string) Poll {
	return Poll{node: n, groupRevision: groupRevision, nodeTraceparent: nodeTraceparent}
}

// Revision is the revision of the node's snapshot as the poll read it (as
// Revision).
func (p Poll) Revision() int64 { return max(p.groupRevision, p.node.Revision) }

// GroupID is the node's group.
func (p Poll) GroupID() string { return p.node.NodeGroupID }

// NodeSnapshot is a node's snapshot: its group's shared part and its own.
type NodeSnapshot struct {
	Group *Group
	node  nodePart
}

// ForNode returns the snapshot of the node p read for an agent holding
// revision after, or nil when nothing of the node or its group changed
// since. Call it outside the poll's transaction: it may wait for a build in
// a transaction of its own.
func (c *Cache) ForNode(ctx context.Context, p Poll, after int64) (*NodeSnapshot, error) {
	if p.Revision() <= after {
		return nil, nil
	}
	g, err := c.Group(ctx, p.GroupID(), p.groupRevision)
	if err != nil {
		return nil, err
	}
	// g may be newer than what the poll read; no write to the group lies
	// between g.Revision and a newer node revision (writes commit in
	// revision order), so the group's part is the one at rev.
	rev := max(g.Revision, p.node.Revision)
	np := nodePart{Revision: rev, Traceparent: g.Snapshot.Traceparent,
		Node: &openapi.SnapshotNode{Id: p.node.ID, Name: p.node.Name, AdminState: openapi.SnapshotNodeAdminState(adminState(p.node.AdminState))}}
	if rev > g.Revision {
		np.Traceparent = nil
		if p.nodeTraceparent != "" {
			tp := p.nodeTraceparent
			np.Traceparent = &tp
		}
	}
	writes, err := c.writesFor(ctx, g, after)
	if err != nil {
		return nil, err
	}
	var tps []string
	for _, w := range writes {
		if w.Revision > after && w.Revision <= rev {
			tps = append(tps, w.Traceparent)
		}
	}
	if len(tps) > 0 {
		np.Traceparents = &tps
	}
	return &NodeSnapshot{Group: g, node: np}, nil
}

// writesFor is the trace contexts of g's writes a node holding revision
// after needs (those after it among them): g.writes when it holds every
// write after after, else the newest MaxTraceparents of every write at or
// before g's revision, read once per part. Those are read after the part
// was built: a write to the group since may have written an object again,
// whose earlier write then no longer counts (an object written twice shows
// its last write).
func (c *Cache) writesFor(ctx context.Context, g *Group, after int64) ([]store.RevisionTraceparent, error) {
	if after >= g.writesAfter {
		return g.writes, nil
	}
	g.allOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.timeout)
		defer cancel()
		g.allErr = c.st.ReadSnapshot(ctx, func(tx *store.Tx) error {
			var err error
			g.allWrites, err = store.RevisionTraceparentListByGroupUpTo(ctx, tx, g.Snapshot.NodeGroupId, g.Revision, MaxTraceparents)
			return err
		})
	})
	return g.allWrites, g.allErr
}

// Revision is the snapshot's revision.
func (s *NodeSnapshot) Revision() int64 { return s.node.Revision }

// Snapshot returns the snapshot decoded (a shallow copy of the group's part:
// do not modify what it shares).
func (s *NodeSnapshot) Snapshot() openapi.Snapshot {
	snap := *s.Group.Snapshot
	snap.Revision, snap.Traceparent, snap.Node, snap.Traceparents = s.node.Revision, s.node.Traceparent, s.node.Node, s.node.Traceparents
	return snap
}

// gzipWriters keep compressors for the node's part between responses. The
// part is a few hundred bytes, different for every node and poll: it is
// stored, not compressed (Huffman coding it cost about 10 µs per response,
// 7% of the API's CPU per write at 1,000 nodes, to save a few dozen bytes).
var gzipWriters = sync.Pool{New: func() any {
	zw, _ := gzip.NewWriterLevel(nil, gzip.NoCompression)
	return zw
}}

// Encode returns the snapshot's JSON in snapshot format format (the
// version it announces: the content is the same), gzip-compressed when gz, in two
// pieces sent one after the other: the node's own part (head) and the
// group's shared bytes (body, never to be modified). Compressed, they are
// two gzip members, which gzip readers decode as one stream (RFC 1952).
func (s *NodeSnapshot) Encode(format int, gz bool) (head, body []byte, err error) {
	if err := s.Group.encoded(); err != nil {
		return nil, nil, err
	}
	body = s.Group.body
	if gz {
		body = s.Group.gz
	}
	head, err = s.head(format, gz, len(s.Group.body) > 1)
	return head, body, err
}

// head encodes the node's own part in format format, gzip-compressed when
// gz, as the start of an object whose other members follow (more: there
// are some).
func (s *NodeSnapshot) head(format int, gz, more bool) ([]byte, error) {
	np := s.node
	np.FormatVersion = format
	// Encoded by hand (head.go).
	head := np.appendJSON(make([]byte, 0, 256))
	head = head[:len(head)-1] // drop the closing brace: the group's members follow
	if more {
		head = append(head, ',')
	}
	if !gz {
		return head, nil
	}
	if len(head) <= maxStoredBlock {
		return appendStoredGzip(make([]byte, 0, len(head)+storedGzipOverhead), head), nil
	}
	var buf bytes.Buffer
	zw := gzipWriters.Get().(*gzip.Writer)
	defer gzipWriters.Put(zw)
	zw.Reset(&buf)
	if _, err := zw.Write(head); err != nil {
		return nil, fmt.Errorf("compress snapshot: %w", err)
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("compress snapshot: %w", err)
	}
	return buf.Bytes(), nil
}
