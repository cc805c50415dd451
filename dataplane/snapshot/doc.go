// Package snapshot turns a snapshot of the API (openapi.Snapshot) into the
// HAProxy model (dataplane/haproxy) and writes its certificates as the PEM
// bundles that model names: the one conversion both the agent (applying a
// snapshot) and the API's dry run (checking one load balancer with
// `haproxy -c` before storing it) use. Of Fulcrum's packages it imports
// openapi, dataplane/haproxy and internal/atomicfile only: never the agent
// nor anything of the API.
package snapshot
