//go:build tools

// Package tools pins the code generators used by `make generate`, kept out of
// the main module so their dependencies do not leak into it.
package tools

import (
	_ "github.com/hashicorp/terraform-plugin-docs/cmd/tfplugindocs"
	_ "github.com/oapi-codegen/oapi-codegen/v2/cmd/oapi-codegen"
)
