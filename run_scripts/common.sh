#!/usr/bin/env bash
# Shared by the run scripts: builds and runs one `horovodrun ... dlrm_main.py` command.
# Not meant to be run directly; the scripts in this directory source it.

RUN_SCRIPTS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$RUN_SCRIPTS_DIR/.." && pwd)"
# shellcheck source-path=SCRIPTDIR source=../env.sh
source "$REPO_ROOT/env.sh"

# usage_and_exit SCRIPT_NAME DESCRIPTION
usage_and_exit() {
  cat <<USAGE
Usage: bash $1 [extra dlrm_main.py flags]
$2
Paths come from env.sh (DATASET_PATH=$DATASET_PATH, MODEL_DIR=$MODEL_DIR); any extra flag is
forwarded to dlrm_main.py, e.g. --max_steps 1000 --batch_size 32768.
USAGE
  exit 0
}

# run_dlrm NAME NUM_PROCESSES DEVICE PRECISION [extra flags...]
#   DEVICE: mlu | gpu | cpu     PRECISION: fp32 | amp
run_dlrm() {
  local name="$1" np="$2" device="$3" precision="$4"
  shift 4
  local run_dir
  run_dir="$MODEL_DIR/${name}_$(date +%Y%m%d_%H%M%S)"
  mkdir -p "$run_dir"

  local flags=(--dataset_path "$DATASET_PATH"
    --save_checkpoint_path "$run_dir/checkpoints"
    --log_path "$run_dir/dlrm_tf_log.json")
  case "$device" in
    mlu) flags+=(--use_mlus) ;;
    gpu) flags+=(--use_gpus) ;;
    cpu) flags+=(--device cpu) ;;
    *) echo "run_dlrm: unknown device '$device' (mlu, gpu or cpu)" >&2; return 2 ;;
  esac
  [[ "$precision" == amp ]] && flags+=(--amp)
  [[ "$np" -gt 1 ]] && flags+=(--use_horovod)
  [[ "$INTER_OP_THREADS" != 0 ]] && flags+=(--inter_op_parallelism "$INTER_OP_THREADS")
  [[ "$INTRA_OP_THREADS" != 0 ]] && flags+=(--intra_op_parallelism "$INTRA_OP_THREADS")
  [[ "$DEVICE_MEMORY_LIMIT_GB" != 0 ]] && flags+=(--tf_mlu_memory_limit_gb "$DEVICE_MEMORY_LIMIT_GB")

  local cmd=("$PYTHON" "$REPO_ROOT/dlrm_main.py" "${flags[@]}" "$@")
  if [[ "$np" -gt 1 ]]; then
    cmd=("$HOROVODRUN" -np "$np" --gloo "${cmd[@]}")
  fi
  echo "Run directory: $run_dir"
  printf '%q ' "${cmd[@]}" | tee "$run_dir/command.txt"
  echo
  "${cmd[@]}" 2>&1 | tee "$run_dir/output.log"
}
