# A load balancer in front of two local backends, against `make run`:
#
#   python3 -m http.server 9001 --bind 127.0.0.1 &
#   python3 -m http.server 9002 --bind 127.0.0.1 &
#   . ../../.fulcrum/env
#   export TF_CLI_CONFIG_FILE=$PWD/dev.tfrc      # see README: "Use it from Terraform"
#   terraform apply
#   curl "http://$(terraform output -raw vip_address):8000/"
terraform {
  required_providers {
    fulcrum = {
      source = "fulcrumlb/fulcrum"
    }
  }
}

# endpoint and token come from FULCRUM_ENDPOINT and FULCRUM_TOKEN.
provider "fulcrum" {}

variable "backend_ports" {
  type    = list(number)
  default = [9001, 9002]
}

resource "fulcrum_load_balancer" "web" {
  name           = "quickstart"
  labels         = { env = "dev" }
  cascade_delete = true
}

resource "fulcrum_pool" "app" {
  load_balancer_id = fulcrum_load_balancer.web.id
  name             = "app"
  protocol         = "http"
  algorithm        = "round_robin"

  health_monitor = {
    type           = "http"
    path           = "/"
    expected_codes = "200-399"
    interval_ms    = 2000
  }
}

resource "fulcrum_member" "app" {
  count   = length(var.backend_ports)
  pool_id = fulcrum_pool.app.id
  address = "127.0.0.1"
  port    = var.backend_ports[count.index]
  weight  = 1
}

resource "fulcrum_listener" "http" {
  load_balancer_id = fulcrum_load_balancer.web.id
  protocol         = "http"
  port             = 8000
  default_pool_id  = fulcrum_pool.app.id

  insert_headers = {
    x_forwarded_for = true
  }
}

output "vip_address" {
  value = fulcrum_load_balancer.web.vip_address
}

output "url" {
  value = "http://${fulcrum_load_balancer.web.vip_address}:${fulcrum_listener.http.port}/"
}
