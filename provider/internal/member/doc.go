// Package member is the fulcrum_member resource: one backend server (an IP
// address or DNS name and a port) in a pool, with its weight and state.
//
// It imports only the framework, the generated API client and
// provider/internal/fulcrum.
package member
