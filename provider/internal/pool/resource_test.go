package pool_test

import (
	"fmt"
	"regexp"
	"testing"

	tfacctest "github.com/hashicorp/terraform-plugin-testing/helper/acctest"
	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/plancheck"

	"github.com/fulcrumlb/fulcrum/provider/internal/acctest"
	"github.com/fulcrumlb/fulcrum/provider/internal/fulcrum"
	"github.com/fulcrumlb/fulcrum/provider/internal/pool"
)

const addr = pool.ResourceType + ".test"

// checkDestroyed asks the API for every pool left in state.
func checkDestroyed(c *fulcrum.Client) resource.TestCheckFunc {
	return acctest.CheckDestroyed(pool.ResourceType, "pool", c.API.GetPoolWithResponse)
}

func TestAccPool_basic(t *testing.T) {
	acctest.SkipUnlessAcc(t)
	s := acctest.Stack(t)
	name := tfacctest.RandomWithPrefix("pool")
	config := func(body string) string {
		return acctest.ProviderBlock(s, s.TenantToken) + `
resource "fulcrum_load_balancer" "lb" {}
` + body
	}
	first := config(fmt.Sprintf(`
resource "fulcrum_pool" "test" {
  load_balancer_id = fulcrum_load_balancer.lb.id
  name             = %q
  protocol         = "http"
  health_monitor = {
    type = "http"
    path = "/healthz"
  }
}
data "fulcrum_pool" "test" {
  id = fulcrum_pool.test.id
}
`, name))
	second := config(fmt.Sprintf(`
resource "fulcrum_pool" "test" {
  load_balancer_id = fulcrum_load_balancer.lb.id
  name             = %q
  labels           = { tier = "app" }
  protocol         = "http"
  algorithm        = "least_connections"
  retries          = 5
  redispatch       = false
  proxy_protocol   = "v2"
  drain_timeout_ms = 1000
  session_persistence = {
    type = "cookie_insert"
  }
  health_monitor = {
    type        = "tcp"
    interval_ms = 2000
    fall        = 5
  }
}
`, name))
	third := config(fmt.Sprintf(`
resource "fulcrum_pool" "test" {
  load_balancer_id = fulcrum_load_balancer.lb.id
  name             = %q
  protocol         = "http"
  algorithm        = "header"
  hash_key         = "X-User"
  session_persistence = {
    type        = "app_cookie"
    cookie_name = "JSESSIONID"
  }
}
`, name))

	resource.ParallelTest(t, resource.TestCase{
		ProtoV6ProviderFactories: acctest.Factories(),
		CheckDestroy:             checkDestroyed(acctest.Client(t, s, s.TenantToken)),
		Steps: []resource.TestStep{
			{
				Config: first,
				Check: resource.ComposeAggregateTestCheckFunc(
					resource.TestMatchResourceAttr(addr, "id", regexp.MustCompile(`^pool_`)),
					resource.TestCheckResourceAttrPair(addr, "load_balancer_id", "fulcrum_load_balancer.lb", "id"),
					resource.TestCheckResourceAttr(addr, "name", name),
					resource.TestCheckResourceAttr(addr, "algorithm", "round_robin"),
					resource.TestCheckResourceAttr(addr, "hash_key", ""),
					resource.TestCheckResourceAttr(addr, "retries", "3"),
					resource.TestCheckResourceAttr(addr, "redispatch", "true"),
					resource.TestCheckResourceAttr(addr, "proxy_protocol", "none"),
					resource.TestCheckResourceAttr(addr, "drain_timeout_ms", "30000"),
					resource.TestCheckResourceAttr(addr, "tls_to_members", "false"),
					resource.TestCheckResourceAttr(addr, "session_persistence.type", "none"),
					resource.TestCheckResourceAttr(addr, "session_persistence.cookie_name", ""),
					resource.TestCheckResourceAttr(addr, "health_monitor.interval_ms", "5000"),
					resource.TestCheckResourceAttr(addr, "health_monitor.timeout_ms", "3000"),
					resource.TestCheckResourceAttr(addr, "health_monitor.rise", "2"),
					resource.TestCheckResourceAttr(addr, "health_monitor.fall", "3"),
					resource.TestCheckResourceAttr(addr, "health_monitor.http_method", "GET"),
					resource.TestCheckResourceAttr(addr, "health_monitor.path", "/healthz"),
					resource.TestCheckResourceAttr(addr, "health_monitor.expected_codes", "200-399"),
					resource.TestCheckResourceAttr(addr, "provisioning_status", "active"),
					resource.TestCheckResourceAttr(addr, "tenant_id", s.TenantID),
					resource.TestCheckResourceAttrPair("data.fulcrum_pool.test", "name", addr, "name"),
					resource.TestCheckResourceAttrPair("data.fulcrum_pool.test", "load_balancer_id", addr, "load_balancer_id"),
					resource.TestCheckResourceAttr("data.fulcrum_pool.test", "health_monitor.path", "/healthz"),
					resource.TestCheckResourceAttr("data.fulcrum_pool.test", "session_persistence.type", "none"),
					resource.TestCheckResourceAttr("data.fulcrum_pool.test", "algorithm", "round_robin"),
				),
			},
			{
				ResourceName:            addr,
				ImportState:             true,
				ImportStateVerify:       true,
				ImportStateVerifyIgnore: []string{"timeouts"},
			},
			{
				Config: second,
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectResourceAction(addr, plancheck.ResourceActionUpdate),
				}},
				Check: resource.ComposeAggregateTestCheckFunc(
					resource.TestCheckResourceAttr(addr, "algorithm", "least_connections"),
					resource.TestCheckResourceAttr(addr, "labels.tier", "app"),
					resource.TestCheckResourceAttr(addr, "retries", "5"),
					resource.TestCheckResourceAttr(addr, "redispatch", "false"),
					resource.TestCheckResourceAttr(addr, "proxy_protocol", "v2"),
					resource.TestCheckResourceAttr(addr, "drain_timeout_ms", "1000"),
					resource.TestCheckResourceAttr(addr, "session_persistence.type", "cookie_insert"),
					resource.TestCheckResourceAttr(addr, "session_persistence.cookie_name", "FULCRUMSRV"),
					resource.TestCheckResourceAttr(addr, "health_monitor.type", "tcp"),
					resource.TestCheckResourceAttr(addr, "health_monitor.interval_ms", "2000"),
					resource.TestCheckResourceAttr(addr, "health_monitor.timeout_ms", "2000"),
					resource.TestCheckResourceAttr(addr, "health_monitor.fall", "5"),
					resource.TestCheckResourceAttr(addr, "health_monitor.http_method", ""),
					resource.TestCheckResourceAttr(addr, "health_monitor.path", ""),
					resource.TestCheckResourceAttr(addr, "provisioning_status", "active"),
				),
			},
			{
				Config: third,
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectResourceAction(addr, plancheck.ResourceActionUpdate),
				}},
				Check: resource.ComposeAggregateTestCheckFunc(
					resource.TestCheckNoResourceAttr(addr, "health_monitor"),
					resource.TestCheckResourceAttr(addr, "algorithm", "header"),
					resource.TestCheckResourceAttr(addr, "hash_key", "X-User"),
					resource.TestCheckResourceAttr(addr, "labels.%", "0"),
					resource.TestCheckResourceAttr(addr, "retries", "3"),
					resource.TestCheckResourceAttr(addr, "session_persistence.type", "app_cookie"),
					resource.TestCheckResourceAttr(addr, "session_persistence.cookie_name", "JSESSIONID"),
				),
			},
		},
	})
}

// Bad values fail at plan, naming the attribute; no API is needed.
func TestAccPool_invalid(t *testing.T) {
	acctest.PreCheck(t)
	provider := acctest.UnreachableProviderBlock
	step := func(body, want string) resource.TestStep {
		return resource.TestStep{
			Config:      provider + "resource \"fulcrum_pool\" \"test\" {\n  load_balancer_id = \"lb_x\"\n" + body + "\n}\n",
			PlanOnly:    true,
			ExpectError: regexp.MustCompile(want),
		}
	}
	resource.ParallelTest(t, resource.TestCase{
		ProtoV6ProviderFactories: acctest.Factories(),
		Steps: []resource.TestStep{
			step(`protocol = "udp"`, `(?s)protocol.*tcp.*http`),
			step(`protocol = "http"
  algorithm = "fastest"`, `(?s)algorithm.*round_robin`),
			step(`protocol = "http"
  retries = 11`, `(?s)retries.*between 0 and 10`),
			step(`protocol = "http"
  health_monitor = { type = "http", interval_ms = 50 }`, `(?s)health_monitor.interval_ms.*between 100`),
			step(`protocol = "http"
  health_monitor = { type = "http", interval_ms = 1000, timeout_ms = 2000 }`, `(?s)health_monitor.timeout_ms.*must not exceed interval_ms`),
			step(`protocol = "http"
  health_monitor = { type = "tcp", path = "/x" }`, `(?s)health_monitor.path.*only for http`),
			step(`protocol = "http"
  health_monitor = { type = "http", expected_codes = "2xx" }`, `(?s)health_monitor.expected_codes.*status code`),
			step(`protocol = "http"
  algorithm = "header"`, `(?s)hash_key.*required for the header algorithm`),
			step(`protocol = "tcp"
  algorithm = "uri"`, `(?s)algorithm.*needs an http pool`),
			step(`protocol = "http"
  session_persistence = { type = "none", cookie_name = "X" }`, `(?s)session_persistence.cookie_name.*only for the cookie`),
			step(`protocol = "http"
  session_persistence = { type = "cookie_prefix" }`, `(?s)session_persistence.cookie_name.*required`),
			step(`protocol = "tcp"
  session_persistence = { type = "cookie_insert" }`, `(?s)session_persistence.type.*needs an http pool`),
			step(`protocol = "http"
  session_persistence = { type = "cookie_insert", cookie_name = "a b" }`, `(?s)session_persistence.cookie_name.*letters`),
		},
	})
}
