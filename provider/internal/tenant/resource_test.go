package tenant_test

import (
	"context"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"

	tfacctest "github.com/hashicorp/terraform-plugin-testing/helper/acctest"
	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/plancheck"

	"github.com/fulcrumlb/fulcrum/openapi"
	"github.com/fulcrumlb/fulcrum/provider/internal/acctest"
	"github.com/fulcrumlb/fulcrum/provider/internal/fulcrum"
	"github.com/fulcrumlb/fulcrum/provider/internal/tenant"
)

const addr = tenant.ResourceType + ".test"

var tmpl = acctest.Template("testdata/tenant.tf.tmpl")

// config is what testdata/tenant.tf.tmpl renders.
type config struct {
	Provider    string
	Name        string
	Description string
	Labels      map[string]string
	Quotas      map[string]int
}

func (c config) String() string { return acctest.Render(tmpl, c) }

// checkDestroy asks the API for every tenant left in state.
func checkDestroy(c *fulcrum.Client) resource.TestCheckFunc {
	return acctest.CheckDestroyed(tenant.ResourceType, "tenant", c.API.GetTenantWithResponse)
}

func TestAccTenant(t *testing.T) {
	acctest.SkipUnlessAcc(t)
	s := acctest.Stack(t)
	c := acctest.Client(t, s, s.AdminToken)
	name := tfacctest.RandomWithPrefix("tenant")
	first := config{Provider: acctest.ProviderBlock(s, s.AdminToken), Name: name}
	second := first
	second.Name, second.Description = name+"-2", "updated"
	second.Labels = map[string]string{"tier": "gold"}
	second.Quotas = map[string]int{"load_balancers": 3, "certificates": 0}

	var id string
	resource.ParallelTest(t, resource.TestCase{
		ProtoV6ProviderFactories: acctest.Factories(),
		CheckDestroy:             checkDestroy(c),
		Steps: []resource.TestStep{
			{
				Config: first.String(),
				Check: resource.ComposeAggregateTestCheckFunc(
					resource.TestCheckResourceAttrWith(addr, "id", func(v string) error {
						if !strings.HasPrefix(v, "tnt_") {
							return fmt.Errorf("id %q is not a tenant id", v)
						}
						id = v
						return nil
					}),
					resource.TestCheckResourceAttr(addr, "name", name),
					resource.TestCheckResourceAttr(addr, "description", ""),
					resource.TestCheckResourceAttr(addr, "labels.%", "0"),
					resource.TestCheckResourceAttr(addr, "quotas.load_balancers", "10"),
					resource.TestCheckResourceAttr(addr, "quotas.listeners", "50"),
					resource.TestCheckResourceAttr(addr, "quotas.pools", "50"),
					resource.TestCheckResourceAttr(addr, "quotas.members", "500"),
					resource.TestCheckResourceAttr(addr, "quotas.routing_rules", "500"),
					resource.TestCheckResourceAttr(addr, "quotas.certificates", "50"),
				),
			},
			{
				ResourceName:      addr,
				ImportState:       true,
				ImportStateVerify: true,
			},
			{
				Config: second.String(),
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectResourceAction(addr, plancheck.ResourceActionUpdate),
				}},
				Check: resource.ComposeAggregateTestCheckFunc(
					resource.TestCheckResourceAttrPtr(addr, "id", &id),
					resource.TestCheckResourceAttr(addr, "name", name+"-2"),
					resource.TestCheckResourceAttr(addr, "description", "updated"),
					resource.TestCheckResourceAttr(addr, "labels.tier", "gold"),
					resource.TestCheckResourceAttr(addr, "quotas.load_balancers", "3"),
					resource.TestCheckResourceAttr(addr, "quotas.certificates", "0"),
					resource.TestCheckResourceAttr(addr, "quotas.listeners", "50"),
				),
			},
			{
				// Quotas changed behind Terraform's back are drift.
				PreConfig: func() {
					lbs := 99
					res, err := c.API.UpdateTenantWithResponse(context.Background(), id, nil, openapi.TenantUpdate{Quotas: &openapi.Quotas{LoadBalancers: &lbs}})
					if err != nil || res.StatusCode() != http.StatusOK {
						t.Fatalf("out-of-band update: %v %v", err, res)
					}
				},
				Config: second.String(),
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectResourceAction(addr, plancheck.ResourceActionUpdate),
				}},
				Check: resource.TestCheckResourceAttr(addr, "quotas.load_balancers", "3"),
			},
			{
				// A tenant deleted behind Terraform's back is planned again.
				PreConfig: func() {
					res, err := c.API.DeleteTenantWithResponse(context.Background(), id, nil)
					if err != nil || res.StatusCode() != http.StatusNoContent {
						t.Fatalf("out-of-band delete: %v %v", err, res)
					}
				},
				Config: second.String(),
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectResourceAction(addr, plancheck.ResourceActionCreate),
				}},
			},
		},
	})
}

func TestAccTenantInvalid(t *testing.T) {
	acctest.SkipUnlessAcc(t)
	acctest.PreCheck(t)
	provider := acctest.UnreachableProviderBlock
	resource.ParallelTest(t, resource.TestCase{
		ProtoV6ProviderFactories: acctest.Factories(),
		Steps: []resource.TestStep{
			{
				Config:      config{Provider: provider, Name: "x", Quotas: map[string]int{"load_balancers": -1}}.String(),
				PlanOnly:    true,
				ExpectError: regexp.MustCompile(`Attribute quotas.load_balancers value must be between 0 and 100000`),
			},
			{
				Config:      config{Provider: provider, Name: ""}.String(),
				PlanOnly:    true,
				ExpectError: regexp.MustCompile(`Attribute name string length must be between 1 and 255`),
			},
			{
				Config:      config{Provider: provider, Name: " padded"}.String(),
				PlanOnly:    true,
				ExpectError: regexp.MustCompile(`Attribute name must not start or end with whitespace`),
			},
		},
	})
}
