// Package openapi holds Fulcrum's API document (openapi.yaml), the single source of
// truth for the HTTP API, and the code generated from it by oapi-codegen: the types,
// the echo strict-server interface the API implements, and the Go client the
// Terraform provider and the agent use, and limits.gen.go: the document's limits and
// defaults (minimum, maximum, maxLength, maxItems, default, …) as constants, which the
// API, the agent and the provider use instead of repeating the numbers. Regenerate
// with `make generate`; never edit the .gen.go files by hand.
//
// Imports: nothing of Fulcrum's outside openapi/: the API, the agent and the
// provider all import it. internal/importrules enforces this.
package openapi

import _ "embed"

//go:generate go run -modfile=../tools/go.mod github.com/oapi-codegen/oapi-codegen/v2/cmd/oapi-codegen -config oapi-codegen.yaml openapi.yaml
//go:generate go run ./internal/genlimits -in openapi.yaml -out limits.gen.go

// Document is openapi.yaml, served at GET /openapi.yaml.
//
//go:embed openapi.yaml
var Document []byte
