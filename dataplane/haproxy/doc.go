// Package haproxy realizes a node's Config with HAProxy 2.6: it renders the
// typed model to a configuration file (one file per section: global.go,
// frontend.go, rules.go, acl.go, tls.go, backend.go; every user value
// validated by the API and escaped here) and records where each line comes
// from (origin.go), checks candidates with `haproxy -c`, supervises one
// master-worker HAProxy process with hitless reloads (process*.go), and talks
// to its runtime API for changes that need no reload. It imports nothing of
// Fulcrum's but the standard library.
package haproxy
