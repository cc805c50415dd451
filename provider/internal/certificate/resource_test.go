package certificate_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"text/template"
	"time"

	tfacctest "github.com/hashicorp/terraform-plugin-testing/helper/acctest"
	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/plancheck"
	"github.com/hashicorp/terraform-plugin-testing/terraform"
	"github.com/hashicorp/terraform-plugin-testing/tfjsonpath"

	"github.com/fulcrumlb/fulcrum/internal/teststack"
	"github.com/fulcrumlb/fulcrum/openapi"
	"github.com/fulcrumlb/fulcrum/provider/internal/acctest"
	"github.com/fulcrumlb/fulcrum/provider/internal/certificate"
	"github.com/fulcrumlb/fulcrum/provider/internal/fulcrum"
)

const addr = certificate.ResourceType + ".test"

var tmpl = template.Must(template.New("certificate.tf.tmpl").Funcs(template.FuncMap{"q": strconv.Quote}).
	ParseFiles("testdata/certificate.tf.tmpl"))

// config is what testdata/certificate.tf.tmpl renders.
type config struct {
	Provider    string
	Name        string
	Description string
	Certificate string
	PrivateKey  string
	Labels      map[string]string
}

func (c config) String() string {
	var b strings.Builder
	if err := tmpl.Execute(&b, c); err != nil {
		panic(err)
	}
	return b.String()
}

// selfSigned returns a fresh ECDSA P-256 certificate for host and its key, as PEM.
func selfSigned(t *testing.T, host string) (certPEM, keyPEM string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: host},
		DNSNames:     []string{host},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}))
}

func client(t *testing.T, s *teststack.Stack) *fulcrum.Client {
	t.Helper()
	c, err := fulcrum.NewClient(s.Endpoint, s.TenantToken, "acctest")
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// checkDestroy asks the API for every certificate left in state.
func checkDestroy(c *fulcrum.Client) resource.TestCheckFunc {
	return func(st *terraform.State) error {
		for _, rs := range st.RootModule().Resources {
			if rs.Type != certificate.ResourceType {
				continue
			}
			res, err := c.API.GetCertificateWithResponse(context.Background(), rs.Primary.ID)
			if err != nil {
				return err
			}
			if res.StatusCode() != http.StatusNotFound {
				return fmt.Errorf("certificate %s still exists (GET answered %d)", rs.Primary.ID, res.StatusCode())
			}
		}
		return nil
	}
}

func TestAccCertificate(t *testing.T) {
	skipUnlessAcc(t)
	s := acctest.Stack(t)
	c := client(t, s)
	cert1, key1 := selfSigned(t, "www.example.com")
	cert2, key2 := selfSigned(t, "api.example.com")
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
	skipUnlessAcc(t)
	acctest.PreCheck(t)
	provider := "provider \"fulcrum\" {\n  endpoint = \"http://127.0.0.1:1\"\n  token    = \"unused\"\n}\n"
	cert, key := selfSigned(t, "www.example.com")
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
