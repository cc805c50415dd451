package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/fulcrumlb/fulcrum/api/auth"
	"github.com/fulcrumlb/fulcrum/api/problem"
	"github.com/fulcrumlb/fulcrum/api/store"
	"github.com/fulcrumlb/fulcrum/api/validate"
	"github.com/fulcrumlb/fulcrum/openapi"
)

// Long-poll bounds.
const (
	SnapshotWaitDefault = 30 * time.Second
	SnapshotWaitMax     = 60 * time.Second
)

// nodeScope is what a caller of the agent endpoints may act as: "" for any.
type nodeScope struct{ groupID, nodeID string }

// nodeCaller admits node tokens (bound to their group, or to one node, when
// the token is) and admins.
func nodeCaller(ctx context.Context) (nodeScope, error) {
	p, err := principal(ctx)
	if err != nil {
		return nodeScope{}, err
	}
	switch p.Kind {
	case store.TokenNode:
		return nodeScope{groupID: p.NodeGroupID, nodeID: p.NodeID}, nil
	case store.TokenAdmin:
		return nodeScope{}, nil
	}
	return nodeScope{}, problem.Forbidden("This endpoint is for dataplane agents: use a node token.")
}

// boundNodeName is the node a node token is bound to, "" when none.
func boundNodeName(ctx context.Context) string {
	if p, ok := auth.PrincipalFrom(ctx); ok && p.Kind == store.TokenNode {
		return p.NodeName
	}
	return ""
}

// nodeByName finds a node by name or id, within the token's group or node if
// bound.
func nodeByName(ctx context.Context, tx *store.Tx, name string, scope nodeScope, forUpdate bool) (*store.Node, error) {
	q := "SELECT * FROM nodes WHERE (name = $1 OR id = $1)"
	if forUpdate {
		q += " FOR UPDATE"
	}
	rows, _ := tx.Query(ctx, q, name)
	n, err := pgx.CollectExactlyOneRow(rows, pgx.RowToAddrOfStructByNameLax[store.Node])
	if err != nil && !errors.Is(err, pgx.ErrNoRows) && !errors.Is(err, pgx.ErrTooManyRows) {
		return nil, fmt.Errorf("look up node: %w", err)
	}
	// A token bound to a node serves that node only, whether the others
	// exist or not.
	if bound := boundNodeName(ctx); bound != "" && name != bound && (err != nil || n.Name != bound) {
		return nil, problem.Forbidden(fmt.Sprintf("This node token is bound to node %q.", bound))
	}
	if err != nil || (scope.groupID != "" && n.NodeGroupID != scope.groupID) || (scope.nodeID != "" && n.ID != scope.nodeID) {
		return nil, problem.NotFound("node", name)
	}
	return n, nil
}

func (h *handlers) RegisterNode(ctx context.Context, r openapi.RegisterNodeRequestObject) (openapi.RegisterNodeResponseObject, error) {
	scope, err := nodeCaller(ctx)
	if err != nil {
		return nil, err
	}
	tokenGroup := scope.groupID
	b := r.Body
	peer, err := peerAddress(*b) // peers.go
	if err != nil {
		return nil, err
	}
	var out openapi.Node
	err = h.st.Write(ctx, false, func(tx *store.Tx) error {
		n, err := nodeByName(ctx, tx, r.Id, scope, true)
		if err == nil {
			row, err := store.RecordNodeHeartbeat(ctx, tx, n.ID, []store.Column{
				{Name: "last_seen_at", Value: time.Now()}, {Name: "status", Value: "online"}, {Name: "agent_version", Value: deref(b.AgentVersion)},
				{Name: "peer_address", Value: peer}})
			if err != nil {
				return err
			}
			g, err := nodeGroupOf(ctx, tx, row)
			if err != nil {
				return err
			}
			out = nodeToAPI(row, g)
			return nil
		}
		var notFound *problem.Problem
		if !errors.As(err, &notFound) || notFound.Status != http.StatusNotFound {
			return err
		}
		if scope.nodeID != "" {
			// A token bound to a node acts as that node only.
			return err
		}
		// An admin deleted this node: its agent may not bring it back.
		if at, err := store.NodeTombstone(ctx, tx, r.Id); err != nil {
			return err
		} else if at != nil {
			return problem.Conflict("node-deleted", "Node "+r.Id+" was deleted by an admin at "+at.UTC().Format(time.RFC3339)+
				"; it cannot register again until an admin creates it (POST /v1/nodes).",
				validate.FieldError{Field: "id", Message: "names a deleted node"})
		}
		var e validate.Errors
		validate.Hostname(&e, "id", r.Id, false)
		validate.Text(&e, "agent_version", deref(b.AgentVersion), 64)
		if err := e.Err(); err != nil {
			return err
		}
		group := tokenGroup
		if b.NodeGroupId != nil {
			if tokenGroup != "" && *b.NodeGroupId != tokenGroup {
				return problem.InvalidField("node_group_id", "is not the node token's group")
			}
			group = *b.NodeGroupId
		}
		if group == "" {
			return problem.InvalidField("node_group_id", "is required: the node token is not bound to a node group")
		}
		g, err := store.Get[store.NodeGroup](ctx, tx, store.KindNodeGroup, "", group, false)
		if err != nil {
			return problem.InvalidField("node_group_id", "does not exist")
		}
		rev, err := tx.Revision(ctx)
		if err != nil {
			return err
		}
		row, err := store.Insert[store.Node](ctx, tx, store.KindNode, []store.Column{
			{Name: "id", Value: store.NewID(store.KindNode.Prefix)}, {Name: "name", Value: r.Id}, {Name: "node_group_id", Value: group},
			{Name: "labels", Value: map[string]string{}}, {Name: "revision", Value: rev}, {Name: "status", Value: "online"},
			{Name: "last_seen_at", Value: time.Now()}, {Name: "agent_version", Value: deref(b.AgentVersion)}, {Name: "peer_address", Value: peer}})
		if err != nil {
			return err
		}
		out = nodeToAPI(row, g)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return openapi.RegisterNode200JSONResponse{Body: out, Headers: openapi.RegisterNode200ResponseHeaders{ETag: etag(out.Version)}}, nil
}

func (h *handlers) GetNodeSnapshot(ctx context.Context, r openapi.GetNodeSnapshotRequestObject) (openapi.GetNodeSnapshotResponseObject, error) {
	scope, err := nodeCaller(ctx)
	if err != nil {
		return nil, err
	}
	defer waitSnapshot(ctx)() // metrics.go
	after := deref(r.Params.After)
	wait := SnapshotWaitDefault
	if r.Params.Wait != nil {
		d, err := time.ParseDuration(*r.Params.Wait)
		if err != nil || d < 0 || d > SnapshotWaitMax {
			return nil, problem.BadRequest("wait", "must be a duration from 0s to %s", SnapshotWaitMax)
		}
		wait = d
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		changed := h.notify.Changed()
		var snap *openapi.Snapshot
		rctx, cancel := context.WithTimeout(ctx, h.requestTimeout)
		err := pgx.BeginTxFunc(rctx, h.st.Pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(t pgx.Tx) error {
			tx := &store.Tx{Tx: t}
			n, err := nodeByName(rctx, tx, r.Id, scope, false)
			if err != nil {
				return err
			}
			rev, err := store.GroupRevision(rctx, tx, n.NodeGroupID)
			if err != nil {
				return err
			}
			// The node's own revision (a cordon, a drain) counts too: the
			// snapshot tells the agent its admin state.
			rev = max(rev, n.Revision)
			if rev <= after {
				return nil
			}
			if snap, err = h.buildSnapshot(rctx, tx, n.NodeGroupID, after, rev); err != nil {
				return err
			}
			g, err := nodeGroupOf(rctx, tx, n)
			if err != nil {
				return err
			}
			hb := g.HeartbeatIntervalMs
			snap.HeartbeatIntervalMs = &hb
			snap.Node = &openapi.SnapshotNode{Id: n.ID, Name: n.Name, AdminState: openapi.SnapshotNodeAdminState(adminState(n.AdminState))}
			snap.Peers, err = snapshotPeers(rctx, tx, n.NodeGroupID) // peers.go
			return err
		})
		cancel()
		if err != nil {
			return nil, err
		}
		if snap != nil {
			return openapi.GetNodeSnapshot200JSONResponse{Body: *snap}, nil
		}
		select {
		case <-changed:
		case <-timer.C:
			return openapi.GetNodeSnapshot304Response{}, nil
		case <-h.notify.Done():
			return openapi.GetNodeSnapshot304Response{}, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// buildSnapshot reads everything the group serves, in the caller's
// repeatable-read transaction, so it is consistent at rev. Its traceparents
// are those of the group's writes after the revision after.
func (h *handlers) buildSnapshot(ctx context.Context, tx *store.Tx, groupID string, after, rev int64) (*openapi.Snapshot, error) {
	lbs, certs, err := h.readTrees(ctx, tx, treesOfGroup, groupID)
	if err != nil {
		return nil, err
	}
	snap := &openapi.Snapshot{Revision: rev, NodeGroupId: groupID, GeneratedAt: time.Now().UTC(), LoadBalancers: lbs, Certificates: certs}
	if g, err := store.Get[store.NodeGroup](ctx, tx, store.KindNodeGroup, "", groupID, false); err != nil {
		return nil, err
	} else if g.VRRPInterface != "" {
		snap.Vrrp = &openapi.SnapshotVRRP{Interface: g.VRRPInterface, RouterIdMin: g.VRRPRouterIDMin, RouterIdMax: g.VRRPRouterIDMax, AdvertIntervalMs: g.VRRPAdvertIntervalMS}
	}
	var tp string
	if err := tx.QueryRow(ctx, "SELECT traceparent FROM revisions WHERE revision <= $1 ORDER BY revision DESC LIMIT 1", rev).Scan(&tp); err == nil && tp != "" {
		snap.Traceparent = &tp
	}
	tps, err := writeTraceparents(ctx, tx, groupID, after, rev)
	if err != nil {
		return nil, err
	}
	if len(tps) > 0 {
		snap.Traceparents = &tps
	}
	return snap, nil
}

// maxSnapshotTraceparents bounds a snapshot's traceparents (and so its apply
// span's links): a node starting from nothing folds every write ever made.
const maxSnapshotTraceparents = 100

// groupWriteRevisions selects the revisions of the writes that changed
// something node group $1 serves and that are still visible: each object's
// last write and its delete.
var groupWriteRevisions = func() string {
	q := "SELECT revision FROM node_groups WHERE id = $1" +
		" UNION SELECT revision FROM load_balancers WHERE node_group_id = $1" +
		" UNION SELECT deleted_revision FROM load_balancers WHERE node_group_id = $1"
	for _, t := range []string{"listeners", "pools", "members", "routing_rules"} {
		for _, col := range []string{"revision", "deleted_revision"} {
			q += " UNION SELECT t." + col + " FROM " + t + " t JOIN load_balancers lb ON lb.id = t.load_balancer_id WHERE lb.node_group_id = $1"
		}
	}
	return q
}()

// writeTraceparents returns the W3C trace contexts of the writes to the
// group in (after, rev], oldest first, the newest maxSnapshotTraceparents of
// them: a snapshot folding several writes lets the agent's apply link to each.
// An object written twice in that range shows only its last write.
func writeTraceparents(ctx context.Context, tx *store.Tx, groupID string, after, rev int64) ([]string, error) {
	rows, err := tx.Query(ctx, `SELECT traceparent FROM (
  SELECT revision, traceparent FROM revisions
  WHERE revision > $2 AND revision <= $3 AND traceparent <> '' AND revision IN (`+groupWriteRevisions+`)
  ORDER BY revision DESC LIMIT $4) w ORDER BY revision`, groupID, after, rev, maxSnapshotTraceparents)
	if err != nil {
		return nil, fmt.Errorf("write traceparents: %w", err)
	}
	tps, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("write traceparents: %w", err)
	}
	return tps, nil
}

// treeScope selects the load balancers readTrees reads: it is the column of
// load_balancers compared with readTrees' argument.
type treeScope string

const (
	treesOfGroup treeScope = "node_group_id" // every load balancer of a node group
	treeOfLB     treeScope = "id"            // one load balancer
)

// readTrees reads the live load balancers of scope with their live listeners,
// pools, members and routing rules, and the certificates those listeners use
// (private keys decrypted): the load-balancer part of a snapshot. It reads in
// tx, so a repeatable-read transaction sees one revision and a write
// transaction (a dry run) sees its own changes. The slices are never nil.
func (h *handlers) readTrees(ctx context.Context, tx *store.Tx, scope treeScope, arg string) ([]openapi.SnapshotLoadBalancer, []openapi.SnapshotCertificate, error) {
	col := string(scope) // one of the constants above, never user input
	const live = " AND t.deleted_revision IS NULL"
	inScope := " FROM %s t JOIN load_balancers lb ON lb.id = t.load_balancer_id WHERE lb." + col + " = $1 AND lb.deleted_revision IS NULL" + live + " ORDER BY t.id"
	lbs, err := store.Select[store.LoadBalancer](ctx, tx, "SELECT t.* FROM load_balancers t WHERE t."+col+" = $1"+live+" ORDER BY t.id", arg)
	if err != nil {
		return nil, nil, err
	}
	listeners, err := store.Select[store.Listener](ctx, tx, "SELECT t.*"+fmt.Sprintf(inScope, "listeners"), arg)
	if err != nil {
		return nil, nil, err
	}
	pools, err := store.Select[store.Pool](ctx, tx, "SELECT t.*"+fmt.Sprintf(inScope, "pools"), arg)
	if err != nil {
		return nil, nil, err
	}
	members, err := store.Select[store.Member](ctx, tx, "SELECT t.*"+fmt.Sprintf(inScope, "members"), arg)
	if err != nil {
		return nil, nil, err
	}
	rules, err := store.Select[store.RoutingRule](ctx, tx, "SELECT t.*"+fmt.Sprintf(inScope, "routing_rules"), arg)
	if err != nil {
		return nil, nil, err
	}
	certs, err := store.Select[store.Certificate](ctx, tx, `SELECT c.* FROM certificates c WHERE c.id IN (
  SELECT lc.certificate_id FROM listener_certificates lc JOIN listeners l ON l.id = lc.listener_id JOIN load_balancers lb ON lb.id = l.load_balancer_id
  WHERE lb.`+col+` = $1 AND lb.deleted_revision IS NULL AND l.deleted_revision IS NULL) ORDER BY c.id`, arg)
	if err != nil {
		return nil, nil, err
	}
	out := make([]openapi.SnapshotLoadBalancer, 0, len(lbs))
	for _, lb := range lbs {
		out = append(out, openapi.SnapshotLoadBalancer{LoadBalancer: lbToAPI(lb),
			Listeners: []openapi.Listener{}, Pools: []openapi.Pool{}, Members: []openapi.Member{}, RoutingRules: []openapi.RoutingRule{}})
	}
	byLB := make(map[string]*openapi.SnapshotLoadBalancer, len(out))
	for i := range out {
		byLB[out[i].LoadBalancer.Id] = &out[i]
	}
	for _, l := range listeners {
		byLB[l.LoadBalancerID].Listeners = append(byLB[l.LoadBalancerID].Listeners, listenerToAPI(l))
	}
	for _, p := range pools {
		byLB[p.LoadBalancerID].Pools = append(byLB[p.LoadBalancerID].Pools, poolToAPI(p))
	}
	for _, m := range members {
		byLB[m.LoadBalancerID].Members = append(byLB[m.LoadBalancerID].Members, memberToAPI(m))
	}
	for _, ru := range rules {
		byLB[ru.LoadBalancerID].RoutingRules = append(byLB[ru.LoadBalancerID].RoutingRules, ruleToAPI(ru))
	}
	outCerts := make([]openapi.SnapshotCertificate, 0, len(certs))
	for _, c := range certs {
		key, err := PrivateKey(h.box, c)
		if err != nil {
			return nil, nil, fmt.Errorf("decrypt key of %s: %w", c.ID, err)
		}
		outCerts = append(outCerts, openapi.SnapshotCertificate{Id: c.ID, Version: c.Version, Certificate: c.CertificatePEM, PrivateKey: string(key)})
	}
	return out, outCerts, nil
}

func (h *handlers) ReportNode(ctx context.Context, r openapi.ReportNodeRequestObject) (openapi.ReportNodeResponseObject, error) {
	scope, err := nodeCaller(ctx)
	if err != nil {
		return nil, err
	}
	countReport(ctx, string(r.Body.Status)) // metrics.go
	b := r.Body
	if b.Vips != nil {
		for i, v := range *b.Vips {
			if _, err := netip.ParseAddr(v); err != nil {
				return nil, problem.InvalidField(validate.Index("vips", i), "must be an IP address")
			}
		}
	}
	err = h.st.Write(ctx, false, func(tx *store.Tx) error {
		n, err := nodeByName(ctx, tx, r.Id, scope, true)
		if err != nil {
			return err
		}
		now := time.Now()
		cols := []store.Column{{Name: "last_seen_at", Value: now}, {Name: "status", Value: "online"}}
		// The last apply error stays in status_message while the failure lasts.
		if stillFailing := b.Status == openapi.Ack && n.ApplyFailingSince != nil && b.Revision < n.ApplyFailingRevision; !stillFailing {
			cols = append(cols, store.Column{Name: "status_message", Value: deref(b.Message)})
		}
		if b.Status == openapi.Ack && b.Revision > n.AppliedRevision {
			cols = append(cols, store.Column{Name: "applied_revision", Value: b.Revision})
		}
		// A nack starts (or continues) a failure; an ack of the failed
		// revision or a newer one ends it. Acks of an older revision (the
		// agent's periodic reports of what it still serves) do not.
		switch {
		case b.Status == openapi.Nack:
			since := now
			if n.ApplyFailingSince != nil {
				since = *n.ApplyFailingSince
			}
			cols = append(cols, store.Column{Name: "apply_failing_since", Value: since},
				store.Column{Name: "apply_failing_revision", Value: max(n.ApplyFailingRevision, b.Revision)})
		case n.ApplyFailingSince != nil && b.Revision >= n.ApplyFailingRevision:
			cols = append(cols, store.Column{Name: "apply_failing_since", Value: nil}, store.Column{Name: "apply_failing_revision", Value: int64(0)})
		}
		if b.Vips != nil {
			cols = append(cols, store.Column{Name: "vips", Value: *b.Vips})
		}
		if _, err := store.RecordNodeHeartbeat(ctx, tx, n.ID, cols); err != nil {
			return err
		}
		if b.NodeErrors != nil {
			errs := make([]store.NodeError, 0, len(*b.NodeErrors))
			for _, e := range *b.NodeErrors {
				errs = append(errs, store.NodeError{Kind: string(e.Kind), Message: e.Message})
			}
			if _, err := store.ReplaceNodeErrors(ctx, tx, n, errs, time.Now()); err != nil {
				return err
			}
		}
		rep := store.Report{ReplaceLBErrors: b.LoadBalancerErrors != nil, MemberStatus: map[string]string{}}
		for _, e := range deref(b.LoadBalancerErrors) {
			rep.LBErrors = append(rep.LBErrors, store.LBError{LoadBalancerID: e.LoadBalancerId, ObjectID: deref(e.ObjectId),
				Field: deref(e.Field), Message: e.Message})
		}
		for _, m := range deref(b.Members) {
			rep.MemberStatus[m.Id] = string(m.Status)
		}
		if err := store.ApplyReport(ctx, tx, n, rep); err != nil {
			return err
		}
		for _, s := range deref(b.Stats) {
			counters, _ := json.Marshal(s)
			if _, err := tx.Exec(ctx, `INSERT INTO load_balancer_stats (node_id, load_balancer_id, counters, updated_at)
SELECT $1, lb.id, $3, now() FROM load_balancers lb WHERE lb.id = $2 AND lb.node_group_id = $4
ON CONFLICT (node_id, load_balancer_id) DO UPDATE SET counters = EXCLUDED.counters, updated_at = now()`, n.ID, s.LoadBalancerId, counters, n.NodeGroupID); err != nil {
				return fmt.Errorf("store stats: %w", err)
			}
		}
		return store.Purge(ctx, tx)
	})
	if err != nil {
		return nil, err
	}
	return openapi.ReportNode204Response{}, nil
}
