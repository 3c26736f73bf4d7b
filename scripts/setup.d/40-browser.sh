#!/usr/bin/env bash
# Debian's chromium for the dashboard tests (tests/e2e/test_dashboard.py). They drive it
# with the Python `playwright` package (a test dependency) through
# executable_path=/usr/bin/chromium: Playwright's own browser download does not work here.
# Idempotent and quiet: prints apt's output only when it fails.
set -euo pipefail

if [ -x /usr/bin/chromium ]; then
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
      chromium fonts-dejavu-core; } >"$log" 2>&1; then
  cat "$log" >&2
  echo "40-browser.sh: installing chromium failed" >&2
  exit 1
fi
