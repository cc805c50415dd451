package loadbalancer_test

import (
	"context"
	"fmt"
	"net/netip"
	"regexp"
	"strings"
	"testing"

	tfacctest "github.com/hashicorp/terraform-plugin-testing/helper/acctest"
	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/plancheck"

	"github.com/fulcrumlb/fulcrum/openapi"
	"github.com/fulcrumlb/fulcrum/provider/internal/acctest"
	"github.com/fulcrumlb/fulcrum/provider/internal/fulcrum"
	"github.com/fulcrumlb/fulcrum/provider/internal/loadbalancer"
)

const addr = loadbalancer.ResourceType + ".test"

// checkDestroyed asks the API for every load balancer left in state.
func checkDestroyed(c *fulcrum.Client) resource.TestCheckFunc {
	return acctest.CheckDestroyed(loadbalancer.ResourceType, "load balancer", c.API.GetLoadBalancerWithResponse)
}

func inRange(prefix string) func(string) error {
	return func(v string) error {
		p := netip.MustParsePrefix(prefix)
		a, err := netip.ParseAddr(v)
		if err != nil || !p.Contains(a) {
			return fmt.Errorf("vip_address %q is not in %s", v, prefix)
		}
		return nil
	}
}

func TestAccLoadBalancer_basic(t *testing.T) {
	acctest.SkipUnlessAcc(t)
	s := acctest.Stack(t)
	c := acctest.Client(t, s, s.TenantToken)
	name := tfacctest.RandomWithPrefix("lb")
	var id string
	config := func(body string) string { return acctest.ProviderBlock(s, s.TenantToken) + body }
	first := config(fmt.Sprintf(`
resource "fulcrum_load_balancer" "test" {
  name        = %q
  description = "first"
  labels      = { env = "test" }
}
`, name))
	second := config(fmt.Sprintf(`
resource "fulcrum_load_balancer" "test" {
  name           = "%s-2"
  description    = "second"
  labels         = { env = "test", team = "web" }
  enabled        = false
  cascade_delete = true
}
`, name))

	resource.ParallelTest(t, resource.TestCase{
		ProtoV6ProviderFactories: acctest.Factories(),
		CheckDestroy:             checkDestroyed(c),
		Steps: []resource.TestStep{
			{
				Config: first,
				Check: resource.ComposeAggregateTestCheckFunc(
					acctest.CaptureID(addr, &id),
					resource.TestMatchResourceAttr(addr, "id", regexp.MustCompile(`^lb_`)),
					resource.TestCheckResourceAttr(addr, "name", name),
					resource.TestCheckResourceAttr(addr, "description", "first"),
					resource.TestCheckResourceAttr(addr, "labels.%", "1"),
					resource.TestCheckResourceAttr(addr, "labels.env", "test"),
					resource.TestCheckResourceAttr(addr, "node_group_id", s.NodeGroupID),
					resource.TestCheckResourceAttrWith(addr, "vip_address", inRange(s.VIPRange)),
					resource.TestCheckResourceAttr(addr, "enabled", "true"),
					resource.TestCheckResourceAttr(addr, "deletion_protection", "false"),
					resource.TestCheckResourceAttr(addr, "cascade_delete", "false"),
					resource.TestCheckResourceAttr(addr, "tenant_id", s.TenantID),
					resource.TestCheckResourceAttr(addr, "provisioning_status", "active"),
					resource.TestCheckResourceAttrSet(addr, "operating_status"),
				),
			},
			{
				ResourceName:            addr,
				ImportState:             true,
				ImportStateVerify:       true,
				ImportStateVerifyIgnore: []string{"cascade_delete", "timeouts"},
			},
			{
				Config: second,
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectResourceAction(addr, plancheck.ResourceActionUpdate),
				}},
				Check: resource.ComposeAggregateTestCheckFunc(
					resource.TestCheckResourceAttrPtr(addr, "id", &id),
					resource.TestCheckResourceAttr(addr, "name", name+"-2"),
					resource.TestCheckResourceAttr(addr, "description", "second"),
					resource.TestCheckResourceAttr(addr, "labels.%", "2"),
					resource.TestCheckResourceAttr(addr, "labels.team", "web"),
					resource.TestCheckResourceAttr(addr, "enabled", "false"),
					resource.TestCheckResourceAttr(addr, "cascade_delete", "true"),
					resource.TestCheckResourceAttr(addr, "provisioning_status", "active"),
				),
			},
			{
				// Drift: a change made outside Terraform is refreshed and undone.
				PreConfig: func() {
					d := "changed elsewhere"
					res, err := c.API.UpdateLoadBalancerWithResponse(context.Background(), id, &openapi.UpdateLoadBalancerParams{},
						openapi.LoadBalancerUpdate{Description: &d, Labels: &openapi.Labels{}})
					if err != nil || res.JSON200 == nil {
						t.Fatalf("out-of-band update: %v %s", err, res.Body)
					}
				},
				Config: second,
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectResourceAction(addr, plancheck.ResourceActionUpdate),
				}},
				Check: resource.ComposeAggregateTestCheckFunc(
					resource.TestCheckResourceAttr(addr, "description", "second"),
					resource.TestCheckResourceAttr(addr, "labels.%", "2"),
				),
			},
			{
				// cascade_delete: a listener Terraform does not manage goes
				// with the load balancer when it is destroyed.
				PreConfig: func() {
					res, err := c.API.CreateListenerWithResponse(context.Background(), &openapi.CreateListenerParams{},
						openapi.ListenerCreate{LoadBalancerId: id, Protocol: openapi.ListenerProtocolTcp, Port: 9000})
					if err != nil || res.JSON201 == nil {
						t.Fatalf("out-of-band listener: %v %s", err, res.Body)
					}
				},
				Config: second,
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectEmptyPlan(),
				}},
			},
		},
	})
}

// A given VIP and node group are kept; another VIP replaces the load
// balancer, another spelling of the same VIP does not.
func TestAccLoadBalancer_vipAddress(t *testing.T) {
	acctest.SkipUnlessAcc(t)
	s := acctest.Stack(t)
	c := acctest.Client(t, s, s.TenantToken)
	p := netip.MustParsePrefix(s.VIPRange)
	vip1, vip2 := p.Addr().Next().Next().Next(), p.Addr().Next().Next().Next().Next()
	config := func(vip string) string {
		return acctest.ProviderBlock(s, s.TenantToken) + fmt.Sprintf(`
resource "fulcrum_load_balancer" "test" {
  node_group_id = %q
  vip_address   = %q
}
`, s.NodeGroupID, vip)
	}
	resource.ParallelTest(t, resource.TestCase{
		ProtoV6ProviderFactories: acctest.Factories(),
		CheckDestroy:             checkDestroyed(c),
		Steps: []resource.TestStep{
			{
				Config: config(vip1.String()),
				Check: resource.ComposeAggregateTestCheckFunc(
					resource.TestCheckResourceAttr(addr, "vip_address", vip1.String()),
					resource.TestCheckResourceAttr(addr, "node_group_id", s.NodeGroupID),
					resource.TestCheckResourceAttr(addr, "name", ""),
				),
			},
			{
				Config: config(vip2.String()),
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectResourceAction(addr, plancheck.ResourceActionReplace),
				}},
				Check: resource.TestCheckResourceAttr(addr, "vip_address", vip2.String()),
			},
			{
				// A refresh finds nothing to change.
				Config:   config(vip2.String()),
				PlanOnly: true,
			},
		},
	})
}

func TestAccLoadBalancer_dataSources(t *testing.T) {
	acctest.SkipUnlessAcc(t)
	s := acctest.Stack(t)
	name := tfacctest.RandomWithPrefix("lb")
	config := acctest.ProviderBlock(s, s.TenantToken) + fmt.Sprintf(`
resource "fulcrum_load_balancer" "a" {
  name   = "%[1]s-a"
  labels = { team = "%[1]s", tier = "front" }
}
resource "fulcrum_load_balancer" "b" {
  name   = "%[1]s-b"
  labels = { team = "%[1]s", tier = "back" }
}
data "fulcrum_load_balancer" "by_id" {
  id = fulcrum_load_balancer.a.id
}
data "fulcrum_load_balancer" "by_name" {
  name = fulcrum_load_balancer.b.name
}
data "fulcrum_load_balancers" "team" {
  labels     = { team = "%[1]s" }
  depends_on = [fulcrum_load_balancer.a, fulcrum_load_balancer.b]
}
data "fulcrum_load_balancers" "front" {
  labels     = { team = "%[1]s", tier = "front" }
  depends_on = [fulcrum_load_balancer.a, fulcrum_load_balancer.b]
}
data "fulcrum_load_balancers" "named" {
  name       = fulcrum_load_balancer.b.name
  depends_on = [fulcrum_load_balancer.a, fulcrum_load_balancer.b]
}
`, name)
	resource.ParallelTest(t, resource.TestCase{
		ProtoV6ProviderFactories: acctest.Factories(),
		CheckDestroy:             checkDestroyed(acctest.Client(t, s, s.TenantToken)),
		Steps: []resource.TestStep{{
			Config: config,
			Check: resource.ComposeAggregateTestCheckFunc(
				resource.TestCheckResourceAttrPair("data.fulcrum_load_balancer.by_id", "name", "fulcrum_load_balancer.a", "name"),
				resource.TestCheckResourceAttrPair("data.fulcrum_load_balancer.by_id", "vip_address", "fulcrum_load_balancer.a", "vip_address"),
				resource.TestCheckResourceAttr("data.fulcrum_load_balancer.by_id", "labels.tier", "front"),
				resource.TestCheckResourceAttr("data.fulcrum_load_balancer.by_id", "provisioning_status", "active"),
				resource.TestCheckResourceAttrPair("data.fulcrum_load_balancer.by_name", "id", "fulcrum_load_balancer.b", "id"),
				resource.TestCheckResourceAttrPair("data.fulcrum_load_balancer.by_name", "node_group_id", "fulcrum_load_balancer.b", "node_group_id"),
				resource.TestCheckResourceAttr("data.fulcrum_load_balancers.team", "load_balancers.#", "2"),
				resource.TestCheckResourceAttr("data.fulcrum_load_balancers.front", "load_balancers.#", "1"),
				resource.TestCheckResourceAttrPair("data.fulcrum_load_balancers.front", "load_balancers.0.id", "fulcrum_load_balancer.a", "id"),
				resource.TestCheckResourceAttr("data.fulcrum_load_balancers.named", "load_balancers.#", "1"),
				resource.TestCheckResourceAttrPair("data.fulcrum_load_balancers.named", "load_balancers.0.id", "fulcrum_load_balancer.b", "id"),
			),
		}},
	})
}

// Bad values fail at plan, naming the attribute; no API is needed.
func TestAccLoadBalancer_invalid(t *testing.T) {
	acctest.PreCheck(t)
	provider := acctest.UnreachableProviderBlock
	step := func(body, want string) resource.TestStep {
		return resource.TestStep{
			Config:      provider + "resource \"fulcrum_load_balancer\" \"test\" {\n" + body + "\n}\n",
			PlanOnly:    true,
			ExpectError: regexp.MustCompile(want),
		}
	}
	resource.ParallelTest(t, resource.TestCase{
		ProtoV6ProviderFactories: acctest.Factories(),
		Steps: []resource.TestStep{
			step(`vip_address = "10.0.0.300"`, `(?s)vip_address.*IPv4 or IPv6`),
			step(`name = "`+strings.Repeat("n", 256)+`"`, `(?s)name.*255`),
			step(`name = " padded"`, `(?s)name.*whitespace`),
			step(`labels = { "Not OK" = "x" }`, `(?s)labels.*lowercase`),
			step(`labels = { ok = "`+strings.Repeat("v", 256)+`" }`, `(?s)labels.*255`),
			{
				Config:      provider + "data \"fulcrum_load_balancer\" \"x\" {\n}\n",
				PlanOnly:    true,
				ExpectError: regexp.MustCompile(`(?s)id.*name|name.*id`),
			},
		},
	})
}
