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
# The Keycloak and Hydra tests need Java or Go: say up front when they will not run, and why.
python3 -c "
from tests.support.hydra import hydra_missing
from tests.support.keycloak import keycloak_missing
for reason in filter(None, (keycloak_missing(), hydra_missing())):
    print('NOTE:', reason)
"
python3 -m pytest "$@"
