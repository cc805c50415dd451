-- HAProxy peers: where each node's HAProxy listens for its group's peers
-- (ip:port on the node's LAN address, sent by its agent when it registers);
-- '' takes no part. Snapshots list the group's peers so stick tables are
-- shared across the nodes and survive a VIP move.
ALTER TABLE nodes ADD COLUMN peer_address text NOT NULL DEFAULT '';
