package nodegroup_test

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
	"github.com/fulcrumlb/fulcrum/provider/internal/nodegroup"
)

const addr = nodegroup.ResourceType + ".test"

var tmpl = acctest.Template("testdata/node_group.tf.tmpl")

// config is what testdata/node_group.tf.tmpl renders.
type config struct {
	Provider    string
	Name        string
	VIPRange    string
	Description string
	Labels      map[string]string
	// ReservedPorts are rendered as written (order and all).
	ReservedPorts []int
}

func (c config) String() string { return acctest.Render(tmpl, c) }

// checkDestroy asks the API for every node group left in state.
func checkDestroy(c *fulcrum.Client) resource.TestCheckFunc {
	return acctest.CheckDestroyed(nodegroup.ResourceType, "node group", c.API.GetNodeGroupWithResponse)
}

func TestAccNodeGroup(t *testing.T) {
	acctest.SkipUnlessAcc(t)
	s := acctest.Stack(t)
	c := acctest.Client(t, s, s.AdminToken)
	name := tfacctest.RandomWithPrefix("ng")
	first := config{Provider: acctest.ProviderBlock(s, s.AdminToken), Name: name, VIPRange: "10.77.0.0/24"}
	second := first
	second.Name, second.VIPRange, second.Description = name+"-2", "10.77.0.0/16", "grown"
	second.Labels = map[string]string{"site": "lab"}
	second.ReservedPorts = []int{9100, 9000}
	third := second
	third.ReservedPorts = nil

	var id string
	resource.ParallelTest(t, resource.TestCase{
		ProtoV6ProviderFactories: acctest.Factories(),
		CheckDestroy:             checkDestroy(c),
		Steps: []resource.TestStep{
			{
				Config: first.String(),
				Check: resource.ComposeAggregateTestCheckFunc(
					resource.TestCheckResourceAttrWith(addr, "id", func(v string) error {
						if !strings.HasPrefix(v, "ng_") {
							return fmt.Errorf("id %q is not a node group id", v)
						}
						id = v
						return nil
					}),
					resource.TestCheckResourceAttr(addr, "name", name),
					resource.TestCheckResourceAttr(addr, "vip_range", "10.77.0.0/24"),
					resource.TestCheckResourceAttr(addr, "description", ""),
					resource.TestCheckResourceAttr(addr, "labels.%", "0"),
					resource.TestCheckResourceAttr(addr, "reserved_ports.#", "0"),
					resource.TestCheckResourceAttr(addr, "effective_reserved_ports.#", "4"),
					resource.TestCheckTypeSetElemAttr(addr, "effective_reserved_ports.*", "22"),
					resource.TestCheckTypeSetElemAttr(addr, "effective_reserved_ports.*", "8405"),
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
					resource.TestCheckResourceAttr(addr, "vip_range", "10.77.0.0/16"),
					resource.TestCheckResourceAttr(addr, "description", "grown"),
					resource.TestCheckResourceAttr(addr, "labels.site", "lab"),
					resource.TestCheckResourceAttr(addr, "reserved_ports.#", "2"),
					resource.TestCheckTypeSetElemAttr(addr, "reserved_ports.*", "9000"),
					resource.TestCheckTypeSetElemAttr(addr, "reserved_ports.*", "9100"),
					resource.TestCheckResourceAttr(addr, "effective_reserved_ports.#", "6"),
					resource.TestCheckTypeSetElemAttr(addr, "effective_reserved_ports.*", "9100"),
				),
			},
			{
				// A range changed behind Terraform's back is drift.
				PreConfig: func() {
					r := "10.78.0.0/16"
					res, err := c.API.UpdateNodeGroupWithResponse(context.Background(), id, nil, openapi.NodeGroupUpdate{VipRange: &r})
					if err != nil || res.StatusCode() != http.StatusOK {
						t.Fatalf("out-of-band update: %v %v", err, res)
					}
				},
				Config: second.String(),
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectResourceAction(addr, plancheck.ResourceActionUpdate),
				}},
				Check: resource.TestCheckResourceAttr(addr, "vip_range", "10.77.0.0/16"),
			},
			{
				// Leaving reserved_ports out clears the operator's list.
				Config: third.String(),
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectResourceAction(addr, plancheck.ResourceActionUpdate),
				}},
				Check: resource.ComposeAggregateTestCheckFunc(
					resource.TestCheckResourceAttr(addr, "reserved_ports.#", "0"),
					resource.TestCheckResourceAttr(addr, "effective_reserved_ports.#", "4"),
				),
			},
			{
				// A node group deleted behind Terraform's back is planned again.
				PreConfig: func() {
					res, err := c.API.DeleteNodeGroupWithResponse(context.Background(), id, nil)
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

func TestAccNodeGroupInvalid(t *testing.T) {
	acctest.SkipUnlessAcc(t)
	acctest.PreCheck(t)
	provider := acctest.UnreachableProviderBlock
	resource.ParallelTest(t, resource.TestCase{
		ProtoV6ProviderFactories: acctest.Factories(),
		Steps: []resource.TestStep{
			{
				Config:      config{Provider: provider, Name: "x", VIPRange: "10.0.0.0/33"}.String(),
				PlanOnly:    true,
				ExpectError: regexp.MustCompile(`Attribute vip_range must be a CIDR`),
			},
			{
				Config:      config{Provider: provider, Name: "x", VIPRange: "10.0.0.7/24"}.String(),
				PlanOnly:    true,
				ExpectError: regexp.MustCompile(`Attribute vip_range must be written 10.0.0.0/24`),
			},
			{
				Config:      config{Provider: provider, Name: "x", VIPRange: "10.0.0.0/24", ReservedPorts: []int{0}}.String(),
				PlanOnly:    true,
				ExpectError: regexp.MustCompile(`must be between 1 and 65535`),
			},
		},
	})
}
