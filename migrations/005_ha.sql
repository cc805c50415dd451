-- High availability: which interface keepalived announces a node group's VIPs
-- on, the VRRP router ids it may use and how often masters advertise. An empty
-- vrrp_interface (the default, and what loopback VIP ranges use) means no
-- keepalived: the agent binds VIPs the node already has, as before.
ALTER TABLE node_groups
    ADD COLUMN vrrp_interface          text    NOT NULL DEFAULT '',
    ADD COLUMN vrrp_router_id_min      integer NOT NULL DEFAULT 1   CHECK (vrrp_router_id_min BETWEEN 1 AND 255),
    ADD COLUMN vrrp_router_id_max      integer NOT NULL DEFAULT 255 CHECK (vrrp_router_id_max BETWEEN 1 AND 255),
    ADD COLUMN vrrp_advert_interval_ms integer NOT NULL DEFAULT 100 CHECK (vrrp_advert_interval_ms BETWEEN 10 AND 40950),
    ADD CONSTRAINT node_groups_vrrp_router_ids CHECK (vrrp_router_id_min <= vrrp_router_id_max);
