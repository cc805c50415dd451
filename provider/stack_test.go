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
