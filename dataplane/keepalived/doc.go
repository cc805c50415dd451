// Package keepalived runs Debian's keepalived as the agent's child so a node
// group's VIPs are held by its healthy nodes through VRRP: the config is
// rendered from the snapshot's VIPs, VIPs are spread over the nodes (one VRRP
// instance per VIP bucket, priorities from a rendezvous hash of node and
// router id, so each bucket has one preferred owner and the buckets spread
// over the group; ranked over the group's nodes through rank files, so no two
// nodes share a priority, see RankedPriority), a node claims VIPs only while
// the agent says it is ready
// (HAProxy answers on its stats socket, a snapshot is applied, the node is not
// draining), and the holder of a VIP keeps it (nopreempt and a holder bonus,
// see Render).
//
// Imports: it knows neither snapshots nor HAProxy: the agent hands it
// settings, addresses and a health check. It never imports openapi, the other
// dataplane packages, the API or the provider; of Fulcrum's it imports
// internal helpers only. internal/importrules enforces this.
package keepalived
