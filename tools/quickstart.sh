#!/usr/bin/env bash
# README command (a): set up the environment, then run the whole pipeline on a built-in default:
# generate a small Criteo-format dataset, preprocess it, train with `horovodrun -np 2` on CPU
# (hybrid parallel), evaluate the checkpoint on one process, print AUC and throughput, and plot
# loss, AUC and throughput against step (tools/plot_log.py).
#
# Usage: bash tools/quickstart.sh [extra dlrm_main.py flags for the training run]
# Variables: QUICKSTART_DIR (work directory, default results/quickstart), QUICKSTART_ROWS.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source-path=SCRIPTDIR source=setup_env.sh
source "$ROOT/tools/setup_env.sh"
cd "$ROOT"

WORK="${QUICKSTART_DIR:-$ROOT/results/quickstart}"
ROWS="${QUICKSTART_ROWS:-600000}"
RAW="$WORK/raw"
DATASET="$WORK/dataset"
RUN="$WORK/run_$(date +%Y%m%d_%H%M%S)"
mkdir -p "$WORK" "$RUN"
# Two processes share two cores: one TensorFlow thread pool each keeps them from fighting.
THREADS=(--inter_op_parallelism 1 --intra_op_parallelism 1)
MODEL=(--embedding_dim 16 --bottom_mlp_dims "64,32,16" --top_mlp_dims "64,32,1"
  --batch_size 4096 --valid_batch_size 4096 --optimizer adam --learning_rate 0.002
  --warmup_steps 0 --decay_start_step 0 --decay_steps 0 --print_freq 20 --seed 1)

echo "== 1/4 generate $ROWS Criteo-format rows in 3 day files -> $RAW"
python -m tools.generate_criteo --output_dir "$RAW" --num_rows "$ROWS" --num_days 3 --seed 0

echo "== 2/4 preprocess -> $DATASET"
python -m preproc --input_files "$RAW"/day_0 "$RAW"/day_1 "$RAW"/day_2 \
  --output_dir "$DATASET" --frequency_threshold 3 --num_workers 2

echo "== 3/4 train: horovodrun -np 2 (hybrid parallel on CPU) -> $RUN"
horovodrun -np 2 --gloo python dlrm_main.py --mode train --dataset_path "$DATASET" \
  --use_horovod --device cpu "${MODEL[@]}" "${THREADS[@]}" --epochs 2 --evals_per_epoch 2 \
  --save_checkpoint_path "$RUN/checkpoints" --log_path "$RUN/train_log.json" "$@"

echo "== 4/4 evaluate the checkpoint on one process"
python dlrm_main.py --mode eval --dataset_path "$DATASET" --device cpu "${MODEL[@]}" \
  --restore_checkpoint_path "$RUN/checkpoints" --log_path "$RUN/eval_log.json"

echo "== result"
python -m tools.record_time --results_only "$RUN/train_log.json" "$RUN/eval_log.json"
# Loss, AUC and throughput against step; prints the path of the PNG.
python -m tools.plot_log "$RUN/train_log.json" -o "$RUN/train_log.png" --labels "DLRM, 2 ranks"
