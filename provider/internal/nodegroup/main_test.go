package nodegroup_test

import (
	"os"
	"os/exec"
	"testing"

	"github.com/hashicorp/terraform-plugin-testing/helper/resource"

	"github.com/fulcrumlb/fulcrum/internal/pgtest"
)

func TestMain(m *testing.M) {
	// acctest.PreCheck fills these in with t.Setenv, which parallel tests
	// must not call; set them once for the whole process instead.
	if os.Getenv("TF_ACC_TERRAFORM_PATH") == "" {
		if p, err := exec.LookPath("terraform"); err == nil {
			os.Setenv("TF_ACC_TERRAFORM_PATH", p)
		}
	}
	if os.Getenv("TF_CLI_CONFIG_FILE") == "" {
		os.Setenv("TF_CLI_CONFIG_FILE", os.DevNull)
	}
	pgtest.Main(m)
}

// skipUnlessAcc skips an acceptance test before it starts a stack (which
// resource.ParallelTest would only skip afterwards).
func skipUnlessAcc(t *testing.T) {
	t.Helper()
	if os.Getenv(resource.EnvTfAcc) == "" {
		t.Skipf("acceptance test: set %s=1", resource.EnvTfAcc)
	}
}
