// Package openapi holds Fulcrum's API document (openapi.yaml), the single source of
// truth for the HTTP API, and the code generated from it by oapi-codegen: the types,
// the echo strict-server interface the API implements, and the Go client the
// Terraform provider and the agent use. Regenerate with `make generate`; never edit
// openapi.gen.go by hand.
//
// Imports: nothing of Fulcrum's outside openapi/: the API, the agent and the
// provider all import it. internal/importrules enforces this.
package openapi

import _ "embed"

//go:generate go run -modfile=../tools/go.mod github.com/oapi-codegen/oapi-codegen/v2/cmd/oapi-codegen -config oapi-codegen.yaml openapi.yaml

// Document is openapi.yaml, served at GET /openapi.yaml.
//
//go:embed openapi.yaml
var Document []byte
