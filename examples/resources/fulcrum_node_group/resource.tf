# Needs an admin token.
resource "fulcrum_node_group" "edge" {
  name      = "edge"
  vip_range = "203.0.113.0/24"
}
