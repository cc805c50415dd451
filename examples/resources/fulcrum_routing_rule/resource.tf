resource "fulcrum_routing_rule" "api" {
  listener_id = fulcrum_listener.http.id
  priority    = 10

  conditions = [{
    field  = "path"
    match  = "prefix"
    values = ["/api/"]
  }]

  action = {
    type = "forward"
    forward = {
      pools = [{ pool_id = fulcrum_pool.api.id, weight = 1 }]
    }
  }
}

resource "fulcrum_routing_rule" "old_site" {
  listener_id = fulcrum_listener.http.id
  priority    = 20

  conditions = [{
    field  = "host"
    values = ["old.example.com"]
  }]

  action = {
    type     = "redirect"
    redirect = { url = "https://www.example.com/", code = 301 }
  }
}
