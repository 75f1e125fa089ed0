#!/usr/bin/env bash
# Starts (first time) or attaches to (afterwards) the project's container.
#
# Usage: bash run_docker.sh [command ...]        (default: an interactive bash)
# Variables: IMAGE_NAME, IMAGE_TAG, CONTAINER_NAME, DEVICE (mlu|gpu|cpu), SHM_SIZE,
#            DATA_DIR and RAW_DATA_DIR (from env.sh; mounted at the same paths).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=env.sh
source "$ROOT/env.sh"

if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
  sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//'
  exit 0
fi

IMAGE_NAME="${IMAGE_NAME:-dlrm_tf2}"
IMAGE_TAG="${IMAGE_TAG:-latest}"
CONTAINER_NAME="${CONTAINER_NAME:-dlrm_tf2_${USER:-user}}"
SHM_SIZE="${SHM_SIZE:-64g}"
CMD=("$@")
[[ ${#CMD[@]} -eq 0 ]] && CMD=(bash)
# A terminal only when there is one: CI, cron, nohup and schedulers run without.
TTY=(-i)
[[ -t 0 && -t 1 ]] && TTY=(-it)

if docker container inspect "$CONTAINER_NAME" >/dev/null 2>&1; then
  # Created earlier: start it if stopped and attach, keeping its state.
  docker start "$CONTAINER_NAME" >/dev/null
  exec docker exec "${TTY[@]}" "$CONTAINER_NAME" "${CMD[@]}"
fi

device_flags=()
case "$DEVICE" in
  mlu)
    # Every MLU of the host, the control device, and cnmon for monitoring inside.
    for dev in /dev/cambricon_dev*; do
      [[ -e "$dev" ]] && device_flags+=(--device="$dev")
    done
    [[ ${#device_flags[@]} -eq 0 ]] && device_flags+=(--device=/dev/cambricon_dev0)
    device_flags+=(--device=/dev/cambricon_ctl -v /usr/bin/cnmon:/usr/bin/cnmon)
    ;;
  gpu) device_flags+=(--gpus all) ;;
  cpu) ;;
  *) echo "run_docker.sh: DEVICE must be mlu, gpu or cpu, got '$DEVICE'" >&2; exit 2 ;;
esac

mkdir -p "$DATA_DIR" "$RAW_DATA_DIR" "$MODEL_DIR"
exec docker run "${TTY[@]}" --name "$CONTAINER_NAME" \
  --network=host --ipc=host --shm-size="$SHM_SIZE" \
  "${device_flags[@]}" \
  -v "$RAW_DATA_DIR:$RAW_DATA_DIR" -v "$DATA_DIR:$DATA_DIR" -v "$MODEL_DIR:$MODEL_DIR" \
  -v "$ROOT:/workspace/dlrm" -w /workspace/dlrm \
  -e DATA_DIR -e RAW_DATA_DIR -e MODEL_DIR -e DEVICE \
  "$IMAGE_NAME:$IMAGE_TAG" "${CMD[@]}"
