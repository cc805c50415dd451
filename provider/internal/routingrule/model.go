package routingrule

import (
	"context"

	"github.com/hashicorp/terraform-plugin-framework-timeouts/resource/timeouts"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/fulcrumlb/fulcrum/openapi"
	"github.com/fulcrumlb/fulcrum/provider/internal/fulcrum"
)

// model is the resource's state and plan.
type model struct {
	ID             types.String     `tfsdk:"id"`
	ListenerID     types.String     `tfsdk:"listener_id"`
	LoadBalancerID types.String     `tfsdk:"load_balancer_id"`
	Name           types.String     `tfsdk:"name"`
	Description    types.String     `tfsdk:"description"`
	Labels         types.Map        `tfsdk:"labels"`
	Priority       types.Int64      `tfsdk:"priority"`
	Conditions     []conditionModel `tfsdk:"conditions"`
	Action         *actionModel     `tfsdk:"action"`
	Status         types.String     `tfsdk:"provisioning_status"`
	Timeouts       timeouts.Value   `tfsdk:"timeouts"`
}

type conditionModel struct {
	Field  types.String   `tfsdk:"field"`
	Match  types.String   `tfsdk:"match"`
	Key    types.String   `tfsdk:"key"`
	Values []types.String `tfsdk:"values"`
	Invert types.Bool     `tfsdk:"invert"`
}

type actionModel struct {
	Type          types.String        `tfsdk:"type"`
	Forward       *forwardModel       `tfsdk:"forward"`
	Redirect      *redirectModel      `tfsdk:"redirect"`
	FixedResponse *fixedResponseModel `tfsdk:"fixed_response"`
}

type forwardModel struct {
	Pools []weightedPoolModel `tfsdk:"pools"`
}

type weightedPoolModel struct {
	PoolID types.String `tfsdk:"pool_id"`
	Weight types.Int64  `tfsdk:"weight"`
}

type redirectModel struct {
	URL    types.String `tfsdk:"url"`
	Prefix types.String `tfsdk:"prefix"`
	Scheme types.String `tfsdk:"scheme"`
	Host   types.String `tfsdk:"host"`
	Port   types.Int64  `tfsdk:"port"`
	Code   types.Int64  `tfsdk:"code"`
}

type fixedResponseModel struct {
	StatusCode  types.Int64  `tfsdk:"status_code"`
	ContentType types.String `tfsdk:"content_type"`
	Body        types.String `tfsdk:"body"`
}

// The API's defaults, which it always spells out in its answers.
const (
	defaultMatch       = openapi.RuleConditionMatchDefault
	defaultWeight      = openapi.WeightedPoolWeightDefault
	defaultRedirect    = openapi.RuleActionRedirectCodeDefault
	defaultContentType = openapi.RuleActionFixedResponseContentTypeDefault
)

// wire types of the generated client's anonymous structs.
type (
	apiForward = struct {
		Pools []openapi.WeightedPool `json:"pools"`
	}
	apiRedirect = struct {
		Code   *openapi.RuleActionRedirectCode   `json:"code,omitempty"`
		Host   *string                           `json:"host,omitempty"`
		Port   *int                              `json:"port,omitempty"`
		Prefix *string                           `json:"prefix,omitempty"`
		Scheme *openapi.RuleActionRedirectScheme `json:"scheme,omitempty"`
		Url    *string                           `json:"url,omitempty"`
	}
	apiFixedResponse = struct {
		Body        *string `json:"body,omitempty"`
		ContentType *string `json:"content_type,omitempty"`
		StatusCode  int     `json:"status_code"`
	}
)

// fromAPI refreshes everything but the timeouts.
func (m *model) fromAPI(_ context.Context, r *openapi.RoutingRule) diag.Diagnostics {
	m.ID = types.StringValue(r.Id)
	m.ListenerID = types.StringValue(r.ListenerId)
	m.LoadBalancerID = types.StringValue(r.LoadBalancerId)
	m.Name = types.StringValue(r.Name)
	m.Description = types.StringValue(r.Description)
	m.Labels = fulcrum.LabelsValue(r.Labels)
	m.Priority = types.Int64Value(int64(r.Priority))
	prior := m.Conditions
	m.Conditions = make([]conditionModel, 0, len(r.Conditions))
	for i, c := range r.Conditions {
		cm := conditionModel{
			Field:  types.StringValue(string(c.Field)),
			Match:  types.StringValue(defaultMatch),
			Key:    optString(c.Key),
			Values: make([]types.String, 0, len(c.Values)),
			Invert: types.BoolValue(c.Invert != nil && *c.Invert),
		}
		if c.Match != nil {
			cm.Match = types.StringValue(string(*c.Match))
		}
		for _, v := range c.Values {
			cm.Values = append(cm.Values, types.StringValue(v))
		}
		if c.Field == openapi.RuleConditionFieldSourceIp && i < len(prior) && prior[i].Field.ValueString() == string(c.Field) {
			cm.Values = keepSourceIPSpelling(prior[i].Values, c.Values)
		}
		m.Conditions = append(m.Conditions, cm)
	}
	m.Action = actionFromAPI(&r.Action)
	m.Status = types.StringValue(string(r.ProvisioningStatus))
	return nil
}

func actionFromAPI(a *openapi.RuleAction) *actionModel {
	out := &actionModel{Type: types.StringValue(string(a.Type))}
	if f := a.Forward; f != nil {
		out.Forward = &forwardModel{Pools: make([]weightedPoolModel, 0, len(f.Pools))}
		for _, p := range f.Pools {
			w := int64(defaultWeight)
			if p.Weight != nil {
				w = int64(*p.Weight)
			}
			out.Forward.Pools = append(out.Forward.Pools, weightedPoolModel{PoolID: types.StringValue(p.PoolId), Weight: types.Int64Value(w)})
		}
	}
	if r := a.Redirect; r != nil {
		out.Redirect = &redirectModel{URL: optString(r.Url), Prefix: optString(r.Prefix), Host: optString(r.Host),
			Scheme: types.StringNull(), Port: types.Int64Null(), Code: types.Int64Value(defaultRedirect)}
		if r.Scheme != nil && *r.Scheme != "" {
			out.Redirect.Scheme = types.StringValue(string(*r.Scheme))
		}
		if r.Port != nil && *r.Port != 0 {
			out.Redirect.Port = types.Int64Value(int64(*r.Port))
		}
		if r.Code != nil && *r.Code != 0 {
			out.Redirect.Code = types.Int64Value(int64(*r.Code))
		}
	}
	if fr := a.FixedResponse; fr != nil {
		out.FixedResponse = &fixedResponseModel{StatusCode: types.Int64Value(int64(fr.StatusCode)),
			ContentType: types.StringValue(defaultContentType), Body: types.StringValue("")}
		if fr.ContentType != nil && *fr.ContentType != "" {
			out.FixedResponse.ContentType = types.StringValue(*fr.ContentType)
		}
		if fr.Body != nil {
			out.FixedResponse.Body = types.StringValue(*fr.Body)
		}
	}
	return out
}

// optString maps the API's omitted (or empty) strings to null.
func optString(p *string) types.String {
	if p == nil || *p == "" {
		return types.StringNull()
	}
	return types.StringValue(*p)
}

// toCreate is the POST body for the planned rule.
func (m *model) toCreate(ctx context.Context) (openapi.RoutingRuleCreate, diag.Diagnostics) {
	var diags diag.Diagnostics
	conditions := m.conditionsToAPI()
	return openapi.RoutingRuleCreate{
		ListenerId:  m.ListenerID.ValueString(),
		Name:        m.Name.ValueStringPointer(),
		Description: m.Description.ValueStringPointer(),
		Labels:      fulcrum.LabelsToAPI(ctx, m.Labels, &diags),
		Priority:    int(m.Priority.ValueInt64()),
		Conditions:  &conditions,
		Action:      m.Action.toAPI(),
	}, diags
}

// toUpdate is the PATCH body: every field, so the rule ends up exactly as
// planned whatever changed behind Terraform's back.
func (m *model) toUpdate(ctx context.Context) (openapi.RoutingRuleUpdate, diag.Diagnostics) {
	var diags diag.Diagnostics
	conditions := m.conditionsToAPI()
	action := m.Action.toAPI()
	priority := int(m.Priority.ValueInt64())
	return openapi.RoutingRuleUpdate{
		Name:        m.Name.ValueStringPointer(),
		Description: m.Description.ValueStringPointer(),
		Labels:      fulcrum.LabelsToAPI(ctx, m.Labels, &diags),
		Priority:    &priority,
		Conditions:  &conditions,
		Action:      &action,
	}, diags
}

func (m *model) conditionsToAPI() []openapi.RuleCondition {
	out := make([]openapi.RuleCondition, 0, len(m.Conditions))
	for _, c := range m.Conditions {
		rc := openapi.RuleCondition{Field: openapi.RuleConditionField(c.Field.ValueString()), Values: make([]string, 0, len(c.Values)),
			Key: c.Key.ValueStringPointer(), Invert: c.Invert.ValueBoolPointer()}
		if v := c.Match.ValueString(); v != "" {
			match := openapi.RuleConditionMatch(v)
			rc.Match = &match
		}
		for _, v := range c.Values {
			rc.Values = append(rc.Values, v.ValueString())
		}
		out = append(out, rc)
	}
	return out
}

func (a *actionModel) toAPI() openapi.RuleAction {
	if a == nil {
		return openapi.RuleAction{}
	}
	out := openapi.RuleAction{Type: openapi.RuleActionType(a.Type.ValueString())}
	if f := a.Forward; f != nil {
		fw := apiForward{Pools: make([]openapi.WeightedPool, 0, len(f.Pools))}
		for _, p := range f.Pools {
			fw.Pools = append(fw.Pools, openapi.WeightedPool{PoolId: p.PoolID.ValueString(), Weight: fulcrum.IntPtr(p.Weight)})
		}
		out.Forward = &fw
	}
	if r := a.Redirect; r != nil {
		rd := apiRedirect{Url: r.URL.ValueStringPointer(), Prefix: r.Prefix.ValueStringPointer(), Host: r.Host.ValueStringPointer(), Port: fulcrum.IntPtr(r.Port)}
		if !r.Scheme.IsNull() && !r.Scheme.IsUnknown() {
			s := openapi.RuleActionRedirectScheme(r.Scheme.ValueString())
			rd.Scheme = &s
		}
		if !r.Code.IsNull() && !r.Code.IsUnknown() {
			c := openapi.RuleActionRedirectCode(r.Code.ValueInt64())
			rd.Code = &c
		}
		out.Redirect = &rd
	}
	if fr := a.FixedResponse; fr != nil {
		out.FixedResponse = &apiFixedResponse{StatusCode: int(fr.StatusCode.ValueInt64()),
			ContentType: fr.ContentType.ValueStringPointer(), Body: fr.Body.ValueStringPointer()}
	}
	return out
}
