#!/usr/bin/env bash
# README command (b): set up the environment, then run the whole test suite:
# ruff (lint + format check) and pytest (which also runs shellcheck and hadolint).
# Usage: bash tools/run_tests.sh [pytest arguments, e.g. -k preproc -x]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source-path=SCRIPTDIR source=setup_env.sh
source "$ROOT/tools/setup_env.sh"
cd "$ROOT"
echo "== ruff check"
ruff check .
echo "== ruff format --check"
ruff format --check .
echo "== pytest"
python -m pytest "$@"
