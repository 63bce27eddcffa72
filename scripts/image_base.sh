#!/usr/bin/env bash
# Make the base image localhost/debian:bookworm-py from the Debian mirror, for hosts that reach no
# image registry (where `FROM python:3.11-slim` cannot be pulled).
# Usage: scripts/image_base.sh [IMAGE]        (prints the image name on success)
#
# The result is Debian bookworm's minimal variant plus python3 (3.11), python3-venv and
# ca-certificates: what the Containerfile needs of a base (python3 -m venv, TLS roots).
# Re-running is cheap: nothing is built while the image exists.
# Environment: SUITE (default bookworm), MIRROR (default: mmdebstrap's, i.e. the host's apt sources).
set -euo pipefail

image="${1:-localhost/debian:bookworm-py}"
suite="${SUITE:-bookworm}"
if podman image exists "$image"; then
  echo "$image"
  exit 0
fi
command -v mmdebstrap >/dev/null || { echo "image_base.sh: mmdebstrap is needed (scripts/install_podman.sh)" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "image_base.sh: building $image from Debian $suite ..." >&2
# mmdebstrap reads the host's apt sources when MIRROR is empty: the mirror this host already trusts.
# shellcheck disable=SC2086  # MIRROR is one optional word
mmdebstrap --quiet --variant=minbase --include=python3,python3-venv,ca-certificates \
  "$suite" "$work/base.tar" ${MIRROR:-} >&2
podman import --quiet \
  --change 'CMD ["/bin/bash"]' \
  --change 'LABEL org.opencontainers.image.title=debian-py org.opencontainers.image.description="Debian minbase with python3, python3-venv, ca-certificates (mmdebstrap)"' \
  "$work/base.tar" "$image" >&2
echo "$image"
