#!/usr/bin/env bash
# The benchmark, one command: installs what it needs (scripts/setup.sh), then runs `python -m bench`
# with the arguments given (`--smoke`, `--reps 3 --seconds 10`, `--pin`, `--only ...`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
python3 -m bench "$@"
