// Package agent is Fulcrum's dataplane agent: it registers its node, long-polls
// the API for snapshots, realizes each with HAProxy (render, `haproxy -c`,
// atomic swap, hitless reload — or runtime-API changes when only members
// changed), keeps serving the last good snapshot from disk while the control
// plane is away, and reports what it applied, member health and counters.
//
// Failure containment. One tenant's load balancer cannot take the node's
// other tenants down: a load balancer that `haproxy -c` rejects, that has a
// new VIP:port another process holds (a test bind with HAProxy's socket
// options, before any reload), or that a reload or start fails with (HAProxy
// names its frontend, backend or bind address; when it names nothing the
// changed load balancers are bisected) stays at its last good version — or
// out, when new — and is reported with HAProxy's message, the object and the
// field; everything else applies in the same round. A version that failed is
// not tried again until it changes (a failed reload pauses every listener);
// failures that may pass by themselves (a port freed, a state dir writable
// again) are retried on a backing-off tick that costs no reload until they
// pass. Node-level failures (disk, haproxy_start, reload, config) are reported
// in every report until resolved.
//
// State on disk (<state-dir>): snapshot.json holds the last snapshot applied
// without private keys, the load balancers exactly as HAProxy serves them and
// their errors, so a restart serves what was served before; certs/<id>.pem
// (0600) hold certificates with their keys, and are removed with their
// certificate. A certificate whose content changes is handed to HAProxy with
// `set ssl cert`/`commit ssl cert`, without a reload.
//
// Reports cost what changed (issue 10). A heartbeat reads the frontends'
// rows first (`show stat -1 1 -1`): unchanged since the last read and no
// health checks ⇒ nothing to read or send, and the next four heartbeats
// read nothing; traffic through a few load balancers ⇒ only their
// frontends' and pools' rows (`show stat <name> -1 -1`); otherwise, and at
// least every five minutes, everything — in pieces of a few load balancers'
// proxies, paced, so that HAProxy's worker never writes it in one go while
// it serves (wholeread.go). The report after
// an apply that changed pools through the runtime API reads those pools only.
// A reload first keeps the old worker's counts, reading only the load
// balancers whose frontends moved since their counters were read (after a
// reload the agent did not make: those with counts in the new worker), and
// saves the server state of pools with health checks only (HAProxy takes
// every other server from the configuration).
// Models, rendered sections and snapshot.json's encoding are kept per load
// balancer by revision (or identity), so an apply among 1,000 load balancers
// converts, renders and encodes only the ones that changed.
//
// HAProxy's roles. Apply asks HAProxy for four things, each a small interface
// (roles.go) the dataplane/haproxy types implement: a checker (`haproxy -c`
// of a candidate), a reloader (a reload through the master CLI, confirmed), a
// runtime API (member changes, `set ssl cert`) and a binder (can a new
// VIP:port be bound). New wires the real ones; unit tests put fakes in their
// place.
//
// Imports: the dataplane does not depend on the control plane. Neither the
// agent nor any package under dataplane imports api or a package under it
// (the agent knows the API only through openapi's client and types), the
// provider, internal/cli or the test stacks. internal/importrules enforces
// this.
package agent
