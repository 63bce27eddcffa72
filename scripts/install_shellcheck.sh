#!/usr/bin/env bash
# Install shellcheck from Debian for the Containerfile and image script checks (tests/deploy/).
# Usage: scripts/install_shellcheck.sh        (prints the shellcheck path on success)
# Re-running is cheap: nothing is fetched while shellcheck is on PATH.
set -euo pipefail

if command -v shellcheck >/dev/null; then
  command -v shellcheck
  exit 0
fi
command -v apt-get >/dev/null || { echo "install_shellcheck.sh: apt-get is needed (Debian/Ubuntu)" >&2; exit 1; }
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "install_shellcheck.sh: run as root or install sudo" >&2; exit 1; }
  sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq >&2
$sudo apt-get install -y -qq --no-install-recommends shellcheck >&2
shellcheck --version >&2
command -v shellcheck
