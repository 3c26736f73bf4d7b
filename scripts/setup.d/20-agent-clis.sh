#!/usr/bin/env bash
# Installs the pinned agent CLIs (Claude Code, OpenCode) into the project's npm cache folder.
# Idempotent and quiet. If the npm registry cannot be reached it only warns: the agent CLI
# tests then skip, unless RDEV_REQUIRE_AGENT_CLIS=1 (CI), where this script fails instead.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PREFIX="${RDEV_CACHE_DIR:-$REPO_ROOT/.cache}/npm"
CLAUDE_PKG="@anthropic-ai/claude-code"
CLAUDE_VERSION="2.1.197"
OPENCODE_PKG="opencode-ai"
OPENCODE_VERSION="1.18.33"

installed_version() {  # <package> -> version installed under $PREFIX, or empty
  local pj="$PREFIX/node_modules/$1/package.json"
  [[ -f "$pj" ]] || return 0
  sed -n 's/^[[:space:]]*"version":[[:space:]]*"\([^"]*\)".*/\1/p' "$pj" | head -n1
}

fail_or_warn() {
  if [[ "${RDEV_REQUIRE_AGENT_CLIS:-0}" == "1" ]]; then
    echo "20-agent-clis: ERROR: $*" >&2
    exit 1
  fi
  echo "20-agent-clis: warning: $* (agent CLI tests will skip)" >&2
  exit 0
}

wanted=()
[[ "$(installed_version "$CLAUDE_PKG")" == "$CLAUDE_VERSION" ]] \
  || wanted+=("$CLAUDE_PKG@$CLAUDE_VERSION")
[[ "$(installed_version "$OPENCODE_PKG")" == "$OPENCODE_VERSION" ]] \
  || wanted+=("$OPENCODE_PKG@$OPENCODE_VERSION")
if [[ ${#wanted[@]} -eq 0 && -x "$PREFIX/node_modules/.bin/claude" \
      && -x "$PREFIX/node_modules/.bin/opencode" ]]; then
  exit 0
fi

command -v npm >/dev/null 2>&1 || fail_or_warn "npm not found"
if [[ ${#wanted[@]} -eq 0 ]]; then
  wanted=("$CLAUDE_PKG@$CLAUDE_VERSION" "$OPENCODE_PKG@$OPENCODE_VERSION")
fi
mkdir -p "$PREFIX"
# A quick look first, so an offline machine warns in seconds instead of waiting on installs.
if ! timeout 60 npm view "${wanted[0]}" version --fetch-retries=0 >/dev/null 2>&1; then
  fail_or_warn "npm registry unreachable, or ${wanted[0]} not published"
fi
if ! timeout 900 npm install --prefix "$PREFIX" --no-audit --no-fund --loglevel=error \
      "${wanted[@]}" >"$PREFIX/install.log" 2>&1; then
  fail_or_warn "npm install ${wanted[*]} failed; see $PREFIX/install.log"
fi
for bin in claude opencode; do
  [[ -x "$PREFIX/node_modules/.bin/$bin" ]] \
    || fail_or_warn "$bin missing after install; see $PREFIX/install.log"
done
