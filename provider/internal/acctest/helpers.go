package acctest

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"text/template"

	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/terraform"

	"github.com/fulcrumlb/fulcrum/internal/teststack"
	"github.com/fulcrumlb/fulcrum/openapi"
	"github.com/fulcrumlb/fulcrum/provider/internal/fulcrum"
)

// UnreachableProviderBlock configures the provider with an endpoint nothing
// listens on, for tests that fail at plan time and need no API.
const UnreachableProviderBlock = "provider \"fulcrum\" {\n  endpoint = \"http://127.0.0.1:1\"\n  token    = \"unused\"\n}\n"

// SkipUnlessAcc skips an acceptance test before it starts a stack (which
// resource.ParallelTest would only skip afterwards).
func SkipUnlessAcc(t *testing.T) {
	t.Helper()
	if os.Getenv(resource.EnvTfAcc) == "" {
		t.Skipf("acceptance test: set %s=1", resource.EnvTfAcc)
	}
}

// Client is an API client for s sending token, for a test's own calls
// (out-of-band changes, parents the test does not manage, CheckDestroyed).
func Client(t *testing.T, s *teststack.Stack, token string) *fulcrum.Client {
	t.Helper()
	c, err := fulcrum.NewClient(s.Endpoint, token, "acctest")
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// CheckDestroyed asks the API, with get (such as c.API.GetPoolWithResponse),
// for every object of resourceType left in state: each must read as 404.
// kind names the object in messages ("pool").
func CheckDestroyed[R interface{ StatusCode() int }](resourceType, kind string,
	get func(ctx context.Context, id string, reqEditors ...openapi.RequestEditorFn) (R, error)) resource.TestCheckFunc {
	return func(st *terraform.State) error {
		for _, rs := range st.RootModule().Resources {
			if rs.Type != resourceType {
				continue
			}
			res, err := get(context.Background(), rs.Primary.ID)
			if err != nil {
				return err
			}
			if res.StatusCode() != http.StatusNotFound {
				return fmt.Errorf("%s %s still exists (GET answered %d)", kind, rs.Primary.ID, res.StatusCode())
			}
		}
		return nil
	}
}

// CaptureID stores the id of the resource at address for later steps.
func CaptureID(address string, id *string) resource.TestCheckFunc {
	return func(st *terraform.State) error {
		rs, ok := st.RootModule().Resources[address]
		if !ok {
			return fmt.Errorf("%s not in state", address)
		}
		*id = rs.Primary.ID
		return nil
	}
}

// Template parses a configuration template such as testdata/rule.tf.tmpl;
// `q` in it quotes a string for HCL.
func Template(file string) *template.Template {
	return template.Must(template.New(filepath.Base(file)).Funcs(template.FuncMap{"q": strconv.Quote}).ParseFiles(file))
}

// Render executes tmpl with data. A template that does not fit its data is
// the test's own bug: Render panics.
func Render(tmpl *template.Template, data any) string {
	var b strings.Builder
	if err := tmpl.Execute(&b, data); err != nil {
		panic(err)
	}
	return b.String()
}
