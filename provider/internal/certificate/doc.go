// Package certificate is the fulcrum_certificate resource: a tenant's PEM
// chain and private key, used by https listeners. The API never returns the
// key, so the resource keeps the configured key in state and never compares
// it with the API.
//
// It imports only the framework, the generated API client and
// provider/internal/fulcrum.
package certificate
