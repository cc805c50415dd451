#!/usr/bin/env bash
# Lints openapi/openapi.yaml with Redocly CLI's recommended rules plus the ones
# redocly.yaml (repository root) adds; run by `make lint`. Fails on any error.
#
#   tools/lint-openapi.sh [redocly lint options]
#
# Needs node (18.17 or later) and npm: as root they are installed with
# deploy/install-deps.sh when missing (Debian's nodejs and npm). The CLI is the
# version pinned in tools/package.json and tools/package-lock.json, installed
# with `npm ci` into tools/node_modules (not committed) whenever that folder is
# missing or older than the lock file.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
	if [ "$(id -u)" -eq 0 ]; then
		bash deploy/install-deps.sh nodejs npm
	else
		echo "lint-openapi: node and npm are needed: apt-get install -y nodejs npm (as root)" >&2
		exit 1
	fi
fi
if ! node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 18 || (a === 18 && b >= 17) ? 0 : 1)'; then
	echo "lint-openapi: node $(node --version) is too old; @redocly/cli needs 18.17 or later" >&2
	exit 1
fi

# A stamp records the lock file the installed modules came from.
stamp=tools/node_modules/.fulcrum-lock.sha256
want=$(cat tools/package.json tools/package-lock.json | sha256sum | cut -d' ' -f1)
if [ ! -x tools/node_modules/.bin/redocly ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
	echo "lint-openapi: npm ci --prefix tools (@redocly/cli as pinned in tools/package-lock.json)" >&2
	# No install scripts: the CLI needs none (core-js' only prints a banner).
	npm ci --prefix tools --ignore-scripts --no-audit --no-fund --loglevel=error >&2
	echo "$want" >"$stamp"
fi

# No usage telemetry, no update check: lint runs offline once installed.
export REDOCLY_TELEMETRY=off REDOCLY_SUPPRESS_UPDATE_NOTICE=true
exec tools/node_modules/.bin/redocly lint --config redocly.yaml --max-problems 1000 "$@" openapi/openapi.yaml
