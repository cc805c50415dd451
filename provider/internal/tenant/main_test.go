package tenant_test

import (
	"testing"

	"github.com/fulcrumlb/fulcrum/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }
