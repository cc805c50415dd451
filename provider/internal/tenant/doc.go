// Package tenant is the fulcrum_tenant resource (admin token): a tenant and
// its quotas. Tenants have no provisioning status, so nothing waits.
//
// It imports only the framework, the generated API client and
// provider/internal/fulcrum.
package tenant
