#!/usr/bin/env bash
# The benchmark, one command: installs what it needs (scripts/setup.sh, which also builds oauth2-proxy
# into .cache/peers/bin when Go is present), then runs `python -m bench` with the arguments given
# (`--smoke`, `--runs 3`, `--reps 3 --seconds 10`, `--pin`, `--only ...`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
python3 -m bench "$@"
