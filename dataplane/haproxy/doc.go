// Package haproxy realizes a node's Config with HAProxy 2.6: it renders the
// typed model to a configuration file (text/template, every user value
// validated by the API and escaped here), checks candidates with `haproxy -c`,
// supervises one master-worker HAProxy process with hitless reloads, and talks
// to its runtime API for changes that need no reload. It imports nothing of
// Fulcrum's but the standard library.
package haproxy
