#!/usr/bin/env bash
# Installs everything the test suite needs (pip, npm and Debian packages) and runs every check:
# ruff format, ruff lint, mypy, import-linter and pytest. CI calls this; so should you.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh

ruff format --check oidcproxy tests bench
ruff check oidcproxy tests bench
mypy
lint-imports
python3 -m pytest "$@"
