data "fulcrum_pool" "app" {
  id = "pool_01jd2yq4zp0s9d3c1v1x6m5w7a"
}
