package certificate_test

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
	"github.com/hashicorp/terraform-plugin-testing/tfjsonpath"

	"github.com/fulcrumlb/fulcrum/internal/testcerts"
	"github.com/fulcrumlb/fulcrum/openapi"
	"github.com/fulcrumlb/fulcrum/provider/internal/acctest"
	"github.com/fulcrumlb/fulcrum/provider/internal/certificate"
	"github.com/fulcrumlb/fulcrum/provider/internal/fulcrum"
)

const addr = certificate.ResourceType + ".test"

var tmpl = acctest.Template("testdata/certificate.tf.tmpl")

// config is what testdata/certificate.tf.tmpl renders.
type config struct {
	Provider    string
	Name        string
	Description string
	Certificate string
	PrivateKey  string
	Labels      map[string]string
}

func (c config) String() string { return acctest.Render(tmpl, c) }

// checkDestroy asks the API for every certificate left in state.
func checkDestroy(c *fulcrum.Client) resource.TestCheckFunc {
	return acctest.CheckDestroyed(certificate.ResourceType, "certificate", c.API.GetCertificateWithResponse)
}

func TestAccCertificate(t *testing.T) {
	acctest.SkipUnlessAcc(t)
	s := acctest.Stack(t)
	c := acctest.Client(t, s, s.TenantToken)
	cert1, key1 := testcerts.SelfSigned(t, "www.example.com")
	cert2, key2 := testcerts.SelfSigned(t, "api.example.com")
	name := tfacctest.RandomWithPrefix("cert")
	first := config{Provider: acctest.ProviderBlock(s, s.TenantToken), Name: name, Certificate: cert1, PrivateKey: key1,
		Labels: map[string]string{"env": "test"}}
	rotated := first
	rotated.Name, rotated.Description, rotated.Certificate, rotated.PrivateKey = name+"-2", "rotated", cert2, key2
	rotated.Labels = map[string]string{"env": "test", "team": "web"}

	var id, fingerprint string
	resource.ParallelTest(t, resource.TestCase{
		ProtoV6ProviderFactories: acctest.Factories(),
		CheckDestroy:             checkDestroy(c),
		Steps: []resource.TestStep{
			{
				Config: first.String(),
				Check: resource.ComposeAggregateTestCheckFunc(
					resource.TestCheckResourceAttrWith(addr, "id", func(v string) error {
						if !strings.HasPrefix(v, "cert_") {
							return fmt.Errorf("id %q is not a certificate id", v)
						}
						id = v
						return nil
					}),
					resource.TestCheckResourceAttr(addr, "name", name),
					resource.TestCheckResourceAttr(addr, "description", ""),
					resource.TestCheckResourceAttr(addr, "labels.env", "test"),
					resource.TestCheckResourceAttr(addr, "certificate", cert1),
					resource.TestCheckResourceAttr(addr, "private_key", key1),
					resource.TestCheckResourceAttr(addr, "subject", "CN=www.example.com"),
					resource.TestCheckResourceAttr(addr, "dns_names.#", "1"),
					resource.TestCheckResourceAttr(addr, "dns_names.0", "www.example.com"),
					resource.TestCheckResourceAttr(addr, "key_type", "ecdsa-p256"),
					resource.TestCheckResourceAttrSet(addr, "not_before"),
					resource.TestCheckResourceAttrSet(addr, "not_after"),
					resource.TestCheckResourceAttrWith(addr, "fingerprint_sha256", func(v string) error {
						if v == "" {
							return fmt.Errorf("empty fingerprint")
						}
						fingerprint = v
						return nil
					}),
				),
			},
			{
				ResourceName:            addr,
				ImportState:             true,
				ImportStateVerify:       true,
				ImportStateVerifyIgnore: []string{"private_key"},
			},
			{
				Config: rotated.String(),
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectResourceAction(addr, plancheck.ResourceActionUpdate),
					plancheck.ExpectUnknownValue(addr, tfjsonpath.New("fingerprint_sha256")),
				}},
				Check: resource.ComposeAggregateTestCheckFunc(
					resource.TestCheckResourceAttr(addr, "name", name+"-2"),
					resource.TestCheckResourceAttr(addr, "description", "rotated"),
					resource.TestCheckResourceAttr(addr, "labels.%", "2"),
					resource.TestCheckResourceAttr(addr, "subject", "CN=api.example.com"),
					resource.TestCheckResourceAttr(addr, "dns_names.0", "api.example.com"),
					resource.TestCheckResourceAttr(addr, "private_key", key2),
					resource.TestCheckResourceAttrWith(addr, "fingerprint_sha256", func(v string) error {
						if v == fingerprint {
							return fmt.Errorf("fingerprint did not change with the certificate")
						}
						return nil
					}),
				),
			},
			{
				// Out-of-band changes are drift; the key (never returned) is not.
				PreConfig: func() {
					desc := "changed behind Terraform's back"
					res, err := c.API.UpdateCertificateWithResponse(context.Background(), id, nil, openapi.CertificateUpdate{Description: &desc})
					if err != nil || res.StatusCode() != http.StatusOK {
						t.Fatalf("out-of-band update: %v %d %s", err, res.StatusCode(), res.Body)
					}
				},
				Config: rotated.String(),
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectResourceAction(addr, plancheck.ResourceActionUpdate),
				}},
				Check: resource.TestCheckResourceAttr(addr, "description", "rotated"),
			},
			{
				// A certificate deleted behind Terraform's back is planned again.
				PreConfig: func() {
					res, err := c.API.DeleteCertificateWithResponse(context.Background(), id, nil)
					if err != nil || res.StatusCode() >= 300 {
						t.Fatalf("out-of-band delete: %v %d %s", err, res.StatusCode(), res.Body)
					}
				},
				Config: rotated.String(),
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectResourceAction(addr, plancheck.ResourceActionCreate),
				}},
			},
		},
	})
}

func TestAccCertificateInvalid(t *testing.T) {
	acctest.SkipUnlessAcc(t)
	acctest.PreCheck(t)
	provider := acctest.UnreachableProviderBlock
	cert, key := testcerts.SelfSigned(t, "www.example.com")
	resource.ParallelTest(t, resource.TestCase{
		ProtoV6ProviderFactories: acctest.Factories(),
		Steps: []resource.TestStep{
			{
				Config:      config{Provider: provider, Name: "x", Certificate: "not a certificate", PrivateKey: key}.String(),
				PlanOnly:    true,
				ExpectError: regexp.MustCompile(`Attribute certificate must be PEM`),
			},
			{
				Config:      config{Provider: provider, Name: "x", Certificate: cert, PrivateKey: "secret"}.String(),
				PlanOnly:    true,
				ExpectError: regexp.MustCompile(`Attribute private_key must be PEM`),
			},
			{
				Config:      config{Provider: provider, Name: "x", Certificate: cert, PrivateKey: key, Labels: map[string]string{"Bad Key": "v"}}.String(),
				PlanOnly:    true,
				ExpectError: regexp.MustCompile(`Attribute labels`),
			},
		},
	})
}
