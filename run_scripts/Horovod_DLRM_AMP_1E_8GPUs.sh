#!/usr/bin/env bash
# DLRM, 1 epoch, AMP (float16 + loss scaling), 8 GPUs on one node (hybrid parallel).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/common.sh"
[[ "${1:-}" == "-h" || "${1:-}" == "--help" ]] && usage_and_exit "$0" "DLRM, 1 epoch, AMP (float16 + loss scaling), 8 GPUs on one node (hybrid parallel)."
run_dlrm Horovod_DLRM_AMP_1E_8GPUs 8 gpu amp "$@"
