#!/usr/bin/env bash
# Install Tesseract OCR with the Hangul script model (Korean and Latin text, the default RAG_INGEST__OCR_LANGUAGES)
# and the kor and eng models from Debian, for scanned PDF pages and images
# (RAG_INGEST__OCR=auto uses it when present), and the Nanum fonts the OCR tests and benchmark render with.
# Usage: scripts/install_ocr.sh            (prints the tesseract path on success)
#
# OCR is optional: without it ingestion still runs and reports the files (or PDF pages) it skipped.
# Re-running is cheap: nothing is fetched while tesseract has kor and eng and the fonts are in place.
set -euo pipefail

fonts=/usr/share/fonts/truetype/nanum/NanumGothic.ttf
if command -v tesseract >/dev/null && tesseract --list-langs 2>/dev/null | grep -qx Hangul \
  && tesseract --list-langs 2>/dev/null | grep -qx kor \
  && tesseract --list-langs 2>/dev/null | grep -qx eng && [ -f "$fonts" ]; then
  command -v tesseract
  exit 0
fi
command -v apt-get >/dev/null || { echo "install_ocr.sh: apt-get is needed (Debian/Ubuntu)" >&2; exit 1; }
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "install_ocr.sh: run as root or install sudo" >&2; exit 1; }
  sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq >&2
$sudo apt-get install -y -qq --no-install-recommends tesseract-ocr tesseract-ocr-script-hang tesseract-ocr-kor \
  tesseract-ocr-eng \
  fonts-nanum fonts-dejavu-core >&2
tesseract --list-langs 2>/dev/null | grep -qx Hangul || { echo "install_ocr.sh: no Hangul data after install" >&2; exit 1; }
tesseract --version 2>&1 | head -1 >&2
command -v tesseract
