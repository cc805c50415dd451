package snapshot

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/fulcrumlb/fulcrum/api/store"
	"github.com/fulcrumlb/fulcrum/openapi"
)

// MaxTraceparents bounds a snapshot's traceparents (and so its apply span's
// links): a node starting from nothing folds every write ever made.
const MaxTraceparents = 100

// Shapes turn stored rows into the API's shapes. The api package gives the
// ones its handlers answer with, so a snapshot shows every object exactly as
// the API does.
type Shapes struct {
	LoadBalancer func(*store.LoadBalancer) openapi.LoadBalancer
	Listener     func(*store.Listener) openapi.Listener
	Pool         func(*store.Pool) openapi.Pool
	Member       func(*store.Member) openapi.Member
	RoutingRule  func(*store.RoutingRule) openapi.RoutingRule
}

// Builder builds snapshots. It holds no state of its own beyond its
// configuration and is safe for concurrent use.
type Builder struct {
	shapes Shapes
	// privateKey opens a certificate's sealed private key.
	privateKey func(*store.Certificate) ([]byte, error)
}

// NewBuilder returns a Builder showing objects with shapes and opening
// certificates' private keys with privateKey.
func NewBuilder(shapes Shapes, privateKey func(*store.Certificate) ([]byte, error)) *Builder {
	return &Builder{shapes: shapes, privateKey: privateKey}
}

// Revision is the revision of node n's snapshot: the newest of its group's
// (anything the group serves) and its own (a cordon, a drain: the snapshot
// tells the agent its admin state).
func Revision(ctx context.Context, tx *store.Tx, n *store.Node) (int64, error) {
	rev, err := store.GroupRevision(ctx, tx, n.NodeGroupID)
	if err != nil {
		return 0, err
	}
	return max(rev, n.Revision), nil
}

// ForNode builds node n's snapshot for an agent holding revision after, or
// returns nil when nothing of the node or its group changed since.
func (b *Builder) ForNode(ctx context.Context, tx *store.Tx, n *store.Node, after int64) (*openapi.Snapshot, error) {
	rev, err := Revision(ctx, tx, n)
	if err != nil {
		return nil, err
	}
	if rev <= after {
		return nil, nil
	}
	group, err := b.Group(ctx, tx, n.NodeGroupID, rev)
	if err != nil {
		return nil, err
	}
	snap := *group // the group's part is shared, never changed here
	tps, err := store.RevisionTraceparentListByGroup(ctx, tx, n.NodeGroupID, after, rev, MaxTraceparents)
	if err != nil {
		return nil, err
	}
	if len(tps) > 0 {
		snap.Traceparents = &tps
	}
	snap.Node = &openapi.SnapshotNode{Id: n.ID, Name: n.Name, AdminState: openapi.SnapshotNodeAdminState(adminState(n.AdminState))}
	return &snap, nil
}

// adminState is the API's name of a stored admin state (as api's).
func adminState(s string) string {
	if s == "" {
		return "in_service"
	}
	return s
}

// Group builds the part of a snapshot at revision rev that every node of
// group groupID shares: its load balancers, their certificates, the group's
// settings and the trace context of the write at rev.
func (b *Builder) Group(ctx context.Context, tx *store.Tx, groupID string, rev int64) (*openapi.Snapshot, error) {
	return b.GroupFrom(ctx, tx, groupID, rev, nil)
}

// GroupFrom is Group, reusing what of prev (an earlier Group of the same
// group, or nil) did not change: the load balancers whose revision is the
// same (read again: only those changed since, unless most did) and the
// certificates of the same version (their private keys opened once). The
// objects' statuses in a reused load balancer are those of its last read
// (statuses change without a revision; agents do not read them).
func (b *Builder) GroupFrom(ctx context.Context, tx *store.Tx, groupID string, rev int64, prev *openapi.Snapshot) (*openapi.Snapshot, error) {
	return b.groupFrom(ctx, tx, groupID, rev, prev)
}

// GroupSince is GroupFrom for a prev no purge has touched since it was built
// (the group's purged revision is the same): the load balancers changed
// since are found by the rows written after prev's revision
// (store.ReadGroupPart) instead of every row's revision, so a write to one
// load balancer among many reads that one's rows.
func (b *Builder) GroupSince(ctx context.Context, tx *store.Tx, groupID string, rev int64, prev *openapi.Snapshot) (*openapi.Snapshot, error) {
	if prev == nil {
		return b.groupFrom(ctx, tx, groupID, rev, nil)
	}
	part, err := store.ReadGroupPart(ctx, tx, groupID, prev.Revision, MaxTraceparents)
	if err != nil {
		return nil, err
	}
	part.Revision = rev
	if part.Traceparent, err = store.RevisionTraceparentGet(ctx, tx, rev); err != nil {
		return nil, err
	}
	return b.GroupOfPart(ctx, tx, part, prev)
}

// GroupOfPart is GroupSince with what store.ReadGroupPart read in tx: from
// scratch when prev is nil (part read with floor 0), else from prev (part
// read with prev's revision as the floor, no purge since prev was built).
func (b *Builder) GroupOfPart(ctx context.Context, tx *store.Tx, part *store.GroupPart, prev *openapi.Snapshot) (*openapi.Snapshot, error) {
	groupID := part.Group.ID
	var lbs []openapi.SnapshotLoadBalancer
	var certs []openapi.SnapshotCertificate
	var err error
	if prev == nil {
		lbs, certs, err = b.loadBalancers(ctx, tx, store.GroupScope(groupID))
	} else {
		lbs, certs, err = b.loadBalancersChanged(ctx, tx, groupID, part.Live, part.Changed, prev)
	}
	if err != nil {
		return nil, err
	}
	return b.assemble(part.Group, part.Revision, lbs, certs, part.Traceparent, part.Peers), nil
}

func (b *Builder) groupFrom(ctx context.Context, tx *store.Tx, groupID string, rev int64, prev *openapi.Snapshot) (*openapi.Snapshot, error) {
	var lbs []openapi.SnapshotLoadBalancer
	var certs []openapi.SnapshotCertificate
	var err error
	if prev == nil {
		lbs, certs, err = b.loadBalancers(ctx, tx, store.GroupScope(groupID))
	} else {
		lbs, certs, err = b.loadBalancersFrom(ctx, tx, groupID, prev)
	}
	if err != nil {
		return nil, err
	}
	g, err := store.NodeGroupGet(ctx, tx, groupID)
	if err != nil {
		return nil, err
	}
	tp, err := store.RevisionTraceparentGet(ctx, tx, rev)
	if err != nil {
		return nil, err
	}
	ps, err := store.PeerListByGroup(ctx, tx, groupID, g.VRRPInterface != "")
	if err != nil {
		return nil, err
	}
	return b.assemble(g, rev, lbs, certs, tp, ps), nil
}

// assemble is group g's part at revision rev of lbs and certs, tp the trace
// context of the write at rev, ps the group's peers as
// store.PeerListByGroup lists them (every node when g uses VRRP).
func (b *Builder) assemble(g *store.NodeGroup, rev int64, lbs []openapi.SnapshotLoadBalancer,
	certs []openapi.SnapshotCertificate, tp string, ps []store.Peer) *openapi.Snapshot {
	hb := g.HeartbeatIntervalMs
	snap := &openapi.Snapshot{Revision: rev, NodeGroupId: g.ID, GeneratedAt: time.Now().UTC(), LoadBalancers: lbs, Certificates: certs,
		HeartbeatIntervalMs: &hb}
	if g.VRRPInterface != "" {
		snap.Vrrp = &openapi.SnapshotVRRP{Interface: g.VRRPInterface, RouterIdMin: g.VRRPRouterIDMin, RouterIdMax: g.VRRPRouterIDMax,
			AdvertIntervalMs: g.VRRPAdvertIntervalMS}
	}
	snap.Peers = peers(ps, snap.Vrrp)
	if tp != "" {
		snap.Traceparent = &tp
	}
	return snap
}

// peers lists the group's HAProxy peers (the nodes of ps that registered a
// peer address); nil when fewer than two take part: nothing to share. With
// vrrp (the group uses VRRP; ps then holds every node of the group) it also
// sets vrrp.Nodes, every node of the group: each node ranks its VRRP
// priorities among them.
func peers(ps []store.Peer, vrrp *openapi.SnapshotVRRP) *[]openapi.SnapshotPeer {
	if vrrp != nil {
		names := make([]string, 0, len(ps))
		for _, p := range ps {
			names = append(names, p.Name)
		}
		vrrp.Nodes = &names
	}
	out := make([]openapi.SnapshotPeer, 0, len(ps))
	for _, p := range ps {
		if p.Address != "" {
			out = append(out, openapi.SnapshotPeer{Name: p.Name, Address: p.Address})
		}
	}
	if len(out) < 2 {
		return nil
	}
	return &out
}

// LoadBalancer builds load balancer lbID's part of a snapshot and the
// certificates its listeners use; nil when it is not live (deleted, being
// deleted, or never existed).
func (b *Builder) LoadBalancer(ctx context.Context, tx *store.Tx, lbID string) (*openapi.SnapshotLoadBalancer, []openapi.SnapshotCertificate, error) {
	lbs, certs, err := b.loadBalancers(ctx, tx, store.LoadBalancerScope(lbID))
	if err != nil || len(lbs) != 1 {
		return nil, nil, err
	}
	return &lbs[0], certs, nil
}

// loadBalancers reads the live load balancers of scope with their live
// listeners, pools, members and routing rules, and the certificates those
// listeners use (private keys opened). The slices are never nil.
func (b *Builder) loadBalancers(ctx context.Context, tx *store.Tx, sc store.SnapshotScope) ([]openapi.SnapshotLoadBalancer, []openapi.SnapshotCertificate, error) {
	rows, err := store.ReadLoadBalancerRows(ctx, tx, sc, &sc)
	if err != nil {
		return nil, nil, err
	}
	certs, err := b.certificates(rows.Certificates, nil)
	if err != nil {
		return nil, nil, err
	}
	return b.shape(rows), certs, nil
}

// shape turns the rows of load balancers into their parts of a snapshot.
// The slices are never nil.
func (b *Builder) shape(rows *store.LoadBalancerRows) []openapi.SnapshotLoadBalancer {
	out := make([]openapi.SnapshotLoadBalancer, 0, len(rows.LoadBalancers))
	for _, lb := range rows.LoadBalancers {
		out = append(out, openapi.SnapshotLoadBalancer{LoadBalancer: b.shapes.LoadBalancer(lb), Revision: max(lb.Revision, rows.Revisions[lb.ID]),
			Listeners: []openapi.Listener{}, Pools: []openapi.Pool{}, Members: []openapi.Member{}, RoutingRules: []openapi.RoutingRule{}})
	}
	byLB := make(map[string]*openapi.SnapshotLoadBalancer, len(out))
	for i := range out {
		byLB[out[i].LoadBalancer.Id] = &out[i]
	}
	for _, l := range rows.Listeners {
		byLB[l.LoadBalancerID].Listeners = append(byLB[l.LoadBalancerID].Listeners, b.shapes.Listener(l))
	}
	for _, p := range rows.Pools {
		byLB[p.LoadBalancerID].Pools = append(byLB[p.LoadBalancerID].Pools, b.shapes.Pool(p))
	}
	for _, m := range rows.Members {
		byLB[m.LoadBalancerID].Members = append(byLB[m.LoadBalancerID].Members, b.shapes.Member(m))
	}
	for _, ru := range rows.RoutingRules {
		byLB[ru.LoadBalancerID].RoutingRules = append(byLB[ru.LoadBalancerID].RoutingRules, b.shapes.RoutingRule(ru))
	}
	return out
}

// certificates are the snapshot's certificates of certs (read with their
// keys sealed), opening their private keys, or taking them from prev when
// it holds the same version.
func (b *Builder) certificates(certs []*store.Certificate, prev []openapi.SnapshotCertificate) ([]openapi.SnapshotCertificate, error) {
	old := make(map[string]openapi.SnapshotCertificate, len(prev))
	for _, c := range prev {
		old[c.Id] = c
	}
	out := make([]openapi.SnapshotCertificate, 0, len(certs))
	for _, c := range certs {
		if o, ok := old[c.ID]; ok && o.Version == c.Version && o.Certificate == c.CertificatePEM {
			out = append(out, o)
			continue
		}
		key, err := b.privateKey(c)
		if err != nil {
			return nil, fmt.Errorf("decrypt key of %s: %w", c.ID, err)
		}
		out = append(out, openapi.SnapshotCertificate{Id: c.ID, Version: c.Version, Certificate: c.CertificatePEM, PrivateKey: string(key)})
	}
	return out, nil
}

// loadBalancersFrom is loadBalancers of group groupID, reusing prev's load
// balancers whose revision did not change and reading the others alone
// (all of them when most changed).
func (b *Builder) loadBalancersFrom(ctx context.Context, tx *store.Tx, groupID string, prev *openapi.Snapshot) ([]openapi.SnapshotLoadBalancer, []openapi.SnapshotCertificate, error) {
	sc := store.GroupScope(groupID)
	revs, err := store.LoadBalancerRevisions(ctx, tx, sc) // the live ones
	if err != nil {
		return nil, nil, err
	}
	old := make(map[string]*openapi.SnapshotLoadBalancer, len(prev.LoadBalancers))
	for i := range prev.LoadBalancers {
		old[prev.LoadBalancers[i].LoadBalancer.Id] = &prev.LoadBalancers[i]
	}
	ids := make([]string, 0, len(revs))
	var changed []string
	for id, rev := range revs {
		ids = append(ids, id)
		if o := old[id]; o == nil || o.Revision != rev {
			changed = append(changed, id)
		}
	}
	return b.reuseOrRead(ctx, tx, sc, prev, ids, changed, func(id string) *openapi.SnapshotLoadBalancer {
		if o := old[id]; o != nil && o.Revision == revs[id] {
			return o
		}
		return nil
	})
}

// reuseOrRead is the load balancers ids (sorted here) of scope sc: those in
// changed read again, the others reuse(id) (prev's, still current; nil
// drops it), with sc's certificates; everything read again when most of ids
// changed.
func (b *Builder) reuseOrRead(ctx context.Context, tx *store.Tx, sc store.SnapshotScope, prev *openapi.Snapshot, ids, changed []string,
	reuse func(id string) *openapi.SnapshotLoadBalancer) ([]openapi.SnapshotLoadBalancer, []openapi.SnapshotCertificate, error) {
	if 2*len(changed) > len(ids) {
		return b.loadBalancers(ctx, tx, sc)
	}
	// The changed load balancers' rows and sc's certificates, in one round
	// trip.
	rows, err := store.ReadLoadBalancerRows(ctx, tx, store.LoadBalancersScope(changed), &sc)
	if err != nil {
		return nil, nil, err
	}
	fresh := map[string]openapi.SnapshotLoadBalancer{}
	for _, lb := range b.shape(rows) {
		fresh[lb.LoadBalancer.Id] = lb
	}
	sort.Strings(ids)
	out := make([]openapi.SnapshotLoadBalancer, 0, len(ids))
	for _, id := range ids {
		if lb, ok := fresh[id]; ok {
			out = append(out, lb)
		} else if o := reuse(id); o != nil {
			out = append(out, *o)
		}
	}
	certs, err := b.certificates(rows.Certificates, prev.Certificates)
	if err != nil {
		return nil, nil, err
	}
	return out, certs, nil
}

// loadBalancersChanged is loadBalancersFrom for a prev no purge has
// touched since (GroupSince), live the group's live load balancers and
// since those with rows written after prev's revision
// (store.ReadGroupPart): those, and the live ones prev lacks (moved into the
// group), are read again; prev's others are reused as they are, those no
// longer live in the group dropped.
func (b *Builder) loadBalancersChanged(ctx context.Context, tx *store.Tx, groupID string, live, since []string,
	prev *openapi.Snapshot) ([]openapi.SnapshotLoadBalancer, []openapi.SnapshotCertificate, error) {
	old := make(map[string]*openapi.SnapshotLoadBalancer, len(prev.LoadBalancers))
	for i := range prev.LoadBalancers {
		old[prev.LoadBalancers[i].LoadBalancer.Id] = &prev.LoadBalancers[i]
	}
	stale := make(map[string]bool, len(since))
	for _, id := range since {
		stale[id] = true
	}
	var changed []string
	for _, id := range live {
		if stale[id] || old[id] == nil {
			changed = append(changed, id)
		}
	}
	return b.reuseOrRead(ctx, tx, store.GroupScope(groupID), prev, live, changed, func(id string) *openapi.SnapshotLoadBalancer {
		if stale[id] {
			return nil
		}
		return old[id]
	})
}
