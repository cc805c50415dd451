resource "fulcrum_pool" "app" {
  load_balancer_id = fulcrum_load_balancer.web.id
  name             = "app"
  protocol         = "http"
  algorithm        = "least_connections"

  health_monitor = {
    type           = "http"
    http_method    = "GET"
    path           = "/healthz"
    expected_codes = "200-399"
    interval_ms    = 5000
    timeout_ms     = 3000
    rise           = 2
    fall           = 3
  }

  session_persistence = {
    type        = "cookie_insert"
    cookie_name = "SRV"
  }
}
