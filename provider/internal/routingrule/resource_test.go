package routingrule_test

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
	"github.com/fulcrumlb/fulcrum/provider/internal/routingrule"
)

const addr = routingrule.ResourceType + ".test"

var tmpl = acctest.Template("testdata/rule.tf.tmpl")

// config is what testdata/rule.tf.tmpl renders.
type config struct {
	Provider   string
	ListenerID string
	Name       string
	Priority   int
	Labels     map[string]string
	Conditions []condition
	Action     action
	Timeouts   string
}

type condition struct {
	Field, Match, Key string
	Values            []string
	Invert            bool
}

type action struct {
	Type     string
	Pools    []pool
	Redirect *redirect
	Fixed    *fixed
}

type pool struct {
	PoolID string
	Weight *int // nil: the default
}

type redirect struct {
	URL, Scheme string
	Code        int
}

type fixed struct {
	StatusCode int
	Body       string
}

func (c config) String() string { return acctest.Render(tmpl, c) }

// parents are the objects a rule hangs off, made through the API.
type parents struct {
	vip, listenerID, pool1, pool2 string
	backend                       *teststack.Backend
}

// ok fails the test unless the API call succeeded.
func ok(t *testing.T, what string, res interface{ StatusCode() int }, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if c := res.StatusCode(); c >= 300 {
		t.Fatalf("%s: status %d", what, c)
	}
}

// makeParents creates a load balancer with an http listener on port 8080 and
// two http pools, the first with a member answering "b1".
func makeParents(t *testing.T, s *teststack.Stack, c *fulcrum.Client) parents {
	t.Helper()
	ctx := context.Background()
	lb, err := c.API.CreateLoadBalancerWithResponse(ctx, nil, openapi.LoadBalancerCreate{NodeGroupId: &s.NodeGroupID})
	ok(t, "create load balancer", lb, err)
	id := lb.JSON201.Id
	lsn, err := c.API.CreateListenerWithResponse(ctx, nil, openapi.ListenerCreate{LoadBalancerId: id, Protocol: openapi.ListenerProtocolHttp, Port: 8080})
	ok(t, "create listener", lsn, err)
	p := parents{vip: lb.JSON201.VipAddress, listenerID: lsn.JSON201.Id, backend: teststack.StartBackend(t, "b1")}
	for _, dst := range []*string{&p.pool1, &p.pool2} {
		res, err := c.API.CreatePoolWithResponse(ctx, nil, openapi.PoolCreate{LoadBalancerId: id, Protocol: openapi.PoolProtocolHttp})
		ok(t, "create pool", res, err)
		*dst = res.JSON201.Id
	}
	mbr, err := c.API.CreateMemberWithResponse(ctx, nil, openapi.MemberCreate{PoolId: p.pool1, Address: "127.0.0.1", Port: p.backend.Port})
	ok(t, "create member", mbr, err)
	return p
}

// checkDestroy asks the API for every rule left in state.
func checkDestroy(c *fulcrum.Client) resource.TestCheckFunc {
	return acctest.CheckDestroyed(routingrule.ResourceType, "routing rule", c.API.GetRoutingRuleWithResponse)
}

// serves checks that url answers want; the rule is active when the step ends,
// so only a short grace is allowed for the reloaded worker.
func serves(url, want string) resource.TestCheckFunc {
	return func(*terraform.State) error {
		var got string
		var err error
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			if got, err = teststack.Get(url); err == nil && got == want {
				return nil
			}
		}
		return fmt.Errorf("GET %s: got %q, %v; want %q", url, got, err, want)
	}
}

func TestAccRoutingRule(t *testing.T) {
	acctest.SkipUnlessAcc(t)
	s := acctest.Stack(t)
	c := acctest.Client(t, s, s.TenantToken)
	p := makeParents(t, s, c)
	base := fmt.Sprintf("http://%s:8080", p.vip)
	name := tfacctest.RandomWithPrefix("rule")
	provider := acctest.ProviderBlock(s, s.TenantToken)

	forward := config{Provider: provider, ListenerID: p.listenerID, Name: name, Priority: 10, Timeouts: "2m",
		Conditions: []condition{{Field: "path", Match: "prefix", Values: []string{"/api/"}}},
		Action:     action{Type: "forward", Pools: []pool{{PoolID: p.pool1}, {PoolID: p.pool2, Weight: new(0)}}}}
	fixedResp := config{Provider: provider, ListenerID: p.listenerID, Name: name + "-2", Priority: 20, Labels: map[string]string{"env": "test"},
		Conditions: []condition{{Field: "path", Match: "prefix", Values: []string{"/hello"}}, {Field: "header", Key: "X-Skip", Values: []string{"1"}, Invert: true}},
		Action:     action{Type: "fixed_response", Fixed: &fixed{StatusCode: 200, Body: "hello from the rule"}}}
	redirectResp := fixedResp
	redirectResp.Conditions = nil
	redirectResp.Action = action{Type: "redirect", Redirect: &redirect{Scheme: "https"}}
	// A source CIDR with host bits: the API stores 127.0.0.0/8.
	fromLoopback := fixedResp
	fromLoopback.Conditions = []condition{{Field: "source_ip", Values: []string{"127.1.2.3/8", "10.9.8.7"}}, {Field: "path", Match: "prefix", Values: []string{"/cidr"}}}
	fromLoopback.Action = action{Type: "fixed_response", Fixed: &fixed{StatusCode: 200, Body: "from loopback"}}

	var id string
	resource.ParallelTest(t, resource.TestCase{
		ProtoV6ProviderFactories: acctest.Factories(),
		CheckDestroy:             checkDestroy(c),
		Steps: []resource.TestStep{
			{
				Config: forward.String(),
				Check: resource.ComposeAggregateTestCheckFunc(
					resource.TestCheckResourceAttrWith(addr, "id", func(v string) error {
						if !strings.HasPrefix(v, "rule_") {
							return fmt.Errorf("id %q is not a rule id", v)
						}
						id = v
						return nil
					}),
					resource.TestCheckResourceAttr(addr, "listener_id", p.listenerID),
					resource.TestCheckResourceAttrSet(addr, "load_balancer_id"),
					resource.TestCheckResourceAttr(addr, "priority", "10"),
					resource.TestCheckResourceAttr(addr, "description", ""),
					resource.TestCheckResourceAttr(addr, "labels.%", "0"),
					resource.TestCheckResourceAttr(addr, "conditions.#", "1"),
					resource.TestCheckResourceAttr(addr, "conditions.0.match", "prefix"),
					resource.TestCheckResourceAttr(addr, "conditions.0.invert", "false"),
					resource.TestCheckNoResourceAttr(addr, "conditions.0.key"),
					resource.TestCheckResourceAttr(addr, "action.type", "forward"),
					resource.TestCheckResourceAttr(addr, "action.forward.pools.0.pool_id", p.pool1),
					resource.TestCheckResourceAttr(addr, "action.forward.pools.0.weight", "1"),
					resource.TestCheckResourceAttr(addr, "action.forward.pools.1.weight", "0"),
					resource.TestCheckNoResourceAttr(addr, "action.redirect"),
					serves(base+"/api/x", "b1"),
				),
			},
			{
				ResourceName:            addr,
				ImportState:             true,
				ImportStateVerify:       true,
				ImportStateVerifyIgnore: []string{"timeouts"},
			},
			{
				Config: fixedResp.String(),
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectResourceAction(addr, plancheck.ResourceActionUpdate),
				}},
				Check: resource.ComposeAggregateTestCheckFunc(
					resource.TestCheckResourceAttrPtr(addr, "id", &id),
					resource.TestCheckResourceAttr(addr, "priority", "20"),
					resource.TestCheckResourceAttr(addr, "labels.env", "test"),
					resource.TestCheckResourceAttr(addr, "conditions.#", "2"),
					resource.TestCheckResourceAttr(addr, "conditions.1.key", "X-Skip"),
					resource.TestCheckResourceAttr(addr, "conditions.1.match", "exact"),
					resource.TestCheckResourceAttr(addr, "conditions.1.invert", "true"),
					resource.TestCheckResourceAttr(addr, "action.fixed_response.content_type", "text/plain"),
					resource.TestCheckNoResourceAttr(addr, "action.forward"),
					serves(base+"/hello", "hello from the rule"),
				),
			},
			{
				Config: redirectResp.String(),
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectResourceAction(addr, plancheck.ResourceActionUpdate),
				}},
				Check: resource.ComposeAggregateTestCheckFunc(
					resource.TestCheckResourceAttrPtr(addr, "id", &id),
					resource.TestCheckResourceAttr(addr, "conditions.#", "0"),
					resource.TestCheckResourceAttr(addr, "action.redirect.scheme", "https"),
					resource.TestCheckResourceAttr(addr, "action.redirect.code", "302"),
					resource.TestCheckNoResourceAttr(addr, "action.redirect.url"),
				),
			},
			{
				// Out-of-band changes are drift, corrected in place.
				PreConfig: func() {
					prio := 99
					res, err := c.API.UpdateRoutingRuleWithResponse(context.Background(), id, nil, openapi.RoutingRuleUpdate{Priority: &prio})
					ok(t, "out-of-band update", res, err)
				},
				Config: redirectResp.String(),
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectResourceAction(addr, plancheck.ResourceActionUpdate),
				}},
				Check: resource.TestCheckResourceAttr(addr, "priority", "20"),
			},
			{
				// The state keeps the configured spelling of the masked
				// prefix: no "inconsistent result after apply".
				Config: fromLoopback.String(),
				Check: resource.ComposeAggregateTestCheckFunc(
					resource.TestCheckResourceAttr(addr, "conditions.0.values.0", "127.1.2.3/8"),
					resource.TestCheckResourceAttr(addr, "conditions.0.values.1", "10.9.8.7"),
					func(*terraform.State) error {
						res, err := c.API.GetRoutingRuleWithResponse(context.Background(), id)
						if err != nil || res.JSON200 == nil {
							return fmt.Errorf("GET rule: %v", err)
						}
						if got := res.JSON200.Conditions[0].Values; len(got) != 2 || got[0] != "127.0.0.0/8" || got[1] != "10.9.8.7/32" {
							return fmt.Errorf("the API stores source_ip %v, want [127.0.0.0/8 10.9.8.7/32]", got)
						}
						return nil
					},
					serves(base+"/cidr", "from loopback"),
				),
			},
			{
				// Re-planning and refreshing finds nothing to do.
				Config:   fromLoopback.String(),
				PlanOnly: true,
			},
		},
	})
}

func TestAccRoutingRuleInvalid(t *testing.T) {
	acctest.SkipUnlessAcc(t)
	acctest.PreCheck(t)
	provider := acctest.UnreachableProviderBlock
	valid := config{Provider: provider, ListenerID: "lsn_x", Name: "r", Priority: 1, Action: action{Type: "deny"}}
	step := func(mutate func(*config), want string) resource.TestStep {
		c := valid
		mutate(&c)
		return resource.TestStep{Config: c.String(), PlanOnly: true, ExpectError: regexp.MustCompile(want)}
	}
	resource.ParallelTest(t, resource.TestCase{
		ProtoV6ProviderFactories: acctest.Factories(),
		Steps: []resource.TestStep{
			step(func(c *config) { c.Priority = 0 }, `Attribute priority value must be between 1 and 50000`),
			step(func(c *config) { c.Action.Type = "teleport" }, `Attribute action.type value must be one of`),
			step(func(c *config) { c.Action.Type = "forward" }, `action.forward is required when action.type is "forward"`),
			step(func(c *config) { c.Action = action{Type: "redirect", Redirect: &redirect{Scheme: "https", Code: 304}} }, `Attribute action.redirect.code value must be one of`),
			step(func(c *config) {
				c.Action = action{Type: "redirect", Redirect: &redirect{Scheme: "https", URL: "https://x"}}
			}, `Set exactly one of url, prefix`),
			step(func(c *config) { c.Action = action{Type: "fixed_response", Fixed: &fixed{StatusCode: 100}} }, `Attribute action.fixed_response.status_code value must be between 200`),
			step(func(c *config) { c.Conditions = []condition{{Field: "cookie", Values: []string{"x"}}} }, `key is required for cookie conditions`),
			step(func(c *config) { c.Conditions = []condition{{Field: "uri", Values: []string{"x"}}} }, `Attribute conditions\[0\].field value must be one of`),
		},
	})
}
