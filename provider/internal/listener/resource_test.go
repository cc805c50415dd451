package listener_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	tfacctest "github.com/hashicorp/terraform-plugin-testing/helper/acctest"
	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/plancheck"
	"github.com/hashicorp/terraform-plugin-testing/terraform"

	"github.com/fulcrumlb/fulcrum/dataplane/agent"
	"github.com/fulcrumlb/fulcrum/internal/testcerts"
	"github.com/fulcrumlb/fulcrum/internal/teststack"
	"github.com/fulcrumlb/fulcrum/openapi"
	"github.com/fulcrumlb/fulcrum/provider/internal/acctest"
	"github.com/fulcrumlb/fulcrum/provider/internal/fulcrum"
	"github.com/fulcrumlb/fulcrum/provider/internal/listener"
)

const addr = listener.ResourceType + ".test"

// checkDestroyed asks the API for every listener left in state.
func checkDestroyed(c *fulcrum.Client) resource.TestCheckFunc {
	return acctest.CheckDestroyed(listener.ResourceType, "listener", c.API.GetListenerWithResponse)
}

// certificate stores a fresh self-signed certificate through the API (the
// certificate resource is another package's) and returns its id.
func certificate(t *testing.T, c *fulcrum.Client, host string) string {
	t.Helper()
	certPEM, keyPEM := testcerts.SelfSigned(t, host)
	res, err := c.API.CreateCertificateWithResponse(context.Background(), &openapi.CreateCertificateParams{}, openapi.CertificateCreate{
		Certificate: certPEM,
		PrivateKey:  keyPEM,
	})
	if err != nil || res.JSON201 == nil {
		t.Fatalf("create certificate: %v %s", err, res.Body)
	}
	return res.JSON201.Id
}

// checkAccessLog checks that the node's HAProxy config has (or has not) the
// access log lines in the listener's frontend.
func checkAccessLog(stateDir *string, enabled bool) resource.TestCheckFunc {
	return func(st *terraform.State) error {
		rs, ok := st.RootModule().Resources[addr]
		if !ok {
			return fmt.Errorf("%s not in state", addr)
		}
		cfg, err := os.ReadFile(filepath.Join(*stateDir, "haproxy.cfg"))
		if err != nil {
			return err
		}
		_, section, found := strings.Cut(string(cfg), "\nfrontend "+rs.Primary.ID+"\n")
		if !found {
			return fmt.Errorf("no frontend %s in the node's haproxy.cfg", rs.Primary.ID)
		}
		section, _, _ = strings.Cut(section, "\n\n")
		if got := strings.Contains(section, "log-format "); got != enabled {
			return fmt.Errorf("frontend %s: access log rendered %v, want %v:\n%s", rs.Primary.ID, got, enabled, section)
		}
		return nil
	}
}

func TestAccListener_tcp(t *testing.T) {
	acctest.SkipUnlessAcc(t)
	var stateDir string
	s := acctest.StackWith(t, teststack.Options{HAProxy: "haproxy", AgentConfig: func(c *agent.Config) { stateDir = c.StateDir }})
	name := tfacctest.RandomWithPrefix("lsn")
	config := func(body string) string {
		return acctest.ProviderBlock(s, s.TenantToken) + `
resource "fulcrum_load_balancer" "lb" {}
resource "fulcrum_pool" "tcp" {
  load_balancer_id = fulcrum_load_balancer.lb.id
  protocol         = "tcp"
}
` + body
	}
	first := config(fmt.Sprintf(`
resource "fulcrum_listener" "test" {
  load_balancer_id = fulcrum_load_balancer.lb.id
  name             = %q
  protocol         = "tcp"
  port             = 9001
  default_pool_id  = fulcrum_pool.tcp.id
}
`, name))
	second := config(fmt.Sprintf(`
resource "fulcrum_listener" "test" {
  load_balancer_id = fulcrum_load_balancer.lb.id
  name             = "%s-2"
  labels           = { env = "test" }
  protocol         = "tcp"
  port             = 9002
  default_pool_id  = fulcrum_pool.tcp.id
  connection_limit = 1000
  allowed_cidrs    = ["10.1.2.3/8", "127.0.0.1"]
  denied_cidrs     = ["192.0.2.0/24"]
  rate_limit = {
    type       = "connections"
    per_second = 100
  }
  connection_timeouts = {
    client_ms = 30000
    tunnel_ms = 60000
  }
  access_log = { enabled = true }
}
`, name))
	third := config(`
resource "fulcrum_listener" "test" {
  load_balancer_id = fulcrum_load_balancer.lb.id
  protocol         = "tcp"
  port             = 9002
}
`)
	resource.ParallelTest(t, resource.TestCase{
		ProtoV6ProviderFactories: acctest.Factories(),
		CheckDestroy:             checkDestroyed(acctest.Client(t, s, s.TenantToken)),
		Steps: []resource.TestStep{
			{
				Config: first,
				Check: resource.ComposeAggregateTestCheckFunc(
					resource.TestMatchResourceAttr(addr, "id", regexp.MustCompile(`^lsn_`)),
					resource.TestCheckResourceAttrPair(addr, "load_balancer_id", "fulcrum_load_balancer.lb", "id"),
					resource.TestCheckResourceAttrPair(addr, "default_pool_id", "fulcrum_pool.tcp", "id"),
					resource.TestCheckResourceAttr(addr, "name", name),
					resource.TestCheckResourceAttr(addr, "port", "9001"),
					resource.TestCheckResourceAttr(addr, "connection_limit", "0"),
					resource.TestCheckResourceAttr(addr, "certificate_ids.#", "0"),
					resource.TestCheckResourceAttr(addr, "allowed_cidrs.#", "0"),
					resource.TestCheckNoResourceAttr(addr, "rate_limit"),
					resource.TestCheckNoResourceAttr(addr, "hsts"),
					resource.TestCheckResourceAttr(addr, "connection_timeouts.client_ms", "50000"),
					resource.TestCheckResourceAttr(addr, "connection_timeouts.connect_ms", "5000"),
					resource.TestCheckResourceAttr(addr, "connection_timeouts.server_ms", "50000"),
					resource.TestCheckResourceAttr(addr, "connection_timeouts.http_request_ms", "10000"),
					resource.TestCheckResourceAttr(addr, "connection_timeouts.http_keep_alive_ms", "60000"),
					resource.TestCheckResourceAttr(addr, "connection_timeouts.tunnel_ms", "3600000"),
					resource.TestCheckResourceAttr(addr, "insert_headers.x_forwarded_for", "false"),
					resource.TestCheckResourceAttr(addr, "compression", "false"),
					resource.TestCheckResourceAttr(addr, "access_log.enabled", "false"),
					resource.TestCheckResourceAttr(addr, "provisioning_status", "active"),
					resource.TestCheckResourceAttr(addr, "tenant_id", s.TenantID),
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
					resource.TestCheckResourceAttr(addr, "name", name+"-2"),
					resource.TestCheckResourceAttr(addr, "port", "9002"),
					resource.TestCheckResourceAttr(addr, "labels.env", "test"),
					resource.TestCheckResourceAttr(addr, "connection_limit", "1000"),
					// The configured spelling survives the API's canonical form.
					resource.TestCheckResourceAttr(addr, "allowed_cidrs.0", "10.1.2.3/8"),
					resource.TestCheckResourceAttr(addr, "allowed_cidrs.1", "127.0.0.1"),
					resource.TestCheckResourceAttr(addr, "denied_cidrs.0", "192.0.2.0/24"),
					resource.TestCheckResourceAttr(addr, "rate_limit.type", "connections"),
					resource.TestCheckResourceAttr(addr, "rate_limit.per_second", "100"),
					resource.TestCheckResourceAttr(addr, "connection_timeouts.client_ms", "30000"),
					resource.TestCheckResourceAttr(addr, "connection_timeouts.tunnel_ms", "60000"),
					resource.TestCheckResourceAttr(addr, "connection_timeouts.connect_ms", "5000"),
					resource.TestCheckResourceAttr(addr, "access_log.enabled", "true"),
					resource.TestCheckResourceAttr(addr, "provisioning_status", "active"),
					checkAccessLog(&stateDir, true),
				),
			},
			{
				Config: third,
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectResourceAction(addr, plancheck.ResourceActionUpdate),
				}},
				Check: resource.ComposeAggregateTestCheckFunc(
					resource.TestCheckNoResourceAttr(addr, "default_pool_id"),
					resource.TestCheckNoResourceAttr(addr, "rate_limit"),
					resource.TestCheckResourceAttr(addr, "name", ""),
					resource.TestCheckResourceAttr(addr, "labels.%", "0"),
					resource.TestCheckResourceAttr(addr, "allowed_cidrs.#", "0"),
					resource.TestCheckResourceAttr(addr, "denied_cidrs.#", "0"),
					resource.TestCheckResourceAttr(addr, "connection_limit", "0"),
					resource.TestCheckResourceAttr(addr, "connection_timeouts.client_ms", "50000"),
					resource.TestCheckResourceAttr(addr, "connection_timeouts.tunnel_ms", "3600000"),
					resource.TestCheckResourceAttr(addr, "access_log.enabled", "false"),
					checkAccessLog(&stateDir, false),
				),
			},
		},
	})
}

func TestAccListener_https(t *testing.T) {
	acctest.SkipUnlessAcc(t)
	s := acctest.Stack(t)
	c := acctest.Client(t, s, s.TenantToken)
	cert1, cert2 := certificate(t, c, "www.example.test"), certificate(t, c, "api.example.test")
	// config renders the stack with the https listener's certificate_ids
	// and further attributes.
	config := func(certs, https string) string {
		return acctest.ProviderBlock(s, s.TenantToken) + fmt.Sprintf(`
resource "fulcrum_load_balancer" "lb" {}
resource "fulcrum_pool" "web" {
  load_balancer_id = fulcrum_load_balancer.lb.id
  protocol         = "http"
}
resource "fulcrum_listener" "redirect" {
  load_balancer_id       = fulcrum_load_balancer.lb.id
  protocol               = "http"
  port                   = 9080
  redirect_http_to_https = true
}
resource "fulcrum_listener" "test" {
  load_balancer_id = fulcrum_load_balancer.lb.id
  protocol         = "https"
  port             = 9443
  default_pool_id  = fulcrum_pool.web.id
  certificate_ids  = %s
%s
}
`, certs, https)
	}
	resource.ParallelTest(t, resource.TestCase{
		ProtoV6ProviderFactories: acctest.Factories(),
		CheckDestroy:             checkDestroyed(c),
		Steps: []resource.TestStep{
			{
				Config: config(fmt.Sprintf("[%q]", cert1), `
  compression    = true
  access_log     = { enabled = true }
  insert_headers = { x_forwarded_for = true, x_forwarded_proto = true }
  hsts           = {}
  rate_limit     = { per_second = 50 }
`),
				Check: resource.ComposeAggregateTestCheckFunc(
					resource.TestCheckResourceAttr("fulcrum_listener.redirect", "redirect_http_to_https", "true"),
					resource.TestCheckResourceAttr("fulcrum_listener.redirect", "provisioning_status", "active"),
					resource.TestCheckResourceAttr(addr, "certificate_ids.#", "1"),
					resource.TestCheckResourceAttr(addr, "certificate_ids.0", cert1),
					resource.TestCheckResourceAttr(addr, "compression", "true"),
					resource.TestCheckResourceAttr(addr, "access_log.enabled", "true"),
					resource.TestCheckResourceAttr(addr, "insert_headers.x_forwarded_for", "true"),
					resource.TestCheckResourceAttr(addr, "insert_headers.x_forwarded_proto", "true"),
					resource.TestCheckResourceAttr(addr, "insert_headers.x_forwarded_port", "false"),
					resource.TestCheckResourceAttr(addr, "insert_headers.x_request_id", "false"),
					resource.TestCheckResourceAttr(addr, "hsts.max_age_seconds", "31536000"),
					resource.TestCheckResourceAttr(addr, "hsts.include_subdomains", "false"),
					resource.TestCheckResourceAttr(addr, "rate_limit.type", "requests"),
					resource.TestCheckResourceAttr(addr, "rate_limit.per_second", "50"),
					resource.TestCheckResourceAttr(addr, "provisioning_status", "active"),
				),
			},
			{
				ResourceName:            addr,
				ImportState:             true,
				ImportStateVerify:       true,
				ImportStateVerifyIgnore: []string{"timeouts"},
			},
			{
				Config: config(fmt.Sprintf("[%q, %q]", cert2, cert1), `
  insert_headers = { x_request_id = true }
  hsts           = { max_age_seconds = 60, include_subdomains = true }
`),
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectResourceAction(addr, plancheck.ResourceActionUpdate),
					plancheck.ExpectResourceAction("fulcrum_listener.redirect", plancheck.ResourceActionNoop),
				}},
				Check: resource.ComposeAggregateTestCheckFunc(
					resource.TestCheckResourceAttr(addr, "certificate_ids.0", cert2),
					resource.TestCheckResourceAttr(addr, "certificate_ids.1", cert1),
					resource.TestCheckResourceAttr(addr, "insert_headers.x_forwarded_for", "false"),
					resource.TestCheckResourceAttr(addr, "insert_headers.x_request_id", "true"),
					resource.TestCheckResourceAttr(addr, "hsts.max_age_seconds", "60"),
					resource.TestCheckResourceAttr(addr, "hsts.include_subdomains", "true"),
					resource.TestCheckResourceAttr(addr, "compression", "false"),
					resource.TestCheckResourceAttr(addr, "access_log.enabled", "false"),
					resource.TestCheckNoResourceAttr(addr, "rate_limit"),
				),
			},
		},
	})
}

// Bad values fail at plan, naming the attribute; no API is needed.
func TestAccListener_invalid(t *testing.T) {
	acctest.PreCheck(t)
	provider := acctest.UnreachableProviderBlock
	step := func(body, want string) resource.TestStep {
		return resource.TestStep{
			Config:      provider + "resource \"fulcrum_listener\" \"test\" {\n  load_balancer_id = \"lb_x\"\n" + body + "\n}\n",
			PlanOnly:    true,
			ExpectError: regexp.MustCompile(want),
		}
	}
	resource.ParallelTest(t, resource.TestCase{
		ProtoV6ProviderFactories: acctest.Factories(),
		Steps: []resource.TestStep{
			step(`protocol = "tcp"
  port = 0`, `(?s)port.*between 1 and 65535`),
			step(`protocol = "tcp"
  port = 70000`, `(?s)port.*between 1 and 65535`),
			step(`protocol = "udp"
  port = 80`, `(?s)protocol.*tcp.*http.*https`),
			step(`protocol = "tcp"
  port = 80
  allowed_cidrs = ["10.0.0.0/8", "10.0.0.0/33"]`, `(?s)allowed_cidrs\[1\].*CIDR`),
			step(`protocol = "tcp"
  port = 80
  denied_cidrs = ["not-a-network"]`, `(?s)denied_cidrs\[0\].*CIDR`),
			step(`protocol = "tcp"
  port = 80
  connection_timeouts = { client_ms = 0 }`, `(?s)connection_timeouts.client_ms.*between 1`),
			step(`protocol = "tcp"
  port = 80
  rate_limit = { per_second = 10 }`, `(?s)rate_limit.type.*connections`),
			step(`protocol = "http"
  port = 80
  rate_limit = { per_second = 0 }`, `(?s)rate_limit.per_second.*between 1`),
			step(`protocol = "http"
  port = 80
  hsts = {}`, `(?s)hsts.*only for https`),
			step(`protocol = "https"
  port = 443`, `(?s)certificate_ids.*at least one certificate`),
			step(`protocol = "https"
  port = 443
  certificate_ids = ["cert_1"]
  redirect_http_to_https = true`, `(?s)redirect_http_to_https.*only for http`),
			step(`protocol = "tcp"
  port = 80
  insert_headers = { x_forwarded_for = true }`, `(?s)insert_headers.x_forwarded_for.*only for http`),
			step(`protocol = "tcp"
  port = 80
  compression = true`, `(?s)compression.*only for http`),
		},
	})
}
