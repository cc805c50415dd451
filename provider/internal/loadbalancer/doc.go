// Package loadbalancer is the fulcrum_load_balancer resource and the
// fulcrum_load_balancer / fulcrum_load_balancers data sources: a VIP on a
// node group, the root of every listener, pool and member.
//
// It imports only the framework, the generated API client and
// provider/internal/fulcrum.
package loadbalancer
