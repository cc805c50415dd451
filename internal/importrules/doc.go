// Package importrules holds the test that enforces the import rules the
// packages' doc comments state (api/doc.go, api/store/store.go,
// dataplane/agent/doc.go, dataplane/haproxy/doc.go,
// dataplane/keepalived/doc.go, provider/doc.go, openapi/doc.go and the
// internal packages' comments): the control plane never imports the agent, the
// dataplane never imports the control plane, the store speaks no HTTP, the
// provider knows the API only through openapi, leaf helpers import nothing of
// Fulcrum's, and no program depends on a test stack.
//
// The test reads the import graph with `go list -deps -json` (production
// code only: tests may import what they need) and fails naming the package,
// the forbidden dependency, the chain of imports that leads to it and the
// doc comment stating the rule.
//
// Imports: it has no code outside its test.
package importrules
