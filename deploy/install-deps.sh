#!/usr/bin/env bash
# Installs the Debian packages Fulcrum needs, if missing.
#
#   deploy/install-deps.sh [package ...]     (default: postgresql haproxy)
#
# Quiet and does nothing when every package is installed. As root, installs
# the missing ones with apt-get (one `apt-get update` first); otherwise
# prints what to install and exits 1.
#
# Fulcrum runs its own PostgreSQL clusters (internal/pgcluster), so Debian's
# "main" cluster service is not needed: while installing, a policy-rc.d keeps
# apt from starting the postgresql service, unless the machine already has a
# policy-rc.d of its own (then that one decides).
set -euo pipefail

if [ "$#" -eq 0 ]; then
	set -- postgresql haproxy
fi

missing=()
for pkg in "$@"; do
	if ! dpkg -s "$pkg" 2>/dev/null | grep -qx 'Status: install ok installed'; then
		missing+=("$pkg")
	fi
done

if [ "${#missing[@]}" -eq 0 ]; then
	exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
	echo "install-deps: missing Debian packages: ${missing[*]}" >&2
	echo "install-deps: install them as root: apt-get install -y --no-install-recommends ${missing[*]}" >&2
	exit 1
fi

policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
	cat >"$policy" <<'EOF'
#!/bin/sh
# Temporary, from Fulcrum's deploy/install-deps.sh: do not start Debian's
# PostgreSQL service while installing.
case "$1" in
postgresql*) exit 101 ;;
esac
exit 0
EOF
	chmod 755 "$policy"
	trap 'rm -f "$policy"' EXIT
fi

echo "install-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq -o Dpkg::Use-Pty=0 --no-install-recommends "${missing[@]}" </dev/null
