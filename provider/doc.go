// Package provider is Fulcrum's Terraform provider (terraform-plugin-framework,
// protocol 6, address registry.terraform.io/fulcrumlb/fulcrum). It talks to the
// API only through the client generated from openapi/openapi.yaml. Resources
// live one package per family under provider/internal; provider/internal/fulcrum
// holds what they share (client, error mapping, waiting for status).
package provider
