package fulcrum

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/fulcrumlb/fulcrum/openapi"
)

// PlanDescription is the part of a dataplane resource's description saying
// what its plans check and when they re-apply it.
const PlanDescription = " Every plan that creates or changes the object first sends it to the API as a dry run " +
	"(`?dry_run=true`: the API's validation and, where the API has HAProxy, `haproxy -c` of the load balancer with the change), " +
	"so a value HAProxy refuses fails the plan on its attribute rather than the apply; dry runs are skipped while a value is " +
	"unknown (a parent created in the same apply), and a dry run that cannot be made is a warning. " +
	"An object the dataplane could not apply reads as `provisioning_status = \"error\"`: the next plan shows an in-place " +
	"update of it (`provisioning_status` from `error` to known after apply), which sends the object again and waits until every node serves it " +
	"(a load balancer, listener or pool still refused then, as another object of the load balancer is at fault, is a warning, so that the fix of that object in the same apply proceeds)."

// ReapplyInError plans an in-place update of an object that is in
// provisioning status error: its provisioning_status is planned unknown
// (shown in the plan as error → known after apply), and so are the
// attributes at unknown, which the dataplane reports. Without this an object
// whose values Terraform already holds would plan "No changes" while it is
// not served. Update then sends the object again even if nothing else
// changed, and waits for it.
func ReapplyInError(ctx context.Context, req resource.ModifyPlanRequest, resp *resource.ModifyPlanResponse, unknown ...path.Path) {
	if req.State.Raw.IsNull() || req.Plan.Raw.IsNull() {
		return
	}
	var status types.String
	if d := req.State.GetAttribute(ctx, path.Root("provisioning_status"), &status); d.HasError() || !InError(status) {
		return
	}
	for _, p := range append([]path.Path{path.Root("provisioning_status")}, unknown...) {
		resp.Diagnostics.Append(resp.Plan.SetAttribute(ctx, p, types.StringUnknown())...)
	}
}

// InError reports whether a prior state's provisioning_status is error.
func InError(s types.String) bool { return s.ValueString() == string(openapi.ProvisioningStatusError) }

// DryRunKind is the dry run a plan calls for.
type DryRunKind int

const (
	NoDryRun DryRunKind = iota
	DryRunCreate
	DryRunUpdate
)

// PlannedDryRun tells which dry run, if any, the plan in resp calls for: a
// create when there is no prior state, an update when the plan differs from
// the prior state. None when the provider is not configured, the object is
// destroyed or unchanged, a configured value is not known yet (the body would
// not be what apply sends), or one of the attributes at replaceOn changes:
// Terraform then plans the replacement's create again with no prior state,
// and that plan makes the dry run.
func PlannedDryRun(ctx context.Context, c *Client, req resource.ModifyPlanRequest, resp *resource.ModifyPlanResponse, replaceOn ...path.Path) DryRunKind {
	if c == nil || req.Plan.Raw.IsNull() || resp.Diagnostics.HasError() || !req.Config.Raw.IsFullyKnown() {
		return NoDryRun
	}
	if req.State.Raw.IsNull() {
		return DryRunCreate
	}
	if resp.Plan.Raw.Equal(req.State.Raw) {
		return NoDryRun
	}
	for _, p := range replaceOn {
		var planned, prior types.String
		resp.Diagnostics.Append(resp.Plan.GetAttribute(ctx, p, &planned)...)
		resp.Diagnostics.Append(req.State.GetAttribute(ctx, p, &prior)...)
		if resp.Diagnostics.HasError() || !planned.Equal(prior) {
			return NoDryRun
		}
	}
	return DryRunUpdate
}

// DryRun is the dry_run parameter of a create or update.
func DryRun() *openapi.DryRun {
	v := openapi.DryRun(true)
	return &v
}

// AddDryRunError reports a dry run that could not be sent: a warning, so an
// unreachable API does not block plans (apply will report it).
func AddDryRunError(diags *diag.Diagnostics, kind string, err error) {
	diags.AddWarning(fmt.Sprintf("Could not check the planned %s with the Fulcrum API", kind),
		fmt.Sprintf("The dry run failed, so the plan is not checked by the API: %v", err))
}

// AddDryRunProblem reports the answer to a dry run of kind ("routing rule").
// What the API refuses on the object's own attributes (400, 422) is an error
// on each attribute, as apply would fail with it. What may change before the
// apply or is not about this object is a warning: a 409 (a name, port or
// quota another object of this plan may free), HAProxy refusing the load
// balancer for a reason it does not tie to this object's fields (another
// object of the load balancer is broken), and answers that tell nothing about
// the values (401, 403, 404, 5xx).
func AddDryRunProblem(diags *diag.Diagnostics, kind string, status int, body []byte, rename map[string]string) {
	if status >= 200 && status < 300 {
		return
	}
	var p openapi.Problem
	_ = json.Unmarshal(body, &p)
	detail := p.Title
	if p.Detail != nil && *p.Detail != "" {
		detail += ": " + *p.Detail
	}
	if detail == "" {
		detail = fmt.Sprintf("The Fulcrum API answered %d: %s", status, strings.TrimSpace(string(body)))
	}
	haproxyRejected := strings.HasSuffix(p.Type, "/haproxy-rejected") || p.Type == "haproxy-rejected"
	summary := fmt.Sprintf("The Fulcrum API refuses the planned %s", kind)
	if haproxyRejected {
		summary = fmt.Sprintf("HAProxy refuses the planned %s", kind)
	}
	warn := fmt.Sprintf("The planned %s may fail to apply", kind)
	if status != http.StatusBadRequest && status != http.StatusUnprocessableEntity {
		if status == http.StatusConflict {
			diags.AddWarning(warn, fmt.Sprintf("A dry run of the %s conflicts with what exists now (it may not once the rest of the plan is applied): %s", kind, detail))
		} else {
			diags.AddWarning(fmt.Sprintf("Could not check the planned %s with the Fulcrum API", kind),
				fmt.Sprintf("The dry run answered %d, so the plan is not checked by the API: %s", status, detail))
		}
		return
	}
	if p.Errors == nil || len(*p.Errors) == 0 {
		diags.AddError(summary, detail)
		return
	}
	for _, fe := range *p.Errors {
		if !isAttributeField(fe.Field) {
			if haproxyRejected {
				diags.AddWarning(warn, fmt.Sprintf("HAProxy refuses the load balancer's configuration with this %s, "+
					"for a reason not tied to one of its attributes (another object of the load balancer may be broken): %s (%s: %s)", kind, detail, fe.Field, fe.Message))
			} else {
				diags.AddError(summary, fmt.Sprintf("%s (%s: %s)", detail, fe.Field, fe.Message))
			}
			continue
		}
		diags.AddAttributeError(FieldPath(fe.Field, rename), summary, fmt.Sprintf("%s: %s.\n\n%s", fe.Field, strings.TrimSuffix(fe.Message, "."), detail))
	}
}

// isAttributeField reports whether an API error field names one of the
// object's attributes, not a header, parameter or the body as a whole.
func isAttributeField(field string) bool {
	return !(strings.HasPrefix(field, "If-Match") || strings.HasPrefix(field, "Idempotency-Key") ||
		field == "body" || field == "id" || field == "cascade" || field == "dry_run")
}
