package provider_test

import (
	"context"
	"fmt"
	"regexp"
	"testing"
	"time"

	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/plancheck"
	"github.com/hashicorp/terraform-plugin-testing/terraform"

	"github.com/fulcrumlb/fulcrum/internal/pgtest"
	"github.com/fulcrumlb/fulcrum/internal/teststack"
	"github.com/fulcrumlb/fulcrum/openapi"
	"github.com/fulcrumlb/fulcrum/provider/internal/acctest"
	"github.com/fulcrumlb/fulcrum/provider/internal/fulcrum"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func stackConfig(s *teststack.Stack, a, b *teststack.Backend, weightA int) string {
	return acctest.ProviderBlock(s, s.TenantToken) + fmt.Sprintf(`
resource "fulcrum_load_balancer" "web" {
  name           = "web"
  cascade_delete = true
}

resource "fulcrum_pool" "app" {
  load_balancer_id = fulcrum_load_balancer.web.id
  protocol         = "http"
  health_monitor = {
    type        = "http"
    path        = "/"
    interval_ms = 500
    timeout_ms  = 500
  }
}

resource "fulcrum_member" "a" {
  pool_id = fulcrum_pool.app.id
  address = "127.0.0.1"
  port    = %d
  weight  = %d
}

resource "fulcrum_member" "b" {
  pool_id = fulcrum_pool.app.id
  address = "127.0.0.1"
  port    = %d
}

resource "fulcrum_listener" "http" {
  load_balancer_id = fulcrum_load_balancer.web.id
  protocol         = "http"
  port             = 8000
  default_pool_id  = fulcrum_pool.app.id
}
`, a.Port, weightA, b.Port)
}

// trafficReaches checks that requests through the VIP reach every backend.
func trafficReaches(backends ...*teststack.Backend) resource.TestCheckFunc {
	return func(st *terraform.State) error {
		lb := st.RootModule().Resources["fulcrum_load_balancer.web"]
		if lb == nil {
			return fmt.Errorf("no fulcrum_load_balancer.web in state")
		}
		url := fmt.Sprintf("http://%s:8000/", lb.Primary.Attributes["vip_address"])
		seen := map[string]bool{}
		deadline := time.Now().Add(20 * time.Second)
		for time.Now().Before(deadline) && len(seen) < len(backends) {
			if name, err := teststack.Get(url); err == nil {
				seen[name] = true
			}
		}
		for _, b := range backends {
			if !seen[b.Name] {
				return fmt.Errorf("no request through %s reached backend %s (saw %v)", url, b.Name, seen)
			}
		}
		return nil
	}
}

// TestAccFullStack applies a whole load balancer, sends traffic through it,
// then changes one member's weight: an in-place update of that member alone.
func TestAccFullStack(t *testing.T) {
	s := acctest.Stack(t)
	a, b := teststack.StartBackend(t, "a"), teststack.StartBackend(t, "b")
	resource.ParallelTest(t, resource.TestCase{
		ProtoV6ProviderFactories: acctest.Factories(),
		Steps: []resource.TestStep{
			{
				Config: stackConfig(s, a, b, 1),
				Check: resource.ComposeAggregateTestCheckFunc(
					resource.TestCheckResourceAttr("fulcrum_load_balancer.web", "provisioning_status", "active"),
					resource.TestCheckResourceAttr("fulcrum_member.a", "provisioning_status", "active"),
					trafficReaches(a, b),
				),
			},
			{
				Config: stackConfig(s, a, b, 5),
				ConfigPlanChecks: resource.ConfigPlanChecks{
					PreApply: []plancheck.PlanCheck{
						plancheck.ExpectResourceAction("fulcrum_member.a", plancheck.ResourceActionUpdate),
						plancheck.ExpectResourceAction("fulcrum_member.b", plancheck.ResourceActionNoop),
						plancheck.ExpectResourceAction("fulcrum_pool.app", plancheck.ResourceActionNoop),
						plancheck.ExpectResourceAction("fulcrum_listener.http", plancheck.ResourceActionNoop),
						plancheck.ExpectResourceAction("fulcrum_load_balancer.web", plancheck.ResourceActionNoop),
					},
				},
				Check: resource.ComposeAggregateTestCheckFunc(
					resource.TestCheckResourceAttr("fulcrum_member.a", "weight", "5"),
					trafficReaches(a, b),
				),
			},
		},
	})
}

// TestAccDriftShowsInPlan changes a load balancer behind Terraform's back: the
// next plan is not empty.
func TestAccDriftShowsInPlan(t *testing.T) {
	s := acctest.Stack(t)
	cfg := acctest.ProviderBlock(s, s.TenantToken) + `
resource "fulcrum_load_balancer" "web" {
  name        = "drift"
  description = "managed by terraform"
}
`
	var lbID string
	resource.ParallelTest(t, resource.TestCase{
		ProtoV6ProviderFactories: acctest.Factories(),
		Steps: []resource.TestStep{
			{
				Config: cfg,
				Check: func(st *terraform.State) error {
					lbID = st.RootModule().Resources["fulcrum_load_balancer.web"].Primary.ID
					return nil
				},
			},
			{
				PreConfig: func() {
					c, err := fulcrum.NewClient(s.Endpoint, s.TenantToken, "test")
					if err != nil {
						t.Fatal(err)
					}
					desc := "changed out of band"
					res, err := c.API.UpdateLoadBalancerWithResponse(context.Background(), lbID, nil, openapi.UpdateLoadBalancerJSONRequestBody{Description: &desc})
					if err != nil || res.StatusCode() != 200 {
						t.Fatalf("out-of-band change: %v %v", err, res)
					}
				},
				Config:             cfg,
				PlanOnly:           true,
				ExpectNonEmptyPlan: true,
			},
		},
	})
}

// TestAccTwentyMembersInOneApply creates 20 members at terraform's default
// parallelism of 10: no 409, no error, all active.
func TestAccTwentyMembersInOneApply(t *testing.T) {
	s := acctest.Stack(t)
	backends := make([]*teststack.Backend, 20)
	ports := ""
	for i := range backends {
		backends[i] = teststack.StartBackend(t, fmt.Sprintf("b%d", i))
		ports += fmt.Sprintf("%d, ", backends[i].Port)
	}
	cfg := acctest.ProviderBlock(s, s.TenantToken) + fmt.Sprintf(`
locals {
  ports = [%s]
}

resource "fulcrum_load_balancer" "web" {
  name           = "many"
  cascade_delete = true
}

resource "fulcrum_pool" "app" {
  load_balancer_id = fulcrum_load_balancer.web.id
  protocol         = "http"
}

resource "fulcrum_member" "m" {
  count   = 20
  pool_id = fulcrum_pool.app.id
  address = "127.0.0.1"
  port    = local.ports[count.index]
}
`, ports)
	checks := []resource.TestCheckFunc{}
	for i := 0; i < 20; i++ {
		checks = append(checks, resource.TestCheckResourceAttr(fmt.Sprintf("fulcrum_member.m.%d", i), "provisioning_status", "active"))
	}
	resource.ParallelTest(t, resource.TestCase{
		ProtoV6ProviderFactories: acctest.Factories(),
		Steps:                    []resource.TestStep{{Config: cfg, Check: resource.ComposeAggregateTestCheckFunc(checks...)}},
	})
}

// TestAccInvalidValuesFailAtPlan: bad values are caught by `terraform plan`,
// naming the attribute, before anything reaches the API.
func TestAccInvalidValuesFailAtPlan(t *testing.T) {
	acctest.PreCheck(t)
	provider := `
provider "fulcrum" {
  endpoint = "http://127.0.0.1:1"
  token    = "unused"
}
`
	cases := map[string]struct{ hcl, want string }{
		"port 0": {`
resource "fulcrum_listener" "l" {
  load_balancer_id = "lb_x"
  protocol         = "http"
  port             = 0
}`, `port`},
		"bad cidr": {`
resource "fulcrum_listener" "l" {
  load_balancer_id = "lb_x"
  protocol         = "http"
  port             = 80
  allowed_cidrs    = ["10.0.0.0/33"]
}`, `allowed_cidrs`},
		"unknown algorithm": {`
resource "fulcrum_pool" "p" {
  load_balancer_id = "lb_x"
  protocol         = "http"
  algorithm        = "fastest"
}`, `algorithm`},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			resource.ParallelTest(t, resource.TestCase{
				ProtoV6ProviderFactories: acctest.Factories(),
				Steps: []resource.TestStep{{
					Config:      provider + c.hcl,
					PlanOnly:    true,
					ExpectError: regexp.MustCompile(c.want),
				}},
			})
		})
	}
}

// lbWithRule is a load balancer whose http listener has a deny rule on regex.
func lbWithRule(s *teststack.Stack, a *teststack.Backend, regex string) string {
	return acctest.ProviderBlock(s, s.TenantToken) + fmt.Sprintf(`
resource "fulcrum_load_balancer" "web" {
  name           = "reapply"
  cascade_delete = true
}

resource "fulcrum_pool" "app" {
  load_balancer_id = fulcrum_load_balancer.web.id
  protocol         = "http"
}

resource "fulcrum_member" "a" {
  pool_id = fulcrum_pool.app.id
  address = "127.0.0.1"
  port    = %d
}

resource "fulcrum_listener" "http" {
  load_balancer_id = fulcrum_load_balancer.web.id
  protocol         = "http"
  port             = 8000
  default_pool_id  = fulcrum_pool.app.id
}

resource "fulcrum_routing_rule" "deny" {
  listener_id = fulcrum_listener.http.id
  priority    = 1
  conditions  = [{ field = "path", match = "regex", values = [%q] }]
  action      = { type = "deny" }
}
`, a.Port, regex)
}

// TestAccLoadBalancerInErrorRecovers: a rule broken out of band puts it in
// error (and its load balancer degraded, or in error when HAProxy names no
// object); the next plan is not empty, and applying the fixed rule makes
// everything active again in one apply: a load balancer re-sent first (the
// rule waits for it) that is still in error then is a warning, not an error
// that would stop the rule's fix.
func TestAccLoadBalancerInErrorRecovers(t *testing.T) {
	s := acctest.StackWith(t, teststack.Options{}) // no HAProxy for dry runs: only the agent refuses the regex
	a := teststack.StartBackend(t, "a")
	c := acctest.Client(t, s, s.TenantToken)
	const good, bad = `^/deny$`, `^/\x{100}`
	var lbID, ruleID string
	lbStatus := func() openapi.ProvisioningStatus {
		res, err := c.API.GetLoadBalancerWithResponse(context.Background(), lbID)
		if err != nil || res.JSON200 == nil {
			t.Fatalf("GET load balancer: %v %v", err, res)
		}
		return res.JSON200.ProvisioningStatus
	}
	ruleStatus := func() openapi.ProvisioningStatus {
		res, err := c.API.GetRoutingRuleWithResponse(context.Background(), ruleID)
		if err != nil || res.JSON200 == nil {
			t.Fatalf("GET routing rule: %v %v", err, res)
		}
		return res.JSON200.ProvisioningStatus
	}
	resource.ParallelTest(t, resource.TestCase{
		ProtoV6ProviderFactories: acctest.Factories(),
		Steps: []resource.TestStep{
			{
				Config: lbWithRule(s, a, good),
				Check: resource.ComposeAggregateTestCheckFunc(
					acctest.CaptureID("fulcrum_load_balancer.web", &lbID),
					acctest.CaptureID("fulcrum_routing_rule.deny", &ruleID),
					trafficReaches(a),
				),
			},
			{
				PreConfig: func() {
					conds := []openapi.RuleCondition{{Field: openapi.RuleConditionFieldPath, Match: new(openapi.Regex), Values: []string{bad}}}
					res, err := c.API.UpdateRoutingRuleWithResponse(context.Background(), ruleID, nil, openapi.RoutingRuleUpdate{Conditions: &conds})
					if err != nil || res.StatusCode() != 200 {
						t.Fatalf("out-of-band update: %v %v", err, res)
					}
					// The agent names the rule: the rule reads error (its load
					// balancer degraded, or error when HAProxy names no object).
					deadline := time.Now().Add(60 * time.Second)
					for ruleStatus() != openapi.ProvisioningStatusError {
						if time.Now().After(deadline) {
							t.Fatal("the routing rule did not go to error")
						}
						time.Sleep(200 * time.Millisecond)
					}
				},
				// The state matches this configuration after the refresh.
				Config:             lbWithRule(s, a, bad),
				PlanOnly:           true,
				ExpectNonEmptyPlan: true,
			},
			{
				Config: lbWithRule(s, a, good),
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectResourceAction("fulcrum_routing_rule.deny", plancheck.ResourceActionUpdate),
					plancheck.ExpectResourceAction("fulcrum_member.a", plancheck.ResourceActionNoop),
				}},
				Check: resource.ComposeAggregateTestCheckFunc(
					resource.TestCheckResourceAttr("fulcrum_routing_rule.deny", "provisioning_status", "active"),
					func(*terraform.State) error {
						if st := lbStatus(); st != openapi.ProvisioningStatusActive {
							return fmt.Errorf("load balancer %s is %s after the fix, want active", lbID, st)
						}
						return nil
					},
					trafficReaches(a),
				),
			},
			{
				// Refreshed, everything is active: nothing to do.
				Config:   lbWithRule(s, a, good),
				PlanOnly: true,
			},
		},
	})
}

// TestAccPlanWithoutAPI: a dry run that cannot reach the API is a warning,
// not an error, and is not retried: the plan is made at once.
func TestAccPlanWithoutAPI(t *testing.T) {
	acctest.PreCheck(t)
	start := time.Now()
	resource.ParallelTest(t, resource.TestCase{
		ProtoV6ProviderFactories: acctest.Factories(),
		Steps: []resource.TestStep{{
			Config: acctest.UnreachableProviderBlock + `
resource "fulcrum_member" "m" {
  pool_id = "pool_x"
  address = "127.0.0.1"
  port    = 8080
}`,
			PlanOnly:           true,
			ExpectNonEmptyPlan: true,
		}},
	})
	t.Logf("planned in %v", time.Since(start))
}
