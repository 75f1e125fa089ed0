#!/usr/bin/env bash
# Site settings shared by run_scripts/, preproc/prepare_dataset.sh, run_docker.sh and the
# quick start. Every value can be overridden from the environment: DATA_DIR=/nvme/criteo bash ...
# shellcheck disable=SC2034  # variables are used by the scripts that source this file

_DLRM_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

# Raw Criteo TSV day files (day_0 .. day_23, plain or .gz) read by preproc/prepare_dataset.sh.
export RAW_DATA_DIR="${RAW_DATA_DIR:-/data/dlrm/criteo}"
# Root of the binary datasets written by preproc (one subdirectory per frequency threshold).
export DATA_DIR="${DATA_DIR:-/data/dlrm/binary_dataset}"
# Dataset the training scripts read (split directories train/test/validation + metadata).
export DATASET_PATH="${DATASET_PATH:-$DATA_DIR/criteo_thr15}"
# Where each run writes its timestamped directory (checkpoints, JSON log, TensorBoard, config).
export MODEL_DIR="${MODEL_DIR:-$_DLRM_ROOT/results}"
# Device kind: mlu, gpu or cpu. Run scripts named ...MLUs/GPUs set it themselves.
export DEVICE="${DEVICE:-mlu}"
# Python interpreter with TensorFlow and Horovod: tools/setup_env.sh's virtualenv when it exists,
# else python3 from PATH (vendor images come with TensorFlow and Horovod installed).
if [[ -z "${PYTHON:-}" ]]; then
  PYTHON=python3
  [[ -x "${DLRM_VENV:-$HOME/.cache/dlrm_tf2/venv}/bin/python" ]] &&
    PYTHON="${DLRM_VENV:-$HOME/.cache/dlrm_tf2/venv}/bin/python"
fi
export PYTHON
# horovodrun of that interpreter's environment.
if [[ -z "${HOROVODRUN:-}" ]]; then
  HOROVODRUN="$(dirname "$(command -v "$PYTHON" || echo python3)")/horovodrun"
  [[ -x "$HOROVODRUN" ]] || HOROVODRUN=horovodrun
fi
export HOROVODRUN
# TensorFlow thread pools per process (0 = TensorFlow's choice). With N processes on one host,
# cores / N keeps them from oversubscribing the CPU.
export INTER_OP_THREADS="${INTER_OP_THREADS:-0}"
export INTRA_OP_THREADS="${INTRA_OP_THREADS:-0}"
# Seconds a Gloo collective waits for a peer before the job fails instead of hanging.
export HOROVOD_GLOO_TIMEOUT_SECONDS="${HOROVOD_GLOO_TIMEOUT_SECONDS:-60}"
# TensorFlow C++ log level: 2 hides the start-up INFO lines.
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
# Memory a process may take on its accelerator, in GB (0 = no limit).
export DEVICE_MEMORY_LIMIT_GB="${DEVICE_MEMORY_LIMIT_GB:-0}"
# 1: dlrm_main.py restarts itself with glibc's huge-page tunable (tables on 2 MiB pages; see
# docs/internals.md, "Huge pages"); 0: it runs as started.
export DLRM_HUGE_PAGES="${DLRM_HUGE_PAGES:-1}"
