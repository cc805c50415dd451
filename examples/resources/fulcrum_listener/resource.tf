resource "fulcrum_listener" "http" {
  load_balancer_id = fulcrum_load_balancer.web.id
  protocol         = "http"
  port             = 80
  default_pool_id  = fulcrum_pool.app.id
  connection_limit = 10000
  allowed_cidrs    = ["0.0.0.0/0"]
  denied_cidrs     = ["192.0.2.0/24"]

  insert_headers = {
    x_forwarded_for   = true
    x_forwarded_proto = true
    x_request_id      = true
  }
}

resource "fulcrum_listener" "https" {
  load_balancer_id = fulcrum_load_balancer.web.id
  protocol         = "https"
  port             = 443
  default_pool_id  = fulcrum_pool.app.id
  certificate_ids  = [fulcrum_certificate.www.id]

  hsts = {
    max_age_seconds    = 31536000
    include_subdomains = true
  }
}
