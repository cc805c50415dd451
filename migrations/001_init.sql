-- Fulcrum's first schema. Columns hold what the database must enforce (identity,
-- tenancy, parentage, uniqueness, references); each object's remaining settings
-- live in a typed JSONB `spec` the API validates before writing.

-- Every write takes the next revision in the writing transaction; nodes compare
-- revisions, never wall-clock times.
CREATE SEQUENCE revision_seq;

CREATE TABLE tenants (
    id          text PRIMARY KEY,
    name        text NOT NULL,
    description text NOT NULL DEFAULT '',
    labels      jsonb NOT NULL DEFAULT '{}',
    quotas      jsonb NOT NULL,
    version     bigint NOT NULL DEFAULT 1,
    revision    bigint NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX tenants_name_key ON tenants (name);

CREATE TABLE node_groups (
    id          text PRIMARY KEY,
    name        text NOT NULL,
    description text NOT NULL DEFAULT '',
    labels      jsonb NOT NULL DEFAULT '{}',
    vip_range   cidr NOT NULL,
    version     bigint NOT NULL DEFAULT 1,
    revision    bigint NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX node_groups_name_key ON node_groups (name);

CREATE TABLE nodes (
    id               text PRIMARY KEY,
    name             text NOT NULL,
    node_group_id    text NOT NULL REFERENCES node_groups (id),
    description      text NOT NULL DEFAULT '',
    labels           jsonb NOT NULL DEFAULT '{}',
    applied_revision bigint NOT NULL DEFAULT 0,
    status           text NOT NULL DEFAULT 'registered',
    status_message   text NOT NULL DEFAULT '',
    last_seen_at     timestamptz,
    version          bigint NOT NULL DEFAULT 1,
    revision         bigint NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX nodes_name_key ON nodes (name);
CREATE INDEX nodes_node_group_id_idx ON nodes (node_group_id);

CREATE TABLE tokens (
    id            text PRIMARY KEY,
    kind          text NOT NULL CHECK (kind IN ('admin', 'tenant', 'node')),
    tenant_id     text REFERENCES tenants (id) ON DELETE CASCADE,
    node_group_id text REFERENCES node_groups (id) ON DELETE CASCADE,
    name          text NOT NULL DEFAULT '',
    description   text NOT NULL DEFAULT '',
    secret_hash   bytea NOT NULL,
    expires_at    timestamptz,
    last_used_at  timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now(),
    CHECK ((kind = 'tenant') = (tenant_id IS NOT NULL)),
    CHECK (kind = 'node' OR node_group_id IS NULL)
);
CREATE INDEX tokens_tenant_id_idx ON tokens (tenant_id);

-- Dataplane objects share these columns: status, a version (the ETag), the
-- revision of their last write, and deleted_revision once a delete was accepted
-- (the row stays, reading pending_delete, until every node of its group has
-- applied a revision at or past it).
CREATE TABLE load_balancers (
    id                  text PRIMARY KEY,
    tenant_id           text NOT NULL REFERENCES tenants (id),
    name                text NOT NULL DEFAULT '',
    description         text NOT NULL DEFAULT '',
    labels              jsonb NOT NULL DEFAULT '{}',
    node_group_id       text NOT NULL REFERENCES node_groups (id),
    vip_address         inet NOT NULL,
    enabled             boolean NOT NULL DEFAULT true,
    deletion_protection boolean NOT NULL DEFAULT false,
    provisioning_status text NOT NULL DEFAULT 'pending_create',
    operating_status    text NOT NULL DEFAULT 'offline',
    status_message      text NOT NULL DEFAULT '',
    version             bigint NOT NULL DEFAULT 1,
    revision            bigint NOT NULL,
    deleted_revision    bigint,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX load_balancers_name_key ON load_balancers (tenant_id, name) WHERE name <> '' AND deleted_revision IS NULL;
CREATE UNIQUE INDEX load_balancers_vip_address_key ON load_balancers (node_group_id, vip_address) WHERE deleted_revision IS NULL;
CREATE INDEX load_balancers_tenant_id_idx ON load_balancers (tenant_id, id);

CREATE TABLE pools (
    id                  text PRIMARY KEY,
    tenant_id           text NOT NULL REFERENCES tenants (id),
    load_balancer_id    text NOT NULL REFERENCES load_balancers (id) ON DELETE CASCADE,
    name                text NOT NULL DEFAULT '',
    description         text NOT NULL DEFAULT '',
    labels              jsonb NOT NULL DEFAULT '{}',
    protocol            text NOT NULL,
    spec                jsonb NOT NULL,
    provisioning_status text NOT NULL DEFAULT 'pending_create',
    operating_status    text NOT NULL DEFAULT 'offline',
    status_message      text NOT NULL DEFAULT '',
    version             bigint NOT NULL DEFAULT 1,
    revision            bigint NOT NULL,
    deleted_revision    bigint,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX pools_name_key ON pools (load_balancer_id, name) WHERE name <> '' AND deleted_revision IS NULL;
CREATE INDEX pools_tenant_id_idx ON pools (tenant_id, id);
CREATE INDEX pools_load_balancer_id_idx ON pools (load_balancer_id);

CREATE TABLE listeners (
    id                  text PRIMARY KEY,
    tenant_id           text NOT NULL REFERENCES tenants (id),
    load_balancer_id    text NOT NULL REFERENCES load_balancers (id) ON DELETE CASCADE,
    name                text NOT NULL DEFAULT '',
    description         text NOT NULL DEFAULT '',
    labels              jsonb NOT NULL DEFAULT '{}',
    protocol            text NOT NULL,
    port                integer NOT NULL CHECK (port BETWEEN 1 AND 65535),
    default_pool_id     text REFERENCES pools (id),
    spec                jsonb NOT NULL,
    provisioning_status text NOT NULL DEFAULT 'pending_create',
    operating_status    text NOT NULL DEFAULT 'offline',
    status_message      text NOT NULL DEFAULT '',
    version             bigint NOT NULL DEFAULT 1,
    revision            bigint NOT NULL,
    deleted_revision    bigint,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX listeners_port_key ON listeners (load_balancer_id, port) WHERE deleted_revision IS NULL;
CREATE UNIQUE INDEX listeners_name_key ON listeners (load_balancer_id, name) WHERE name <> '' AND deleted_revision IS NULL;
CREATE INDEX listeners_tenant_id_idx ON listeners (tenant_id, id);
CREATE INDEX listeners_load_balancer_id_idx ON listeners (load_balancer_id);
CREATE INDEX listeners_default_pool_id_idx ON listeners (default_pool_id);

CREATE TABLE members (
    id                  text PRIMARY KEY,
    tenant_id           text NOT NULL REFERENCES tenants (id),
    load_balancer_id    text NOT NULL REFERENCES load_balancers (id) ON DELETE CASCADE,
    pool_id             text NOT NULL REFERENCES pools (id) ON DELETE CASCADE,
    name                text NOT NULL DEFAULT '',
    description         text NOT NULL DEFAULT '',
    labels              jsonb NOT NULL DEFAULT '{}',
    address             text NOT NULL,
    port                integer NOT NULL CHECK (port BETWEEN 1 AND 65535),
    spec                jsonb NOT NULL,
    provisioning_status text NOT NULL DEFAULT 'pending_create',
    operating_status    text NOT NULL DEFAULT 'no_monitor',
    status_message      text NOT NULL DEFAULT '',
    version             bigint NOT NULL DEFAULT 1,
    revision            bigint NOT NULL,
    deleted_revision    bigint,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX members_address_port_key ON members (pool_id, address, port) WHERE deleted_revision IS NULL;
CREATE UNIQUE INDEX members_name_key ON members (pool_id, name) WHERE name <> '' AND deleted_revision IS NULL;
CREATE INDEX members_tenant_id_idx ON members (tenant_id, id);
CREATE INDEX members_pool_id_idx ON members (pool_id);
CREATE INDEX members_load_balancer_id_idx ON members (load_balancer_id);

CREATE TABLE routing_rules (
    id                  text PRIMARY KEY,
    tenant_id           text NOT NULL REFERENCES tenants (id),
    load_balancer_id    text NOT NULL REFERENCES load_balancers (id) ON DELETE CASCADE,
    listener_id         text NOT NULL REFERENCES listeners (id) ON DELETE CASCADE,
    name                text NOT NULL DEFAULT '',
    description         text NOT NULL DEFAULT '',
    labels              jsonb NOT NULL DEFAULT '{}',
    priority            integer NOT NULL,
    spec                jsonb NOT NULL,
    provisioning_status text NOT NULL DEFAULT 'pending_create',
    operating_status    text NOT NULL DEFAULT 'online',
    status_message      text NOT NULL DEFAULT '',
    version             bigint NOT NULL DEFAULT 1,
    revision            bigint NOT NULL,
    deleted_revision    bigint,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX routing_rules_priority_key ON routing_rules (listener_id, priority) WHERE deleted_revision IS NULL;
CREATE UNIQUE INDEX routing_rules_name_key ON routing_rules (listener_id, name) WHERE name <> '' AND deleted_revision IS NULL;
CREATE INDEX routing_rules_tenant_id_idx ON routing_rules (tenant_id, id);
CREATE INDEX routing_rules_listener_id_idx ON routing_rules (listener_id);
CREATE INDEX routing_rules_load_balancer_id_idx ON routing_rules (load_balancer_id);

-- The pools a forward action sends to, kept as rows so the reference is enforced.
CREATE TABLE routing_rule_pools (
    routing_rule_id text NOT NULL REFERENCES routing_rules (id) ON DELETE CASCADE,
    pool_id         text NOT NULL REFERENCES pools (id),
    PRIMARY KEY (routing_rule_id, pool_id)
);
CREATE INDEX routing_rule_pools_pool_id_idx ON routing_rule_pools (pool_id);

-- Certificates belong to a tenant, not to a load balancer; listeners refer to them
-- by id (listener_certificates keeps that reference enforceable).
CREATE TABLE certificates (
    id              text PRIMARY KEY,
    tenant_id       text NOT NULL REFERENCES tenants (id),
    name            text NOT NULL DEFAULT '',
    description     text NOT NULL DEFAULT '',
    labels          jsonb NOT NULL DEFAULT '{}',
    certificate_pem text NOT NULL,
    private_key_enc bytea NOT NULL,
    info            jsonb NOT NULL,
    version         bigint NOT NULL DEFAULT 1,
    revision        bigint NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX certificates_name_key ON certificates (tenant_id, name) WHERE name <> '';
CREATE INDEX certificates_tenant_id_idx ON certificates (tenant_id, id);

CREATE TABLE listener_certificates (
    listener_id    text NOT NULL REFERENCES listeners (id) ON DELETE CASCADE,
    certificate_id text NOT NULL REFERENCES certificates (id),
    position       integer NOT NULL,
    PRIMARY KEY (listener_id, certificate_id)
);
CREATE INDEX listener_certificates_certificate_id_idx ON listener_certificates (certificate_id);

-- The first response to a POST with an Idempotency-Key, replayed to retries.
CREATE TABLE idempotency_keys (
    principal    text NOT NULL,
    key          text NOT NULL,
    method_path  text NOT NULL,
    request_hash bytea NOT NULL,
    status       integer NOT NULL DEFAULT 0,
    body         jsonb,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (principal, key)
);
CREATE INDEX idempotency_keys_created_at_idx ON idempotency_keys (created_at);
