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
	"github.com/fulcrumlb/fulcrum/dataplane/agent"
	"github.com/fulcrumlb/fulcrum/dataplane/haproxy"
	"github.com/fulcrumlb/fulcrum/openapi"
)

// A dry run of a load balancer, listener, pool, member or routing rule also
// renders the affected load balancer as an agent would (agent.ToConfig,
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
	lbs, certs, err := h.readTrees(ctx, tx, treeOfLB, id)
	if err != nil {
		return nil, err
	}
	if len(lbs) != 1 || !lbs[0].LoadBalancer.Enabled {
		return nil, nil
	}
	return &dryRunTree{obj: obj, lb: lbs[0], certs: certs}, nil
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
	certFile, err := agent.WriteCertificates(filepath.Join(dir, "certs"), t.certs)
	if err != nil {
		return fmt.Errorf("dry run of %s: write certificates: %w", lbID, err)
	}
	snap := &openapi.Snapshot{LoadBalancers: []openapi.SnapshotLoadBalancer{t.lb}, Certificates: t.certs}
	cfg, err := agent.ToConfig(snap, haproxy.Global{StatsSocket: filepath.Join(dir, "stats.sock"), AccessLogSocket: filepath.Join(dir, "access.sock")}, certFile)
	if err == nil && len(cfg.LoadBalancers) != 1 {
		err = errors.New("the load balancer converts to nothing")
	}
	var text []byte
	if err == nil {
		text, err = haproxy.RenderLoadBalancer(cfg.Global, cfg.LoadBalancers[0])
	}
	if err != nil {
		msg := strings.TrimPrefix(err.Error(), "haproxy: ")
		return problem.New(http.StatusUnprocessableEntity, "haproxy-rejected", "HAProxy rejects the configuration",
			fmt.Sprintf("With this change, load balancer %s's configuration cannot be rendered for HAProxy: %s. Nothing was stored.", lbID, msg),
			validate.FieldError{Field: "body", Message: msg})
	}
	path := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(path, text, 0o600); err != nil {
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
		return t.rejected(ce, path, text)
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
// the written object it most likely comes from ("body" when none).
func (t *dryRunTree) rejected(ce *haproxy.CheckError, path string, text []byte) error {
	lbID := t.lb.LoadBalancer.Id
	lines := strings.Split(string(text), "\n")
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
		f := validate.FieldError{Field: t.alertField(a, lines), Message: clean(a.Message)}
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

// alertField names the field of the written object an alert most likely
// comes from, from the names HAProxy quotes and the configuration line it
// points at; "body" when the alert is not about the written object or the
// field cannot be told.
func (t *dryRunTree) alertField(a haproxy.Alert, lines []string) string {
	var line string
	if a.Line > 0 && a.Line <= len(lines) {
		line = strings.TrimSpace(lines[a.Line-1])
	}
	words := strings.Fields(line)
	first := func(w ...string) bool {
		for i, x := range w {
			if i >= len(words) || words[i] != x {
				return false
			}
		}
		return true
	}
	switch o := t.obj.(type) {
	case openapi.RoutingRule:
		// A condition's ACL is named <rule id>_c<index> (dataplane/haproxy).
		for i, c := range o.Conditions {
			acl := fmt.Sprintf("%s_c%d", o.Id, i)
			if !strings.Contains(a.Message, "'"+acl+"'") && !first("acl", acl) {
				continue
			}
			f := validate.Index("conditions", i) + ".values"
			for j, v := range c.Values {
				if v != "" && strings.Contains(a.Message, "'"+v+"'") {
					return validate.Index(f, j)
				}
			}
			return f
		}
		if strings.Contains(line, o.Id) {
			return "action"
		}
	case openapi.Member:
		if a.Server == o.Id || first("server", o.Id) {
			return "address" // the one member value HAProxy resolves or parses on its own
		}
	case openapi.Listener:
		if a.Section != "frontend "+o.Id {
			break
		}
		switch {
		case first("bind"):
			if strings.Contains(a.Message, "crt") || strings.Contains(a.Message, "certificate") || strings.Contains(a.Message, "ssl") {
				return "certificate_ids"
			}
			return "port"
		case first("acl", "allowed_src"):
			return "allowed_cidrs"
		case first("acl", "denied_src"):
			return "denied_cidrs"
		case first("compression"):
			return "compression"
		case first("stick-table"), first("tcp-request", "connection", "track-sc0"), first("http-request", "track-sc0"):
			return "rate_limit"
		}
	case openapi.Pool:
		if a.Section != "backend "+o.Id {
			break
		}
		switch {
		case first("balance"):
			return "algorithm"
		case first("cookie"), first("stick-table"), first("stick"):
			return "session_persistence"
		case first("option", "httpchk"), first("http-check"):
			return "health_monitor"
		}
	}
	return "body"
}
