#!/usr/bin/env bash
# Regenerates docs/ (registry layout) from the provider's schema descriptions and
# examples/ with tfplugindocs, offline: the schema comes from
# `terraform providers schema -json` against the locally built provider through
# a dev_overrides CLI config, so nothing is downloaded.
#
#   tools/gen-docs.sh <terraform binary>
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
terraform=${1:?usage: tools/gen-docs.sh TERRAFORM}
root=$PWD
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

go build -o "$work/bin/terraform-provider-fulcrum" ./cmd/terraform-provider-fulcrum
cat >"$work/tfrc" <<TFRC
provider_installation {
  dev_overrides {
    "registry.terraform.io/fulcrumlb/fulcrum" = "$work/bin"
  }
  direct {}
}
TFRC
mkdir -p "$work/cfg"
cat >"$work/cfg/main.tf" <<'TF'
terraform {
  required_providers {
    fulcrum = { source = "fulcrumlb/fulcrum" }
  }
}
TF
(cd "$work/cfg" && TF_CLI_CONFIG_FILE="$work/tfrc" TF_IN_AUTOMATION=1 "$terraform" providers schema -json 2>/dev/null) >"$work/schema.json"
# tfplugindocs finds a provider's schema by its short name.
sed -i 's|"registry.terraform.io/fulcrumlb/fulcrum"|"fulcrum"|' "$work/schema.json"
go run -modfile=tools/go.mod github.com/hashicorp/terraform-plugin-docs/cmd/tfplugindocs generate \
	--provider-name fulcrum --rendered-provider-name Fulcrum \
	--providers-schema "$work/schema.json" \
	--provider-dir "$root" --examples-dir examples --rendered-website-dir docs
