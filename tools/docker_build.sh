#!/usr/bin/env bash
# Builds the project's Docker image from DOCKERFILE, reusing the Horovod wheels built before
# (by tools/setup_env.sh on this machine or by an earlier image build), so only the first
# build compiles Horovod; copies the image's new wheels back into the cache afterwards.
#
# Usage: bash tools/docker_build.sh [extra docker build arguments]
# Variables: IMAGE_NAME (dlrm_tf2), IMAGE_TAG (latest), FROM_IMAGE_NAME (base image; default
#   DOCKERFILE's), DLRM_CACHE_DIR (wheel cache, default ~/.cache/dlrm_tf2), CA_BUNDLE (PEM
#   file trusted only while building, default $PIP_CERT), and, when set, http_proxy,
#   https_proxy, no_proxy, PIP_INDEX_URL, PIP_EXTRA_INDEX_URL, PIP_TRUSTED_HOST (passed as
#   build args; none of them stays in the image).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
  sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'
  exit 0
fi
if ! docker info >/dev/null 2>&1; then
  echo "docker_build.sh: no Docker engine answers ('docker info' failed); start dockerd" \
    "(Debian: apt-get install docker.io)" >&2
  exit 1
fi

IMAGE="${IMAGE_NAME:-dlrm_tf2}:${IMAGE_TAG:-latest}"
CACHE="${DLRM_CACHE_DIR:-$HOME/.cache/dlrm_tf2}"
CA_BUNDLE="${CA_BUNDLE:-${PIP_CERT:-}}"
staged=()
cleanup() { [[ ${#staged[@]} -eq 0 ]] || rm -rf "${staged[@]}"; }
trap cleanup EXIT

# Wheels of this machine's cache into the build context (docker/cache/wheels/<key>/).
for dir in "$CACHE"/wheels/horovod-*; do
  [[ -d "$dir" && ! "$dir" == *.tmp ]] || continue
  target="$ROOT/docker/cache/wheels/$(basename "$dir")"
  [[ -e "$target" ]] && continue
  mkdir -p "$target"
  staged+=("$target")
  cp "$dir"/*.whl "$target/"
done
if [[ -n "$CA_BUNDLE" ]]; then
  [[ -f "$CA_BUNDLE" ]] || { echo "docker_build.sh: CA_BUNDLE $CA_BUNDLE is not a file" >&2; exit 2; }
  staged+=("$ROOT/docker/certs/build-ca-bundle.crt")
  cp "$CA_BUNDLE" "$ROOT/docker/certs/build-ca-bundle.crt"
fi

args=(--network=host -t "$IMAGE" -f "$ROOT/DOCKERFILE")
[[ -n "${FROM_IMAGE_NAME:-}" ]] && args+=(--build-arg "FROM_IMAGE_NAME=$FROM_IMAGE_NAME")
for name in http_proxy https_proxy no_proxy HTTP_PROXY HTTPS_PROXY NO_PROXY \
  PIP_INDEX_URL PIP_EXTRA_INDEX_URL PIP_TRUSTED_HOST; do
  [[ -n "${!name:-}" ]] && args+=(--build-arg "$name")  # the value comes from the environment
done
start=$SECONDS
docker build "${args[@]}" "$@" "$ROOT"
echo "== built $IMAGE in $((SECONDS - start)) s;" \
  "$(docker image inspect -f '{{.Size}}' "$IMAGE" | awk '{printf "%.2f GB", $1 / 1e9}')"

# The image's wheels back into the cache (existing ones are kept).
mkdir -p "$CACHE"
docker run --rm --network=none "$IMAGE" tar -C /opt/dlrm/cache -c wheels |
  tar -C "$CACHE" -x --skip-old-files
