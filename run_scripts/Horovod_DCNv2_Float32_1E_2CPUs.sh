#!/usr/bin/env bash
# DCNv2 (cross network, --model_type dcnv2), 1 epoch, FP32, 2 CPU processes (hybrid parallel over Horovod/Gloo).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/common.sh"
[[ "${1:-}" == "-h" || "${1:-}" == "--help" ]] && usage_and_exit "$0" "DCNv2 (cross network, --model_type dcnv2), 1 epoch, FP32, 2 CPU processes (hybrid parallel over Horovod/Gloo)."
run_dlrm Horovod_DCNv2_Float32_1E_2CPUs 2 cpu fp32 --model_type dcnv2 "$@"
