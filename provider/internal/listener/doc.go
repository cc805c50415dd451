// Package listener is the fulcrum_listener resource: a protocol and port on a
// load balancer's VIP, with its default pool, TLS certificates, access lists,
// limits, timeouts and HTTP options.
//
// The API's `timeouts` object is the schema's `connection_timeouts`, because
// `timeouts` is the block that says how long Terraform waits.
//
// It imports only the framework, the generated API client and
// provider/internal/fulcrum.
package listener
