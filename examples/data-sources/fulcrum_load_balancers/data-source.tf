data "fulcrum_load_balancers" "prod" {
  labels = { env = "prod" }
}
