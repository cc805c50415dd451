// Package nodegroup is the fulcrum_node_group resource (admin token): a group
// of dataplane nodes and the VIP range its load balancers are allocated from.
// Node groups have no provisioning status, so nothing waits.
//
// It imports only the framework, the generated API client and
// provider/internal/fulcrum.
package nodegroup
