package teststack

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// binary is the fulcrum program built for this test binary (FulcrumBinary).
type binary struct {
	once sync.Once
	path string
	err  error
}

var built binary

// FulcrumBinary builds cmd/fulcrum of this checkout once per test binary,
// for tests that run the API or the agent as processes of their own, and
// returns its path: bin/test-<package>/fulcrum below the module root, so
// that test binaries of different packages running at once never write the
// same file and a run leaves nothing behind but what the next run replaces.
func FulcrumBinary(tb testing.TB) string {
	tb.Helper()
	built.once.Do(func() { built.path, built.err = buildFulcrum() })
	if built.err != nil {
		tb.Fatal(built.err)
	}
	return built.path
}

func buildFulcrum() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("teststack: build fulcrum: %w", err)
	}
	root := wd
	for {
		if _, err := os.Stat(filepath.Join(root, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(root)
		if parent == root {
			return "", fmt.Errorf("teststack: build fulcrum: no go.mod above %s", wd)
		}
		root = parent
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = "/usr/local/go/bin/go"
	}
	out := filepath.Join(root, "bin", "test-"+filepath.Base(wd), "fulcrum")
	cmd := exec.Command(goBin, "build", "-o", out, "./cmd/fulcrum")
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("teststack: go build ./cmd/fulcrum: %w\n%s", err, b)
	}
	return out, nil
}
