// Package provider is Fulcrum's Terraform provider (terraform-plugin-framework,
// protocol 6, address registry.terraform.io/fulcrumlb/fulcrum). It talks to the
// API only through the client generated from openapi/openapi.yaml. Resources
// live one package per family under provider/internal; provider/internal/fulcrum
// holds what they share (client, error mapping, waiting for status).
//
// Imports: of Fulcrum's, the provider (and every package under it) imports
// only openapi, its own packages under provider/ and internal/telemetry —
// never the API, its store or the dataplane. Each resource package imports
// only openapi and provider/internal/fulcrum. provider/internal/acctest, which
// only tests import, may also run internal/teststack. internal/importrules
// enforces this.
package provider
