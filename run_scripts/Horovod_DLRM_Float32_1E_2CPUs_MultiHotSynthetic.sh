#!/usr/bin/env bash
# DLRM, 1 epoch, float32, 2 CPU processes, on synthetic data shaped like MLPerf's multi-hot
# Criteo (DLRM-DCNv2 benchmark): its hotness per table, Criteo 1TB tables capped at 200,000 rows.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/common.sh"
DESCRIPTION="DLRM, 1 epoch, float32, 2 CPU processes, synthetic multi-hot data (MLPerf DLRM-DCNv2 hotness)."
[[ "${1:-}" == "-h" || "${1:-}" == "--help" ]] && usage_and_exit "$0" "$DESCRIPTION"
# Hotness: models/data/criteo.py MLPERF_MULTI_HOT_HOTNESS; rows: its BENCH_CARDINALITIES.
HOTNESS=3,2,1,2,6,1,1,1,1,7,3,8,1,6,9,5,1,1,1,12,100,27,10,3,1,1
CARDINALITIES=200000,33823,17139,7339,20046,4,7105,1382,63,200000,200000,200000,11
CARDINALITIES+=,2209,10667,104,4,968,15,200000,200000,200000,200000,12022,97,35
run_dlrm Horovod_DLRM_Float32_1E_2CPUs_MultiHotSynthetic 2 cpu fp32 \
  --dataset_type synthetic \
  --synthetic_dataset_cardinalities "$CARDINALITIES" \
  --synthetic_dataset_hotness "$HOTNESS" \
  --multi_hot_combiner sum \
  "$@"
