#!/usr/bin/env bash
# DCNv2 (cross network, --model_type dcnv2), 1 epoch, AMP (float16 + loss scaling), 1 GPU.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/common.sh"
[[ "${1:-}" == "-h" || "${1:-}" == "--help" ]] && usage_and_exit "$0" "DCNv2 (cross network, --model_type dcnv2), 1 epoch, AMP (float16 + loss scaling), 1 GPU."
run_dlrm Horovod_DCNv2_AMP_1E_1GPU 1 gpu amp --model_type dcnv2 "$@"
