# Needs an admin token.
resource "fulcrum_tenant" "acme" {
  name = "acme"
  quotas = {
    load_balancers = 20
    members        = 1000
  }
}
