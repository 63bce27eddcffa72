#!/usr/bin/env bash
# Build the onprem-rag container image with podman (`make image`).
# Usage: scripts/image.sh                    (prints IMAGE:TAG on success)
#
# Default, the air-gapped path: scripts/wheelhouse.sh collects the wheels on this host (which needs a
# package index) into wheelhouse/, then the image is built from them with no network at all
# (--network none). With INSTALL_FROM=index the build itself downloads instead (a connected build).
# Prints the build time and the image size at the end.
#
# Environment:
#   IMAGE          default localhost/onprem-rag; TAG default the project version (the chart's appVersion)
#   BASE_IMAGE     default localhost/debian:bookworm-py, made by scripts/image_base.sh when missing; where
#                  a registry is reachable e.g. docker.io/library/python:3.11-slim-bookworm
#   INSTALL_FROM   wheelhouse (default) or index
#   PYTHON         the interpreter that resolves the wheelhouse; default the first of python3,
#                  /usr/bin/python3, python3.X with the base image's minor version and no newer a release
#   EXTRAS, TORCH_SPEC, TORCH_INDEX_URL, TORCH_BUILD   as scripts/wheelhouse.sh (CPU torch by default)
#   CA_BUNDLE      INSTALL_FROM=index behind a TLS-intercepting proxy: this CA file replaces the build's
#                  /etc/ssl/certs/ca-certificates.crt (e.g. the host's own bundle)
#   PODMAN_RUNTIME, PODMAN_ULIMITS   see scripts/image_lib.sh
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/image_lib.sh
. scripts/image_lib.sh

scripts/install_podman.sh >/dev/null
image="${IMAGE:-localhost/onprem-rag}"
tag="${TAG:-$(project_version)}"
base="${BASE_IMAGE:-localhost/debian:bookworm-py}"
from="${INSTALL_FROM:-wheelhouse}"
extras="${EXTRAS:-all,eval}"
torch_spec="${TORCH_SPEC:-torch==2.13.0}"
torch_index="${TORCH_INDEX_URL-https://download.pytorch.org/whl/cpu}"
torch_build="${TORCH_BUILD-cpu}"

# An interpreter on this host that resolves for the base image's Python: the same minor version and no
# newer a release (a package may require, say, >=3.11.5, which a 3.11.2 image cannot install).
resolver_python() {
  local target candidate v
  target=$(pod run --rm --network none "${limits[@]}" --entrypoint python3 "$1" \
    -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')
  if [ -n "${PYTHON:-}" ]; then
    echo "$PYTHON"
    return
  fi
  for candidate in python3 /usr/bin/python3 "python${target%.*}"; do
    command -v "$candidate" >/dev/null || continue
    v=$("$candidate" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')
    if [ "${v%.*}" = "${target%.*}" ] && [ "${v##*.}" -le "${target##*.}" ]; then
      echo "$candidate"
      return
    fi
  done
  echo "image.sh: no Python ${target%.*} no newer than $target (the base image's) on this host: set PYTHON" >&2
  exit 1
}

mapfile -t limits < <(ulimit_args)
start=$(date +%s)
if [ "$base" = localhost/debian:bookworm-py ]; then
  scripts/image_base.sh "$base" >/dev/null
fi

args=(--file Containerfile --tag "$image:$tag" --layers
  --build-arg "BASE_IMAGE=$base" --build-arg "INSTALL_FROM=$from" --build-arg "EXTRAS=$extras"
  --build-arg "TORCH_SPEC=$torch_spec" --build-arg "TORCH_INDEX_URL=$torch_index"
  --build-arg "TORCH_BUILD=$torch_build" --build-arg "VERSION=$tag"
  --build-arg "REVISION=$(git rev-parse HEAD 2>/dev/null || true)"
  --build-arg "CREATED=$(date -u +%Y-%m-%dT%H:%M:%SZ)")
args+=("${limits[@]}")
case "$from" in
  wheelhouse)
    python=$(resolver_python "$base")
    PYTHON="$python" EXTRAS="$extras" TORCH_SPEC="$torch_spec" TORCH_INDEX_URL="$torch_index" TORCH_BUILD="$torch_build" \
      scripts/wheelhouse.sh wheelhouse
    # Nothing to download any more: prove it by building without a network.
    args+=(--network none)
    ;;
  index)
    args+=(--network host)
    [ -z "${CA_BUNDLE:-}" ] || args+=(--volume "$CA_BUNDLE:/etc/ssl/certs/ca-certificates.crt:ro")
    ;;
  *) echo "image.sh: INSTALL_FROM is wheelhouse or index, not '$from'" >&2; exit 2 ;;
esac

echo "image.sh: building $image:$tag from $base ($from) ..." >&2
pod build "${args[@]}" . >&2
end=$(date +%s)
size=$(pod image inspect --format '{{.Size}}' "$image:$tag")
echo "image.sh: $image:$tag built in $((end - start)) s (wheelhouse and base included), size $((size / 1000000)) MB" >&2
echo "$image:$tag"
