// Package acctest is what the provider's acceptance tests share: the
// in-process provider factories, a real Fulcrum stack per test (Postgres, API,
// agent, HAProxy — internal/teststack) and the provider block pointing at it.
// Acceptance tests run when TF_ACC=1 (make test and make testacc set it) with
// the terraform CLI from TF_ACC_TERRAFORM_PATH or PATH.
package acctest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"

	"github.com/hashicorp/terraform-plugin-go/tfprotov6"
	"go.opentelemetry.io/otel"

	"github.com/fulcrumlb/fulcrum/internal/teststack"
	"github.com/fulcrumlb/fulcrum/provider"
)

// Factories serves the provider in-process to the terraform CLI, its
// operation spans made by the global tracer provider.
func Factories() map[string]func() (tfprotov6.ProviderServer, error) {
	return map[string]func() (tfprotov6.ProviderServer, error){
		"fulcrum": provider.NewServer("test", otel.GetTracerProvider()),
	}
}

var envOnce sync.Once

// PreCheck makes sure a terraform CLI is available and configured offline.
// It sets process-wide environment once (t.Setenv would forbid parallel tests);
// `make test` and `make testacc` set the same variables themselves.
func PreCheck(t *testing.T) {
	t.Helper()
	envOnce.Do(func() {
		if os.Getenv("TF_ACC_TERRAFORM_PATH") == "" {
			if p, err := exec.LookPath("terraform"); err == nil {
				os.Setenv("TF_ACC_TERRAFORM_PATH", p)
			} else if p := repoBin("terraform"); p != "" {
				os.Setenv("TF_ACC_TERRAFORM_PATH", p)
			}
		}
		if os.Getenv("TF_CLI_CONFIG_FILE") == "" {
			os.Setenv("TF_CLI_CONFIG_FILE", os.DevNull)
		}
	})
	if os.Getenv("TF_ACC_TERRAFORM_PATH") == "" {
		t.Fatal("no terraform CLI: put one on PATH or run `make terraform` (builds bin/terraform)")
	}
}

// repoBin finds bin/<name> at the repository root.
func repoBin(name string) string {
	_, file, _, _ := runtime.Caller(0)
	p := filepath.Join(filepath.Dir(file), "..", "..", "..", "bin", name)
	if _, err := os.Stat(p); err == nil {
		return p
	}
	return ""
}

// Stack starts a whole Fulcrum stack with one agent for the test. Its API
// checks dry runs with haproxy -c, as `fulcrum api` does by default.
func Stack(t *testing.T) *teststack.Stack {
	t.Helper()
	return StackWith(t, teststack.Options{HAProxy: "haproxy"})
}

// StackWith starts a stack of o with one agent for the test.
func StackWith(t *testing.T, o teststack.Options) *teststack.Stack {
	t.Helper()
	PreCheck(t)
	s := teststack.Start(t, o)
	s.StartAgent("node-1")
	return s
}

// ProviderBlock configures the provider for s with token.
func ProviderBlock(s *teststack.Stack, token string) string {
	return fmt.Sprintf("provider \"fulcrum\" {\n  endpoint = %q\n  token    = %q\n}\n", s.Endpoint, token)
}
