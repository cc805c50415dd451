// Package snapshot builds what a node group's agents serve: the snapshot a
// node long-polls (GET /v1/nodes/{id}/snapshot), and one load balancer's part
// of it for a dry run. It reads through api/store only, in the transaction it
// is given: store.ReadSnapshot's repeatable-read one for a node, so the
// snapshot is consistent at one revision, or a dry run's write transaction,
// which sees its own changes.
//
// A snapshot is the group's part, the same for every node of the group at a
// revision (Group), plus what is the node's own: its admin state and the
// trace contexts of the writes since the revision it holds (ForNode). The
// group's part depends on (group, revision) alone and ForNode never changes
// it (it adds the node's part to a shallow copy), so it can be built once
// per (group, revision) and shared by every poller of the group: Cache
// (cache.go) does so, keeping each group's newest part decoded, JSON-encoded
// and gzip-compressed, and merges the node's part when a node's snapshot is
// encoded.
//
// Of Fulcrum's packages it imports api/store and openapi only: never api
// (which imports it) nor anything of the dataplane. The conversion of a
// snapshot to HAProxy's model is the dataplane's (dataplane/snapshot).
package snapshot
