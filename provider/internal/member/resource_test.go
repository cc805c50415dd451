package member_test

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	tfacctest "github.com/hashicorp/terraform-plugin-testing/helper/acctest"
	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/plancheck"
	"github.com/hashicorp/terraform-plugin-testing/terraform"

	"github.com/fulcrumlb/fulcrum/internal/teststack"
	"github.com/fulcrumlb/fulcrum/openapi"
	"github.com/fulcrumlb/fulcrum/provider/internal/acctest"
	"github.com/fulcrumlb/fulcrum/provider/internal/fulcrum"
	"github.com/fulcrumlb/fulcrum/provider/internal/member"
)

const addr = member.ResourceType + ".test"

// checkDestroyed asks the API for every member left in state.
func checkDestroyed(c *fulcrum.Client) resource.TestCheckFunc {
	return acctest.CheckDestroyed(member.ResourceType, "member", c.API.GetMemberWithResponse)
}

// serves checks that the load balancer's listener answers with want: the
// apply waited for every node to ack, so traffic must follow within moments.
func serves(want string) resource.TestCheckFunc {
	return func(st *terraform.State) error {
		lb, ok := st.RootModule().Resources["fulcrum_load_balancer.lb"]
		if !ok {
			return fmt.Errorf("no load balancer in state")
		}
		url := fmt.Sprintf("http://%s:9080/", lb.Primary.Attributes["vip_address"])
		var got string
		var err error
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			if got, err = teststack.Get(url); err == nil && got == want || err != nil && want == "" {
				return nil
			}
		}
		return fmt.Errorf("GET %s = %q, %v; want %q", url, got, err, want)
	}
}

// The whole chain with real traffic: the member's backend answers through
// HAProxy; moving the member moves the traffic; disabling it stops it.
func TestAccMember_basic(t *testing.T) {
	acctest.SkipUnlessAcc(t)
	s := acctest.Stack(t)
	b1, b2 := teststack.StartBackend(t, "backend-1"), teststack.StartBackend(t, "backend-2")
	name := tfacctest.RandomWithPrefix("mbr")
	var id string
	config := func(body string) string {
		return acctest.ProviderBlock(s, s.TenantToken) + `
resource "fulcrum_load_balancer" "lb" {}
resource "fulcrum_pool" "web" {
  load_balancer_id = fulcrum_load_balancer.lb.id
  protocol         = "http"
}
resource "fulcrum_listener" "web" {
  load_balancer_id = fulcrum_load_balancer.lb.id
  protocol         = "http"
  port             = 9080
  default_pool_id  = fulcrum_pool.web.id
}
` + body
	}
	first := config(fmt.Sprintf(`
resource "fulcrum_member" "test" {
  pool_id = fulcrum_pool.web.id
  name    = %q
  address = "127.0.0.1"
  port    = %d
}
`, name, b1.Port))
	moved := config(fmt.Sprintf(`
resource "fulcrum_member" "test" {
  pool_id         = fulcrum_pool.web.id
  name            = %q
  labels          = { az = "b" }
  address         = "127.0.0.1"
  port            = %d
  weight          = 10
  max_connections = 100
}
`, name, b2.Port))
	disabled := config(fmt.Sprintf(`
resource "fulcrum_member" "test" {
  pool_id = fulcrum_pool.web.id
  name    = %q
  address = "127.0.0.1"
  port    = %d
  enabled = false
  backup  = true
}
`, name, b2.Port))

	resource.ParallelTest(t, resource.TestCase{
		ProtoV6ProviderFactories: acctest.Factories(),
		CheckDestroy:             checkDestroyed(acctest.Client(t, s, s.TenantToken)),
		Steps: []resource.TestStep{
			{
				Config: first,
				Check: resource.ComposeAggregateTestCheckFunc(
					acctest.CaptureID(addr, &id),
					resource.TestMatchResourceAttr(addr, "id", regexp.MustCompile(`^mbr_`)),
					resource.TestCheckResourceAttrPair(addr, "pool_id", "fulcrum_pool.web", "id"),
					resource.TestCheckResourceAttrPair(addr, "load_balancer_id", "fulcrum_load_balancer.lb", "id"),
					resource.TestCheckResourceAttr(addr, "name", name),
					resource.TestCheckResourceAttr(addr, "weight", "1"),
					resource.TestCheckResourceAttr(addr, "enabled", "true"),
					resource.TestCheckResourceAttr(addr, "backup", "false"),
					resource.TestCheckResourceAttr(addr, "max_connections", "0"),
					resource.TestCheckResourceAttr(addr, "provisioning_status", "active"),
					resource.TestCheckResourceAttrSet(addr, "operating_status"),
					serves("backend-1"),
				),
			},
			{
				ResourceName:            addr,
				ImportState:             true,
				ImportStateVerify:       true,
				ImportStateVerifyIgnore: []string{"timeouts", "operating_status"},
			},
			{
				Config: moved,
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectResourceAction(addr, plancheck.ResourceActionUpdate),
				}},
				Check: resource.ComposeAggregateTestCheckFunc(
					resource.TestCheckResourceAttrPtr(addr, "id", &id),
					resource.TestCheckResourceAttr(addr, "port", fmt.Sprint(b2.Port)),
					resource.TestCheckResourceAttr(addr, "weight", "10"),
					resource.TestCheckResourceAttr(addr, "max_connections", "100"),
					resource.TestCheckResourceAttr(addr, "labels.az", "b"),
					serves("backend-2"),
				),
			},
			{
				Config: disabled,
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectResourceAction(addr, plancheck.ResourceActionUpdate),
				}},
				Check: resource.ComposeAggregateTestCheckFunc(
					resource.TestCheckResourceAttr(addr, "enabled", "false"),
					resource.TestCheckResourceAttr(addr, "backup", "true"),
					resource.TestCheckResourceAttr(addr, "weight", "1"),
					resource.TestCheckResourceAttr(addr, "labels.%", "0"),
					serves(""), // no member takes traffic: 503
				),
			},
		},
	})
}

// Out-of-band changes: drift is undone, a member deleted behind Terraform's
// back is created again, and another pool replaces the member.
func TestAccMember_outOfBand(t *testing.T) {
	acctest.SkipUnlessAcc(t)
	s := acctest.Stack(t)
	c := acctest.Client(t, s, s.TenantToken)
	var id string
	config := func(pool string) string {
		return acctest.ProviderBlock(s, s.TenantToken) + fmt.Sprintf(`
resource "fulcrum_load_balancer" "lb" {}
resource "fulcrum_pool" "a" {
  load_balancer_id = fulcrum_load_balancer.lb.id
  protocol         = "tcp"
}
resource "fulcrum_pool" "b" {
  load_balancer_id = fulcrum_load_balancer.lb.id
  protocol         = "tcp"
}
resource "fulcrum_member" "test" {
  pool_id = fulcrum_pool.%s.id
  address = "backend.internal"
  port    = 8080
  weight  = 5
}
`, pool)
	}
	resource.ParallelTest(t, resource.TestCase{
		ProtoV6ProviderFactories: acctest.Factories(),
		CheckDestroy:             checkDestroyed(c),
		Steps: []resource.TestStep{
			{
				Config: config("a"),
				Check: resource.ComposeAggregateTestCheckFunc(
					acctest.CaptureID(addr, &id),
					resource.TestCheckResourceAttr(addr, "address", "backend.internal"),
				),
			},
			{
				PreConfig: func() {
					w := 50
					res, err := c.API.UpdateMemberWithResponse(context.Background(), id, &openapi.UpdateMemberParams{}, openapi.MemberUpdate{Weight: &w})
					if err != nil || res.JSON200 == nil {
						t.Fatalf("out-of-band update: %v %s", err, res.Body)
					}
				},
				Config: config("a"),
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectResourceAction(addr, plancheck.ResourceActionUpdate),
				}},
				Check: resource.TestCheckResourceAttr(addr, "weight", "5"),
			},
			{
				PreConfig: func() {
					res, err := c.API.DeleteMemberWithResponse(context.Background(), id, &openapi.DeleteMemberParams{})
					if err != nil || res.StatusCode() != 202 {
						t.Fatalf("out-of-band delete: %v %s", err, res.Body)
					}
				},
				Config: config("a"),
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectResourceAction(addr, plancheck.ResourceActionCreate),
				}},
				Check: resource.ComposeAggregateTestCheckFunc(
					resource.TestCheckResourceAttrWith(addr, "id", func(v string) error {
						if v == id {
							return fmt.Errorf("id %s is the deleted member's", v)
						}
						id = v
						return nil
					}),
					resource.TestCheckResourceAttr(addr, "provisioning_status", "active"),
				),
			},
			{
				Config: config("b"),
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectResourceAction(addr, plancheck.ResourceActionReplace),
				}},
				Check: resource.TestCheckResourceAttrPair(addr, "pool_id", "fulcrum_pool.b", "id"),
			},
		},
	})
}

// Bad values fail at plan, naming the attribute; no API is needed.
func TestAccMember_invalid(t *testing.T) {
	acctest.PreCheck(t)
	provider := acctest.UnreachableProviderBlock
	step := func(body, want string) resource.TestStep {
		return resource.TestStep{
			Config:      provider + "resource \"fulcrum_member\" \"test\" {\n  pool_id = \"pool_x\"\n" + body + "\n}\n",
			PlanOnly:    true,
			ExpectError: regexp.MustCompile(want),
		}
	}
	resource.ParallelTest(t, resource.TestCase{
		ProtoV6ProviderFactories: acctest.Factories(),
		Steps: []resource.TestStep{
			step(`address = "10.0.0.1"
  port = 80
  weight = 300`, `(?s)weight.*between 0 and 256`),
			step(`address = "10.0.0.1"
  port = 0`, `(?s)port.*between 1 and 65535`),
			step(`address = "bad host!"
  port = 80`, `(?s)address.*hostname or IP`),
			step(`address = "10.0.0.300"
  port = 80`, `(?s)address.*IPv4 or IPv6`),
			step(`address = "`+strings.Repeat("a.", 127)+`com"
  port = 80`, `(?s)address.*253`),
			step(`address = "10.0.0.1"
  port = 80
  max_connections = -1`, `(?s)max_connections.*between 0 and 1000000`),
		},
	})
}
