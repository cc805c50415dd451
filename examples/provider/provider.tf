# Configure the provider with an endpoint and a token, or leave both out and set
# FULCRUM_ENDPOINT and FULCRUM_TOKEN (`. .fulcrum/env` after `make run`).
provider "fulcrum" {
  endpoint = "http://127.0.0.1:8080"
}
