#!/usr/bin/env bash
# BIND 9 for the DNS alias integration tests (tests/fixtures/bind.py starts its own named
# on a free loopback port; nothing runs as a service). Idempotent and quiet.
set -euo pipefail

if command -v named >/dev/null 2>&1 || [ -x /usr/sbin/named ]; then
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null
$SUDO apt-get install -y -qq --no-install-recommends bind9 bind9-utils bind9-dnsutils >/dev/null
