// Package store is Fulcrum's Postgres store: the only state of the control plane.
// Every query on a tenant's objects takes the tenant id (see Tenant), so tenancy is
// enforced here and nowhere else; pgx.ErrNoRows becomes ErrNotFound here and
// nowhere else.
//
// Imports: the store does not speak HTTP. It never imports the API (api), its
// HTTP vocabulary (api/problem, api/auth, api/reqcheck) or echo: it returns its
// own sentinel errors (ErrNotFound, ErrConflict, …), which the API maps to
// problem+json in its one error writer. Nor does it import the dataplane or the
// provider. It may import api/validate, migrations and internal helpers.
// internal/importrules enforces this.
package store
