#!/usr/bin/env bash
# BIND 9 for the DNS alias integration tests: tests/fixtures/bind.py starts its own `named`
# on a free loopback port (nothing runs as a service; the postinst's start is denied in
# containers). Idempotent and quiet: prints apt's output only when it fails.
set -euo pipefail

if command -v named >/dev/null 2>&1 || [ -x /usr/sbin/named ]; then
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi

log="$(mktemp)"
trap 'rm -f "$log"' EXIT
export DEBIAN_FRONTEND=noninteractive
if ! { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends \
      bind9 bind9-utils bind9-dnsutils; } >"$log" 2>&1; then
  cat "$log" >&2
  echo "30-bind9.sh: installing bind9 failed" >&2
  exit 1
fi
