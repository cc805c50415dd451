// Package pool is the fulcrum_pool resource and data source: a set of
// members behind a load balancer, with its balancing algorithm, session
// persistence, health monitor and retry behaviour.
//
// It imports only the framework, the generated API client and
// provider/internal/fulcrum.
package pool
