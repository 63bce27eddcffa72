#!/usr/bin/env bash
# Install podman, runc and mmdebstrap from Debian for building and testing the container image.
# Usage: scripts/install_podman.sh            (prints the podman path on success)
#
# Why runc: podman's default runtime (crun) fails on hosts with cgroups in hybrid mode; every podman
# call in scripts/image*.sh passes --runtime runc. mmdebstrap makes the base image from the Debian
# mirror where no image registry is reachable (scripts/image_base.sh).
# Re-running is cheap: nothing is fetched while the three commands are in place.
set -euo pipefail

if command -v podman >/dev/null && command -v runc >/dev/null && command -v mmdebstrap >/dev/null; then
  command -v podman
  exit 0
fi
command -v apt-get >/dev/null || { echo "install_podman.sh: apt-get is needed (Debian/Ubuntu)" >&2; exit 1; }
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "install_podman.sh: run as root or install sudo" >&2; exit 1; }
  sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq >&2
$sudo apt-get install -y -qq --no-install-recommends podman runc mmdebstrap >&2
podman --version >&2
command -v podman
