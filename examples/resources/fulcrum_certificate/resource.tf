resource "fulcrum_certificate" "www" {
  name        = "www"
  certificate = file("${path.module}/www.example.com.crt") # leaf first, then intermediates
  private_key = file("${path.module}/www.example.com.key") # sensitive; never returned by the API
}
