package api

import (
	"context"
	"fmt"
	"strings"

	"github.com/fulcrumlb/fulcrum/api/problem"
	"github.com/fulcrumlb/fulcrum/api/store"
	"github.com/fulcrumlb/fulcrum/api/validate"
	"github.com/fulcrumlb/fulcrum/openapi"
)

func ruleToAPI(r *store.RoutingRule) openapi.RoutingRule {
	return openapi.RoutingRule{Id: r.ID, TenantId: r.TenantID, LoadBalancerId: r.LoadBalancerID, ListenerId: r.ListenerID, Name: r.Name,
		Description: r.Description, Labels: labelsOrEmpty(r.Labels), Priority: r.Priority,
		Conditions: nonNil(convertJSON[[]openapi.RuleCondition](r.Spec.Conditions)), Action: convertJSON[openapi.RuleAction](r.Spec.Action),
		ProvisioningStatus: openapi.ProvisioningStatus(r.ProvisioningStatus), OperatingStatus: openapi.OperatingStatus(r.OperatingStatus),
		StatusMessage: msgPtr(r.StatusMessage), CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt, Version: r.Version}
}

// actionFromAPI converts an action, applying defaults where 0 is a real value.
func actionFromAPI(a openapi.RuleAction) store.RuleAction {
	out := convertJSON[store.RuleAction](a)
	if a.Forward != nil {
		for i, p := range a.Forward.Pools {
			out.Forward.Pools[i].Weight = openapi.WeightedPoolWeightDefault
			if p.Weight != nil {
				out.Forward.Pools[i].Weight = *p.Weight
			}
		}
	}
	if out.Redirect != nil && out.Redirect.Code == 0 {
		out.Redirect.Code = openapi.RuleActionRedirectCodeDefault
	}
	if out.FixedResponse != nil && out.FixedResponse.ContentType == "" {
		out.FixedResponse.ContentType = openapi.RuleActionFixedResponseContentTypeDefault
	}
	return out
}

func conditionsFromAPI(cs []openapi.RuleCondition) []store.RuleCondition {
	out := convertJSON[[]store.RuleCondition](cs)
	for i := range out {
		if out[i].Match == "" {
			out[i].Match = "exact"
		}
	}
	return nonNil(out)
}

// validateConditions checks the conditions and writes source_ip values back
// in their canonical form.
func validateConditions(e *validate.Errors, cs []store.RuleCondition) {
	if len(cs) > openapi.RoutingRuleConditionsMaxItems {
		e.Add("conditions", "must have at most %d entries", openapi.RoutingRuleConditionsMaxItems)
		return
	}
	for i, c := range cs {
		f := validate.Index("conditions", i)
		validate.Enum(e, f+".field", c.Field, "host", "path", "header", "method", "query", "cookie", "source_ip")
		validate.Enum(e, f+".match", c.Match, "exact", "prefix", "suffix", "contains", "regex")
		switch c.Field {
		case "header":
			if validate.HeaderName(e, f+".key", c.Key) {
				break
			}
		case "query", "cookie":
			if c.Key == "" {
				e.Add(f+".key", "is required for %s conditions", c.Field)
			} else {
				validate.CookieName(e, f+".key", c.Key)
			}
		default:
			if c.Key != "" {
				e.Add(f+".key", "is only for header, query and cookie conditions")
			}
		}
		if (c.Field == "source_ip" || c.Field == "method") && c.Match != "exact" {
			e.Add(f+".match", "must be exact for %s conditions", c.Field)
		}
		if len(c.Values) < openapi.RuleConditionValuesMinItems || len(c.Values) > openapi.RuleConditionValuesMaxItems {
			e.Add(f+".values", "must have %d to %d entries", openapi.RuleConditionValuesMinItems, openapi.RuleConditionValuesMaxItems)
		}
		for j, v := range c.Values {
			vf := validate.Index(f+".values", j)
			switch {
			case c.Match == "regex":
				validate.Regex(e, vf, v)
			case c.Field == "source_ip":
				// Stored the way listeners store CIDRs: host bits cleared,
				// a bare address as a /32 or /128 ("10.1.2.3/8" → "10.0.0.0/8").
				if p, ok := validate.CIDR(e, vf, v); ok {
					cs[i].Values[j] = p.String()
				}
			case c.Field == "method":
				validate.HTTPMethod(e, vf, v)
			case c.Field == "host" && c.Match == "exact":
				validate.Hostname(e, vf, v, true)
			case c.Field == "path" && (c.Match == "exact" || c.Match == "prefix"):
				validate.URLPath(e, vf, v)
			default:
				if v == "" {
					e.Add(vf, "must not be empty")
				}
				validate.Text(e, vf, v, 1024)
			}
		}
	}
}

func validateAction(e *validate.Errors, a store.RuleAction) {
	validate.Enum(e, "action.type", a.Type, "forward", "redirect", "fixed_response", "deny")
	want := map[string]bool{"forward": a.Forward != nil, "redirect": a.Redirect != nil, "fixed_response": a.FixedResponse != nil}
	for name, present := range want {
		if present && name != a.Type {
			e.Add("action."+name, "is only for %s actions", name)
		}
		if !present && name == a.Type {
			e.Add("action."+name, "is required for %s actions", name)
		}
	}
	if f := a.Forward; f != nil && a.Type == "forward" {
		if len(f.Pools) < openapi.RuleActionForwardPoolsMinItems || len(f.Pools) > openapi.RuleActionForwardPoolsMaxItems {
			e.Add("action.forward.pools", "must have %d to %d entries", openapi.RuleActionForwardPoolsMinItems, openapi.RuleActionForwardPoolsMaxItems)
		}
		seen := map[string]bool{}
		total := 0
		for i, p := range f.Pools {
			pf := validate.Index("action.forward.pools", i)
			validate.IntRange(e, pf+".weight", p.Weight, openapi.WeightedPoolWeightMin, openapi.WeightedPoolWeightMax)
			total += p.Weight
			if seen[p.PoolID] {
				e.Add(pf+".pool_id", "is listed twice")
			}
			seen[p.PoolID] = true
		}
		if len(f.Pools) > 0 && total == 0 {
			e.Add("action.forward.pools", "must have a weight above 0 somewhere")
		}
	}
	if r := a.Redirect; r != nil && a.Type == "redirect" {
		validate.Enum(e, "action.redirect.code", fmt.Sprint(r.Code), "301", "302", "303", "307", "308")
		parts := 0
		if r.URL != "" {
			parts++
			validate.AbsoluteURL(e, "action.redirect.url", r.URL)
		}
		if r.Prefix != "" {
			parts++
			validate.AbsoluteURL(e, "action.redirect.prefix", r.Prefix)
		}
		if r.Scheme != "" || r.Host != "" || r.Port != 0 {
			parts++
			if r.Scheme != "" {
				validate.Enum(e, "action.redirect.scheme", r.Scheme, "http", "https")
			}
			if r.Host != "" {
				validate.Hostname(e, "action.redirect.host", r.Host, false)
			}
			if r.Port != 0 {
				validate.Port(e, "action.redirect.port", r.Port)
			}
		}
		if parts != 1 {
			e.Add("action.redirect", "must set exactly one of url, prefix, or scheme/host/port")
		}
	}
	if fr := a.FixedResponse; fr != nil && a.Type == "fixed_response" {
		validate.IntRange(e, "action.fixed_response.status_code", fr.StatusCode, openapi.RuleActionFixedResponseStatusCodeMin, openapi.RuleActionFixedResponseStatusCodeMax)
		validate.ContentType(e, "action.fixed_response.content_type", fr.ContentType)
		if len(fr.Body) > openapi.RuleActionFixedResponseBodyMaxLength {
			e.Add("action.fixed_response.body", "must be at most %d bytes", openapi.RuleActionFixedResponseBodyMaxLength)
		}
		if strings.ContainsAny(fr.Body, "\x00") {
			e.Add("action.fixed_response.body", "contains a NUL byte")
		}
	}
}

// validateRule checks the whole rule and that its pools are live http pools of
// the listener's load balancer.
func validateRule(ctx context.Context, tx *store.Tx, r *store.RoutingRule) error {
	var e validate.Errors
	validateMeta(&e, &r.Meta)
	validate.IntRange(&e, "priority", r.Priority, openapi.RoutingRulePriorityMin, openapi.RoutingRulePriorityMax)
	validateConditions(&e, r.Spec.Conditions)
	validateAction(&e, r.Spec.Action)
	if r.Spec.Action.Forward != nil && r.Spec.Action.Type == "forward" {
		for i, id := range r.PoolIDs() {
			f := validate.Index("action.forward.pools", i) + ".pool_id"
			p, err := store.GetLive[store.Pool](ctx, tx, store.KindPool, r.TenantID, id, false)
			switch {
			case err != nil && !unusableRef(err):
				return err
			case err != nil:
				e.Add(f, "does not exist")
			case p.LoadBalancerID != r.LoadBalancerID:
				e.Add(f, "belongs to another load balancer")
			case p.Protocol != "http":
				e.Add(f, "is a %s pool; rules forward to http pools", p.Protocol)
			}
		}
	}
	return e.Err()
}

func ruleColumns(r *store.RoutingRule, rev int64) []store.Column {
	return append(metaColumns(&r.Meta, rev), store.Column{Name: "priority", Value: r.Priority}, store.Column{Name: "spec", Value: r.Spec})
}

func saveRulePools(ctx context.Context, tx *store.Tx, r *store.RoutingRule) error {
	var pools []string
	if r.Spec.Action.Type == "forward" {
		pools = r.PoolIDs()
	}
	return store.RoutingRuleSetPools(ctx, tx, r.TenantID, r.ID, pools)
}

func (h *handlers) ListRoutingRules(ctx context.Context, r openapi.ListRoutingRulesRequestObject) (openapi.ListRoutingRulesResponseObject, error) {
	tenant, err := tenantOf(ctx)
	if err != nil {
		return nil, err
	}
	lq := listQuery(r.Params.Limit, r.Params.PageToken, r.Params.Name, r.Params.Label,
		store.Column{Name: "listener_id", Value: r.Params.ListenerId}, store.Column{Name: "load_balancer_id", Value: r.Params.LoadBalancerId})
	items, next, err := list[store.RoutingRule](ctx, h, store.KindRoutingRule, tenant, lq)
	if err != nil {
		return nil, err
	}
	return openapi.ListRoutingRules200JSONResponse{Body: openapi.RoutingRuleList{Items: mapSlice(items, ruleToAPI), NextPageToken: next}}, nil
}

func (h *handlers) CreateRoutingRule(ctx context.Context, r openapi.CreateRoutingRuleRequestObject) (openapi.CreateRoutingRuleResponseObject, error) {
	tenant, err := tenantOf(ctx)
	if err != nil {
		return nil, err
	}
	b := r.Body
	rule := &store.RoutingRule{Meta: store.Meta{TenantID: tenant, Name: deref(b.Name), Description: deref(b.Description), Labels: deref(b.Labels)},
		ListenerID: b.ListenerId, Priority: b.Priority,
		Spec: store.RoutingRuleSpec{Conditions: conditionsFromAPI(deref(b.Conditions)), Action: actionFromAPI(b.Action)}}
	out, _, err := createIn(ctx, h, store.ScopeOf(store.KindListener, tenant, b.ListenerId), "POST /v1/routing-rules", r.Params.IdempotencyKey, r.Params.DryRun, b, func(tx *store.Tx) (openapi.RoutingRule, error) {
		l, err := store.GetLive[store.Listener](ctx, tx, store.KindListener, tenant, b.ListenerId, true)
		if err != nil {
			return openapi.RoutingRule{}, parentError(err, "listener_id")
		}
		if l.Protocol == "tcp" {
			return openapi.RoutingRule{}, problem.InvalidField("listener_id", "is a tcp listener; routing rules need http or https")
		}
		rule.LoadBalancerID = l.LoadBalancerID
		if err := validateRule(ctx, tx, rule); err != nil {
			return openapi.RoutingRule{}, err
		}
		if err := store.CheckQuota(ctx, tx, store.KindRoutingRule, tenant); err != nil {
			return openapi.RoutingRule{}, err
		}
		rev, err := tx.Revision(ctx)
		if err != nil {
			return openapi.RoutingRule{}, err
		}
		cols := append(newColumns(store.KindRoutingRule, tenant), ruleColumns(rule, rev)...)
		cols = append(cols, store.Column{Name: "listener_id", Value: l.ID}, store.Column{Name: "load_balancer_id", Value: l.LoadBalancerID})
		row, err := store.Insert[store.RoutingRule](ctx, tx, store.KindRoutingRule, cols)
		if err != nil {
			return openapi.RoutingRule{}, err
		}
		if err := saveRulePools(ctx, tx, row); err != nil {
			return openapi.RoutingRule{}, err
		}
		return ruleToAPI(row), nil
	})
	if err != nil {
		return nil, err
	}
	if isTrue(r.Params.DryRun) {
		return openapi.CreateRoutingRule200JSONResponse{Body: out}, nil
	}
	return openapi.CreateRoutingRule201JSONResponse{Body: out, Headers: openapi.CreateRoutingRule201ResponseHeaders{ETag: etag(out.Version)}}, nil
}

func (h *handlers) GetRoutingRule(ctx context.Context, r openapi.GetRoutingRuleRequestObject) (openapi.GetRoutingRuleResponseObject, error) {
	tenant, err := tenantOf(ctx)
	if err != nil {
		return nil, err
	}
	rule, err := get[store.RoutingRule](ctx, h, store.KindRoutingRule, tenant, r.Id)
	if err != nil {
		return nil, err
	}
	return openapi.GetRoutingRule200JSONResponse{Body: ruleToAPI(&rule), Headers: openapi.GetRoutingRule200ResponseHeaders{ETag: etag(rule.Version)}}, nil
}

func (h *handlers) UpdateRoutingRule(ctx context.Context, r openapi.UpdateRoutingRuleRequestObject) (openapi.UpdateRoutingRuleResponseObject, error) {
	tenant, err := tenantOf(ctx)
	if err != nil {
		return nil, err
	}
	b := r.Body
	out, err := update(ctx, h, store.KindRoutingRule, tenant, r.Id, r.Params.IfMatch, r.Params.DryRun, func(tx *store.Tx, rule *store.RoutingRule) (openapi.RoutingRule, error) {
		if b.Name != nil {
			rule.Name = *b.Name
		}
		if b.Description != nil {
			rule.Description = *b.Description
		}
		if b.Labels != nil {
			rule.Labels = *b.Labels
		}
		if b.Priority != nil {
			rule.Priority = *b.Priority
		}
		if b.Conditions != nil {
			rule.Spec.Conditions = conditionsFromAPI(*b.Conditions)
		}
		if b.Action != nil {
			rule.Spec.Action = actionFromAPI(*b.Action)
		}
		if err := validateRule(ctx, tx, rule); err != nil {
			return openapi.RoutingRule{}, err
		}
		rev, err := tx.Revision(ctx)
		if err != nil {
			return openapi.RoutingRule{}, err
		}
		row, err := store.Update[store.RoutingRule](ctx, tx, store.KindRoutingRule, tenant, rule.ID, append(ruleColumns(rule, rev), pendingUpdate(&rule.Status)))
		if err != nil {
			return openapi.RoutingRule{}, err
		}
		if err := saveRulePools(ctx, tx, row); err != nil {
			return openapi.RoutingRule{}, err
		}
		return ruleToAPI(row), nil
	})
	if err != nil {
		return nil, err
	}
	return openapi.UpdateRoutingRule200JSONResponse{Body: out, Headers: openapi.UpdateRoutingRule200ResponseHeaders{ETag: etag(out.Version)}}, nil
}

func (h *handlers) DeleteRoutingRule(ctx context.Context, r openapi.DeleteRoutingRuleRequestObject) (openapi.DeleteRoutingRuleResponseObject, error) {
	tenant, err := tenantOf(ctx)
	if err != nil {
		return nil, err
	}
	if err := remove[store.RoutingRule](ctx, h, store.KindRoutingRule, tenant, r.Id, r.Params.IfMatch, false, nil); err != nil {
		return nil, err
	}
	return openapi.DeleteRoutingRule202Response{}, nil
}
