package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/fulcrumlb/fulcrum/api/problem"
	"github.com/fulcrumlb/fulcrum/api/store"
	"github.com/fulcrumlb/fulcrum/api/validate"
	"github.com/fulcrumlb/fulcrum/dataplane/haproxy"
	"github.com/fulcrumlb/fulcrum/dataplane/snapshot"
	"github.com/fulcrumlb/fulcrum/openapi"
)

// A dry run of a load balancer, listener, pool, member or routing rule also
// renders the affected load balancer as an agent would (snapshot.ToConfig,
// haproxy.RenderLoadBalancer) and runs haproxy -c on it, so that what the
// API's validation accepts but HAProxy refuses (a regex RE2 takes and PCRE2
// does not, say) is a 422 before anything is stored, not a nack later. The
// tree is read inside the dry run's transaction, after its write and before
// the rollback; HAProxy runs after the rollback, so the write lock is not held
// meanwhile. Without an HAProxy binary (Config.HAProxy) the check is skipped.

const (
	// dryRunCheckTimeout bounds a dry run's render and haproxy -c, waiting
	// for a slot included.
	dryRunCheckTimeout = 10 * time.Second
	// dryRunChecksMax bounds the haproxy -c processes run at once.
	dryRunChecksMax = 4
	// dryRunErrorsMax bounds the errors[] of a haproxy-rejected problem.
	dryRunErrorsMax = 10
)

// dryRunTree is what a dry run wrote and its load balancer's part of a
// snapshot as the write left it.
type dryRunTree struct {
	// obj is the written object as answered: openapi.LoadBalancer,
	// Listener, Pool, Member or RoutingRule.
	obj   any
	lb    openapi.SnapshotLoadBalancer
	certs []openapi.SnapshotCertificate
}

// affectedLB is the load balancer whose configuration a written object is
// part of; "" for objects that are no part of one (tenants, nodes, node
// groups, certificates).
func affectedLB(obj any) string {
	switch o := obj.(type) {
	case openapi.LoadBalancer:
		return o.Id
	case openapi.Listener:
		return o.LoadBalancerId
	case openapi.Pool:
		return o.LoadBalancerId
	case openapi.Member:
		return o.LoadBalancerId
	case openapi.RoutingRule:
		return o.LoadBalancerId
	}
	return ""
}

// readDryRunTree reads, in the dry run's transaction after its write, the
// load balancer obj belongs to. It returns nil when there is nothing to check:
// no HAProxy, an object of no load balancer, or a load balancer that is
// disabled (nothing of it is rendered) or being deleted.
func (h *handlers) readDryRunTree(ctx context.Context, tx *store.Tx, obj any) (*dryRunTree, error) {
	if h.haproxy == "" {
		return nil, nil
	}
	id := affectedLB(obj)
	if id == "" {
		return nil, nil
	}
	lb, certs, err := h.snapshots.LoadBalancer(ctx, tx, id)
	if err != nil {
		return nil, err
	}
	if lb == nil || !lb.LoadBalancer.Enabled {
		return nil, nil
	}
	return &dryRunTree{obj: obj, lb: *lb, certs: certs}, nil
}

// checkDryRun renders t's load balancer alone and checks it with haproxy -c.
// HAProxy refusing it, or the renderer refusing a value, is a 422
// haproxy-rejected naming the most likely field; HAProxy failing to run
// (or taking too long) is a 503.
func (h *handlers) checkDryRun(ctx context.Context, t *dryRunTree) error {
	ctx, cancel := context.WithTimeout(ctx, dryRunCheckTimeout)
	defer cancel()
	lbID := t.lb.LoadBalancer.Id
	dir, err := os.MkdirTemp("", "fulcrum-dry-run-")
	if err != nil {
		return fmt.Errorf("dry run of %s: %w", lbID, err)
	}
	defer os.RemoveAll(dir)
	certFile, err := snapshot.WriteCertificates(filepath.Join(dir, "certs"), t.certs)
	if err != nil {
		return fmt.Errorf("dry run of %s: write certificates: %w", lbID, err)
	}
	snap := &openapi.Snapshot{LoadBalancers: []openapi.SnapshotLoadBalancer{t.lb}, Certificates: t.certs}
	cfg, err := snapshot.ToConfig(snap, haproxy.Global{StatsSocket: filepath.Join(dir, "stats.sock"), AccessLogSocket: filepath.Join(dir, "access.sock")}, certFile)
	if err == nil && len(cfg.LoadBalancers) != 1 {
		err = errors.New("the load balancer converts to nothing")
	}
	var rendered haproxy.Rendered
	if err == nil {
		rendered, err = haproxy.RenderLoadBalancerWithOrigins(cfg.Global, cfg.LoadBalancers[0])
	}
	if err != nil {
		msg := strings.TrimPrefix(err.Error(), "haproxy: ")
		return problem.New(http.StatusUnprocessableEntity, "haproxy-rejected", "HAProxy rejects the configuration",
			fmt.Sprintf("With this change, load balancer %s's configuration cannot be rendered for HAProxy: %s. Nothing was stored.", lbID, msg),
			validate.FieldError{Field: "body", Message: msg})
	}
	path := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(path, rendered.Text, 0o600); err != nil {
		return fmt.Errorf("dry run of %s: %w", lbID, err)
	}
	select {
	case h.checks <- struct{}{}:
		defer func() { <-h.checks }()
	case <-ctx.Done():
		return h.checkUnavailable(ctx, lbID, fmt.Errorf("waiting for a free check: %w", ctx.Err()))
	}
	err = haproxy.Check(ctx, h.haproxy, path)
	var ce *haproxy.CheckError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ce):
		if len(ce.Alerts) == 0 && strings.Contains(ce.Output, "has no error but will not start (no listener)") {
			// A load balancer without listeners: valid, it serves nothing yet.
			return nil
		}
		return t.rejected(ce, path, &rendered)
	default:
		return h.checkUnavailable(ctx, lbID, err)
	}
}

// checkUnavailable is the 503 of a dry run HAProxy could not check.
func (h *handlers) checkUnavailable(ctx context.Context, lbID string, err error) error {
	h.log.WarnContext(ctx, "dry run: haproxy -c failed to run", "load_balancer_id", lbID, "haproxy", h.haproxy, "err", err)
	p := problem.New(http.StatusServiceUnavailable, "haproxy-unavailable", "HAProxy check unavailable",
		fmt.Sprintf("The dry run could not check load balancer %s's configuration with HAProxy; nothing was stored. Retry later.", lbID))
	p.Headers = map[string]string{"Retry-After": "5"}
	return p
}

var (
	aclParseRE   = regexp.MustCompile(`error detected while parsing ACL '([^']+)'`)
	aclMissingRE = regexp.MustCompile(`no such ACL : '([^']+)'`)
)

// rejected is the 422 of a configuration HAProxy refused: the detail quotes
// HAProxy's first alert, errors[] has one entry per alert naming the field of
// the written object it comes from ("body" when none); r is the configuration
// as rendered, with where each of its lines comes from.
func (t *dryRunTree) rejected(ce *haproxy.CheckError, path string, r *haproxy.Rendered) error {
	lbID := t.lb.LoadBalancer.Id
	clean := func(s string) string { return strings.TrimSpace(strings.ReplaceAll(s, path, "the configuration")) }
	var fields []validate.FieldError
	seen := map[validate.FieldError]bool{}
	badACLs := map[string]bool{} // ACLs HAProxy could not parse: their uses then fail too
	for _, a := range ce.Alerts {
		if m := aclParseRE.FindStringSubmatch(a.Message); m != nil {
			badACLs[m[1]] = true
		} else if m := aclMissingRE.FindStringSubmatch(a.Message); m != nil && badACLs[m[1]] {
			continue
		}
		f := validate.FieldError{Field: t.alertField(a, r), Message: clean(a.Message)}
		if f.Field == "body" && a.Section != "" {
			f.Message = "[" + a.Section + "] " + f.Message
		}
		if seen[f] {
			continue
		}
		seen[f] = true
		fields = append(fields, f)
		if len(fields) == dryRunErrorsMax {
			break
		}
	}
	var first string
	if len(fields) == 0 {
		out := clean(ce.Output)
		if i := strings.LastIndexByte(out, '\n'); i >= 0 {
			out = strings.TrimSpace(out[i+1:])
		}
		if out == "" {
			out = "the configuration is invalid"
		}
		fields = append(fields, validate.FieldError{Field: "body", Message: out})
		first = out
	} else {
		first = clean(ce.Alerts[0].Message)
		if s := ce.Alerts[0].Section; s != "" {
			first = "[" + s + "] " + first
		}
	}
	return problem.New(http.StatusUnprocessableEntity, "haproxy-rejected", "HAProxy rejects the configuration",
		fmt.Sprintf("With this change, HAProxy rejects load balancer %s's configuration: %s Nothing was stored.", lbID, strings.TrimSuffix(first, ".")+"."),
		fields...)
}

// alertField names the field of the written object an alert comes from, by
// the origin the renderer recorded for the configuration line the alert
// points at (or, for an alert naming a server but no line, for that server's
// line); "body" when the alert is not about the written object or about no
// field of it.
func (t *dryRunTree) alertField(a haproxy.Alert, r *haproxy.Rendered) string {
	o := r.Origin(a.Line)
	if o.Kind == haproxy.KindNone && a.Server != "" {
		o = r.ServerOrigin(a.Server)
	}
	kind, id := dryRunObject(t.obj)
	if o.Kind == haproxy.KindNone || o.Kind != kind || o.ID != id || o.Field == "" {
		return "body"
	}
	field := o.Path()
	// A condition's values share its acl lines: name the value HAProxy quotes.
	if rule, ok := t.obj.(openapi.RoutingRule); ok && o.Field == "conditions[].values" && o.Index < len(rule.Conditions) {
		for j, v := range rule.Conditions[o.Index].Values {
			if v != "" && strings.Contains(a.Message, "'"+v+"'") {
				return validate.Index(field, j)
			}
		}
	}
	return field
}

// dryRunObject is the kind of configuration object and id of a written
// object (KindNone for objects no line comes from).
func dryRunObject(obj any) (haproxy.Kind, string) {
	switch o := obj.(type) {
	case openapi.LoadBalancer:
		return haproxy.KindLoadBalancer, o.Id
	case openapi.Listener:
		return haproxy.KindListener, o.Id
	case openapi.Pool:
		return haproxy.KindPool, o.Id
	case openapi.Member:
		return haproxy.KindMember, o.Id
	case openapi.RoutingRule:
		return haproxy.KindRule, o.Id
	}
	return haproxy.KindNone, ""
}
