#!/usr/bin/env bash
# Creates or reuses the project's virtualenv (TensorFlow, Horovod, requirements.txt).
#
# Usage: bash tools/setup_env.sh            # set up only
#        source tools/setup_env.sh          # set up, then use the virtualenv in this shell
# Variables: DLRM_VENV, DLRM_CACHE_DIR, DLRM_TF_PACKAGE, DLRM_HOROVOD_VERSION, DLRM_PYTHON
# (see DEVELOPERS.md).

_dlrm_setup() {
  local root python
  root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
  python="${DLRM_PYTHON:-python3}"
  if ! command -v "$python" >/dev/null 2>&1; then
    echo "[setup] ERROR: $python not found; install Python >= 3.10 (Debian: apt-get install python3 python3-venv)" >&2
    return 1
  fi
  export DLRM_VENV="${DLRM_VENV:-$HOME/.cache/dlrm_tf2/venv}"
  "$python" "$root/tools/setup_env.py" || return 1
  export PATH="$DLRM_VENV/bin:$PATH"
  export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  set -euo pipefail
  _dlrm_setup
else
  _dlrm_setup || return 1
fi
