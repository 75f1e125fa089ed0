#!/usr/bin/env bash
# Preprocess the Criteo 1TB day files into the binary dataset, as the original's
# prepare_dataset.sh was called:
#
#   cd preproc && ./prepare_dataset.sh CPU 15 [extra python -m preproc options]
#
# Arguments: DEVICE (kept for the original calling form: CPU, GPU, MLU or DGX2; the
# preprocessing always runs on the CPU) and the frequency threshold (default 15).
# Reads $RAW_DATA_DIR/day_N[.gz] (from env.sh), writes $DATA_DIR/criteo_thr<T>. Workers:
# $PREPROC_WORKERS (default: the number of cores). Rerunning after an interruption resumes.
set -euo pipefail

usage() {
  sed -n '2,10s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"
}
if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
  usage
  exit 0
fi

DEVICE_ARG="${1:-CPU}"
THRESHOLD="${2:-15}"
shift $(($# < 2 ? $# : 2))
case "${DEVICE_ARG^^}" in
  CPU | GPU | MLU | DGX2 | DGX1) ;;
  *)
    echo "error: unknown device '$DEVICE_ARG' (CPU, GPU, MLU, DGX2)" >&2
    usage >&2
    exit 2
    ;;
esac
if ! [[ "$THRESHOLD" =~ ^[0-9]+$ ]]; then
  echo "error: frequency threshold must be a non-negative integer, got '$THRESHOLD'" >&2
  exit 2
fi

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source-path=SCRIPTDIR source=../env.sh
source "$ROOT/env.sh"

mapfile -t DAYS < <(find "$RAW_DATA_DIR" -maxdepth 1 -regextype posix-extended \
  -regex '.*/day_[0-9]+(\.gz)?' | sort -V)
if [[ ${#DAYS[@]} -eq 0 ]]; then
  echo "error: no day_N or day_N.gz files in RAW_DATA_DIR=$RAW_DATA_DIR" >&2
  exit 1
fi
OUTPUT="$DATA_DIR/criteo_thr$THRESHOLD"
WORKERS="${PREPROC_WORKERS:-$(nproc)}"

echo "preprocessing ${#DAYS[@]} day files from $RAW_DATA_DIR -> $OUTPUT" \
  "(threshold $THRESHOLD, $WORKERS workers, on the CPU)"
cd "$ROOT"
"$PYTHON" -m preproc --input_files "${DAYS[@]}" --output_dir "$OUTPUT" \
  --frequency_threshold "$THRESHOLD" --num_workers "$WORKERS" "$@"
"$PYTHON" -m tools.inspect_dataset "$OUTPUT" --rows 2
