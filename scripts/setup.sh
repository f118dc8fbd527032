#!/usr/bin/env bash
# Installs what the tests and the benchmark need on a machine of this kind: Debian packages (Node.js,
# nginx, Chromium and its driver, wrk, Apache + mod_auth_openidc), the project with its test and bench
# extras, and the npm packages under tests/. Idempotent: installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
for pkg in nodejs:node npm:npm; do
  command -v "${pkg#*:}" >/dev/null 2>&1 || need_apt+=("${pkg%%:*}")
done
# The NGINX tests (tests/e2e/test_nginx.py) run Debian's nginx as a subprocess on loopback.
[ -x /usr/sbin/nginx ] || command -v nginx >/dev/null 2>&1 || need_apt+=(nginx)
# The browser tests drive Debian's Chromium through its chromedriver (no browser downloads).
[ -x /usr/bin/chromium ] || need_apt+=(chromium)
[ -x /usr/bin/chromedriver ] || need_apt+=(chromium-driver)
# The benchmark's smoke run (tests/integration/test_bench_smoke.py): wrk, and Apache + mod_auth_openidc as the peer.
command -v wrk >/dev/null 2>&1 || need_apt+=(wrk)
[ -x /usr/sbin/apache2 ] || need_apt+=(apache2)
[ -f /usr/lib/apache2/modules/mod_auth_openidc.so ] || need_apt+=(libapache2-mod-auth-openidc)
if [ ${#need_apt[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

python3 -m pip install -q --disable-pip-version-check -e ".[test,bench]"
(cd tests/oidc-provider && npm ci --no-audit --no-fund --loglevel=error)
(cd tests/browser && npm ci --no-audit --no-fund --loglevel=error)  # axe-core for the browser tests

