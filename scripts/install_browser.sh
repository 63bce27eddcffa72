#!/usr/bin/env bash
# Install headless Chromium and its driver from Debian for the browser tests (tests/ui/).
# Usage: scripts/install_browser.sh            (prints the chromium path on success)
#
# Why Debian's chromium and not `playwright install`: Playwright's browser downloads come from a CDN
# our machines and CI cannot reach; the Python package drives any Chromium given executable_path.
# Re-running is cheap: nothing is fetched while /usr/bin/chromium is in place.
# Environment: CHROMIUM (default /usr/bin/chromium).
set -euo pipefail

chromium="${CHROMIUM:-/usr/bin/chromium}"
if [ -x "$chromium" ]; then
  echo "$chromium"
  exit 0
fi
command -v apt-get >/dev/null || { echo "install_browser.sh: apt-get is needed (Debian/Ubuntu)" >&2; exit 1; }
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "install_browser.sh: run as root or install sudo" >&2; exit 1; }
  sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq >&2
$sudo apt-get install -y -qq --no-install-recommends chromium chromium-driver >&2
[ -x "$chromium" ] || { echo "install_browser.sh: $chromium missing after install" >&2; exit 1; }
"$chromium" --version >&2
echo "$chromium"
