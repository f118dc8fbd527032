#!/usr/bin/env bash
# Installs what the tests and the benchmark need on a machine of this kind: Debian packages (Node.js,
# nginx, Chromium and its driver, wrk, Apache + mod_auth_openidc, Redis), the project with its test and bench
# extras, the npm packages under tests/, and helm (built from its Go module) for the chart's tests.
# Idempotent: installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
for pkg in nodejs:node npm:npm; do
  command -v "${pkg#*:}" >/dev/null 2>&1 || need_apt+=("${pkg%%:*}")
done
# The NGINX tests (tests/e2e/test_nginx.py) run Debian's nginx as a subprocess on loopback.
[ -x /usr/sbin/nginx ] || command -v nginx >/dev/null 2>&1 || need_apt+=(nginx)
# The forward-auth tests (tests/e2e/test_caddy.py) run Debian's caddy the same way.
command -v caddy >/dev/null 2>&1 || need_apt+=(caddy)
# The browser tests drive Debian's Chromium through its chromedriver (no browser downloads).
[ -x /usr/bin/chromium ] || need_apt+=(chromium)
[ -x /usr/bin/chromedriver ] || need_apt+=(chromium-driver)
# The benchmark's smoke run (tests/integration/test_bench_smoke.py): wrk, and Apache + mod_auth_openidc as the peer.
command -v wrk >/dev/null 2>&1 || need_apt+=(wrk)
[ -x /usr/sbin/apache2 ] || need_apt+=(apache2)
[ -f /usr/lib/apache2/modules/mod_auth_openidc.so ] || need_apt+=(libapache2-mod-auth-openidc)
# Real Redis for the session store tests (tests/support/redis.py): standalone, Sentinel and Cluster,
# started by the tests on loopback (apt does not start a service in this container: policy-rc.d).
[ -x /usr/bin/redis-server ] || need_apt+=(redis-server)
[ -x /usr/bin/redis-sentinel ] || need_apt+=(redis-sentinel)
command -v redis-cli >/dev/null 2>&1 || need_apt+=(redis-tools)
# `promtool check metrics` for the metrics exposition (tests/integration/test_metrics.py).
command -v promtool >/dev/null 2>&1 || need_apt+=(prometheus)
if [ ${#need_apt[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

python3 -m pip install -q --disable-pip-version-check -e ".[test,bench]"
# npm ci wipes node_modules first; skip it when what is installed is what the lock file names, so a
# second run does not pull the provider out from under tests that are running.
npm_ci() {
  local dir=$1
  if [ -f "$dir/node_modules/.package-lock.json" ] && python3 - "$dir" <<'PY'
import json, sys
d = sys.argv[1]
want = {k: v.get("version") for k, v in json.load(open(f"{d}/package-lock.json"))["packages"].items() if k}
have = {k: v.get("version") for k, v in json.load(open(f"{d}/node_modules/.package-lock.json"))["packages"].items()}
sys.exit(0 if want == have else 1)
PY
  then
    return 0
  fi
  (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
}
npm_ci tests/oidc-provider  # the third-party OpenID provider of the integration tests
npm_ci tests/browser        # axe-core for the browser tests

# The Helm chart's tests (tests/integration/test_helm.py) run the real helm, built from its Go module
# into the git-ignored .cache/peers/bin (a few minutes on 2 cores, once). Without Go they report
# "not run" with the reason.
HELM_VERSION=v3.22.0
if command -v go >/dev/null 2>&1 && ! .cache/peers/bin/helm version 2>/dev/null | grep -q "Version:\"${HELM_VERSION%.*}"; then
  mkdir -p .cache/peers/bin
  GOBIN="$PWD/.cache/peers/bin" GOFLAGS=-buildvcs=false nice -n 19 go install "helm.sh/helm/v3/cmd/helm@${HELM_VERSION}"
fi

# The certified providers of tests/integration/test_keycloak.py and test_hydra.py, cached under
# .cache/peers/ (git-ignored): Keycloak's Quarkus distribution from Maven Central (needs Java 17+ and
# Maven) and Ory Hydra built from its Go module (needs Go and gcc). Without the toolchain the tests
# say so and are reported as not run; scripts/test.sh prints why.
if command -v java >/dev/null 2>&1; then
  command -v mvn >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq maven >/dev/null; }
  python3 -c "from tests.support.keycloak import ensure_keycloak; ensure_keycloak()"
fi
if command -v go >/dev/null 2>&1 && command -v gcc >/dev/null 2>&1; then
  python3 -c "from tests.support.hydra import ensure_hydra; ensure_hydra()"
fi

# oauth2-proxy, a peer in the benchmark (bench/servers.py), built from its Go module into the
# git-ignored .cache/peers/bin (a few minutes on 2 cores, once; niced). Without Go the benchmark skips
# its setups with a note, and nothing fails.
OAUTH2_PROXY_VERSION=v7.15.6
if ! command -v go >/dev/null 2>&1; then
  echo "setup: no Go toolchain: the benchmark runs without oauth2-proxy" >&2
elif ! .cache/peers/bin/oauth2-proxy --version 2>/dev/null | grep -q "oauth2-proxy ${OAUTH2_PROXY_VERSION} "; then
  mkdir -p .cache/peers/bin
  GOBIN="$PWD/.cache/peers/bin" GOFLAGS=-buildvcs=false nice -n 19 go install \
    -ldflags="-X github.com/oauth2-proxy/oauth2-proxy/v7/pkg/version.VERSION=${OAUTH2_PROXY_VERSION}" \
    "github.com/oauth2-proxy/oauth2-proxy/v7@${OAUTH2_PROXY_VERSION}" \
    || echo "setup: building oauth2-proxy failed: the benchmark runs without it" >&2
fi
