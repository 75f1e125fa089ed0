#!/usr/bin/env bash
# Preprocess the Criteo 1TB day files into the binary dataset, as the original's
# prepare_dataset.sh was called:
#
#   cd preproc && ./prepare_dataset.sh CPU 15 [extra python -m preproc options]
#   cd preproc && ./prepare_dataset.sh SPARK 15      # the same bytes, computed by Spark
#
# Arguments: ENGINE and the frequency threshold (default 15). ENGINE is SPARK for the
# Spark engine (master: $SPARK_MASTER, default local[$PREPROC_WORKERS]), else the local
# engine; CPU, GPU, MLU and DGX2 are kept from the original calling form (all run on the CPU).
# Reads $RAW_DATA_DIR/day_N[.gz] (from env.sh), writes $DATA_DIR/criteo_thr<T>. Workers:
# $PREPROC_WORKERS (default: the number of cores). Rerunning after an interruption resumes
# (the Spark engine starts over).
set -euo pipefail

usage() {
  sed -n '2,14s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"
}
if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
  usage
  exit 0
fi

ENGINE_ARG="${1:-CPU}"
THRESHOLD="${2:-15}"
shift $(($# < 2 ? $# : 2))
ENGINE_FLAGS=()
case "${ENGINE_ARG^^}" in
  CPU | GPU | MLU | DGX2 | DGX1) ENGINE=local ;;
  SPARK)
    ENGINE=spark
    ENGINE_FLAGS=(--engine spark)
    if [[ -n "${SPARK_MASTER:-}" ]]; then
      ENGINE_FLAGS+=(--spark_master "$SPARK_MASTER")
    fi
    ;;
  *)
    echo "error: unknown engine '$ENGINE_ARG' (CPU or SPARK; GPU, MLU, DGX2 run as CPU)" >&2
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
  "(threshold $THRESHOLD, $WORKERS workers, $ENGINE engine)"
cd "$ROOT"
"$PYTHON" -m preproc --input_files "${DAYS[@]}" --output_dir "$OUTPUT" \
  --frequency_threshold "$THRESHOLD" --num_workers "$WORKERS" "${ENGINE_FLAGS[@]}" "$@"
"$PYTHON" -m tools.inspect_dataset "$OUTPUT" --rows 2
