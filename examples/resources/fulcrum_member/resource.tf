resource "fulcrum_member" "app" {
  for_each = toset(["10.0.0.11", "10.0.0.12"])

  pool_id = fulcrum_pool.app.id
  address = each.value
  port    = 8080
  weight  = 10
}
