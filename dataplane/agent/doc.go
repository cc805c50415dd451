// Package agent is Fulcrum's dataplane agent: it registers its node, long-polls
// the API for snapshots, realizes each with HAProxy (render, `haproxy -c`,
// atomic swap, hitless reload — or runtime-API changes when only members
// changed), keeps serving the last good snapshot from disk while the control
// plane is away, and reports what it applied, member health and counters.
package agent
