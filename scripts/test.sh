#!/usr/bin/env bash
# Installs everything the test suite needs (pip, npm and Debian packages) and runs every check:
# ruff format, ruff lint, mypy, import-linter and pytest. CI calls this; so should you.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
for pkg in nodejs:node npm:npm; do
  command -v "${pkg#*:}" >/dev/null 2>&1 || need_apt+=("${pkg%%:*}")
done
if [ ${#need_apt[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

python3 -m pip install -q --disable-pip-version-check -e ".[test]"
(cd tests/oidc-provider && npm ci --no-audit --no-fund --loglevel=error)

ruff format --check oidcproxy tests bench
ruff check oidcproxy tests bench
mypy
lint-imports
python3 -m pytest "$@"
