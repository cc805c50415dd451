// Package api is Fulcrum's HTTP API: the echo server, the handlers implementing
// the strict-server interface generated from openapi/openapi.yaml, and the
// conversions between store rows and API types. Authentication lives in
// api/auth, tenancy in api/store, validation in api/validate and api/reqcheck.
//
// The API runs no SQL: it calls api/store, which owns every statement and
// transaction and answers with its own errors (store.ErrNotFound,
// store.ErrConflict, …). Handlers return those as they are; the one error
// writer (Server.handleError, through storeProblem in storeerrors.go) maps
// them to problem+json.
//
// Imports: the control plane does not depend on its client. Neither api nor
// any package under it imports the dataplane agent (dataplane/agent) or
// keepalived (dataplane/keepalived); what the dry run needs of the dataplane
// (the snapshot → HAProxy model conversion, rendering, `haproxy -c`) lives in
// packages the agent and the API both import. It never imports the provider,
// internal/cli or the test stacks either. internal/importrules enforces this.
package api
