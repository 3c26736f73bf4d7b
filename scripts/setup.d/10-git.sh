#!/usr/bin/env bash
# git with git-http-backend (Debian's `git` package ships it in /usr/lib/git-core): the git
# adapter, the smart-HTTP repo server and their tests (tests/fixtures/git_server.py) run
# the real binary. Idempotent and quiet: prints apt's output only when it fails.
set -euo pipefail

if command -v git >/dev/null 2>&1 && [ -x "$(git --exec-path)/git-http-backend" ]; then
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
      git ca-certificates openssh-client; } >"$log" 2>&1; then
  cat "$log" >&2
  echo "10-git.sh: installing git failed" >&2
  exit 1
fi
