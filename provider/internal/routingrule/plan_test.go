package routingrule_test

import (
	"context"
	"regexp"
	"testing"
	"time"

	"github.com/hashicorp/terraform-plugin-testing/helper/resource"

	"github.com/fulcrumlb/fulcrum/internal/teststack"
	"github.com/fulcrumlb/fulcrum/openapi"
	"github.com/fulcrumlb/fulcrum/provider/internal/acctest"
	"github.com/fulcrumlb/fulcrum/provider/internal/fulcrum"
)

// pcreOnly is a path regex Go's RE2 (the API's validation) accepts and
// HAProxy's PCRE2 (not in UTF mode) rejects: \x{100} is above 0xff.
const pcreOnly = `^/\x{100}`

// regexRule is a deny rule on listener with one path regex condition.
func regexRule(provider, listener, regex string) string {
	return config{Provider: provider, ListenerID: listener, Name: "regex", Priority: 5, Timeouts: "1m",
		Conditions: []condition{{Field: "path", Match: "regex", Values: []string{regex}}},
		Action:     action{Type: "deny"}}.String()
}

// rejectedAtPlan is the plan-time error of a rule whose first condition's
// first value HAProxy refuses, naming the attribute.
var rejectedAtPlan = regexp.MustCompile(`(?s)HAProxy refuses the planned routing rule.*conditions\[0\]\.values\[0\]:.*regex`)

// A value HAProxy refuses fails `terraform plan` on its attribute, both for
// a new rule and for a change, and nothing is stored.
func TestAccRoutingRuleRegexRejectedAtPlan(t *testing.T) {
	acctest.SkipUnlessAcc(t)
	s := acctest.Stack(t) // the API checks dry runs with haproxy -c
	c := acctest.Client(t, s, s.TenantToken)
	p := makeParents(t, s, c)
	provider := acctest.ProviderBlock(s, s.TenantToken)
	resource.ParallelTest(t, resource.TestCase{
		ProtoV6ProviderFactories: acctest.Factories(),
		CheckDestroy:             checkDestroy(c),
		Steps: []resource.TestStep{
			{Config: regexRule(provider, p.listenerID, pcreOnly), PlanOnly: true, ExpectError: rejectedAtPlan},
			{
				Config: regexRule(provider, p.listenerID, `^/ok$`),
				Check:  resource.TestCheckResourceAttr(addr, "provisioning_status", "active"),
			},
			{Config: regexRule(provider, p.listenerID, pcreOnly), PlanOnly: true, ExpectError: rejectedAtPlan},
			{
				// The rejected plans stored nothing.
				Config: regexRule(provider, p.listenerID, `^/ok$`),
				Check: resource.ComposeAggregateTestCheckFunc(
					resource.TestCheckResourceAttr(addr, "conditions.0.values.0", `^/ok$`),
					resource.TestCheckResourceAttr(addr, "provisioning_status", "active"),
				),
			},
		},
	})
}

// waitError waits until the rule reads provisioning status error.
func waitError(t *testing.T, c *fulcrum.Client, id string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		res, err := c.API.GetRoutingRuleWithResponse(context.Background(), id)
		if err == nil && res.JSON200 != nil && res.JSON200.ProvisioningStatus == openapi.ProvisioningStatusError {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("rule %s did not go to error: %v %v", id, err, res)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// A rule in provisioning status error plans an update, whether an apply put
// it there or a change made out of band. The API here has no HAProxy for dry
// runs (as an API host without one): only the agent refuses the regex.
func TestAccRoutingRuleInErrorPlansUpdate(t *testing.T) {
	acctest.SkipUnlessAcc(t)
	s := acctest.StackWith(t, teststack.Options{})
	c := acctest.Client(t, s, s.TenantToken)
	p := makeParents(t, s, c)
	provider := acctest.ProviderBlock(s, s.TenantToken)
	good, bad := regexRule(provider, p.listenerID, `^/ok$`), regexRule(provider, p.listenerID, pcreOnly)
	var id string
	resource.ParallelTest(t, resource.TestCase{
		ProtoV6ProviderFactories: acctest.Factories(),
		CheckDestroy:             checkDestroy(c),
		Steps: []resource.TestStep{
			{Config: good, Check: acctest.CaptureID(addr, &id)},
			// The agent refuses the change: the apply fails...
			{Config: bad, ExpectError: regexp.MustCompile(`(?s)Routing rule not active.*the object is in error`)},
			// ...and the next plan is not "No changes".
			{Config: bad, PlanOnly: true, ExpectNonEmptyPlan: true},
			{Config: good, Check: resource.TestCheckResourceAttr(addr, "provisioning_status", "active")},
			// The same values, set out of band: after the refresh the state
			// matches the configuration, yet the rule is not served.
			{
				PreConfig: func() {
					conds := []openapi.RuleCondition{{Field: openapi.RuleConditionFieldPath, Match: new(openapi.Regex), Values: []string{pcreOnly}}}
					res, err := c.API.UpdateRoutingRuleWithResponse(context.Background(), id, nil, openapi.RoutingRuleUpdate{Conditions: &conds})
					ok(t, "out-of-band update", res, err)
					waitError(t, c, id)
				},
				Config:             bad,
				PlanOnly:           true,
				ExpectNonEmptyPlan: true,
			},
			{Config: good, Check: resource.TestCheckResourceAttr(addr, "provisioning_status", "active")},
		},
	})
}
