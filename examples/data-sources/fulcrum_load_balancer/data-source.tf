data "fulcrum_load_balancer" "web" {
  name = "web"
}

output "web_vip" {
  value = data.fulcrum_load_balancer.web.vip_address
}
