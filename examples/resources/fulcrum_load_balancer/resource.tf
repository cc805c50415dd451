resource "fulcrum_load_balancer" "web" {
  name        = "web"
  description = "public web tier"
  labels      = { env = "prod", team = "web" }

  # Destroying the load balancer also deletes its listeners, pools, members
  # and rules, even those created outside Terraform.
  cascade_delete = true
}
