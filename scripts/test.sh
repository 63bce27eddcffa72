#!/usr/bin/env bash
# Install what the tests need, then lint, type-check and run the whole test suite (what CI runs).
# Usage: scripts/test.sh [--fast] [pytest args]
#   --fast: no llama.cpp build, browser, Open WebUI or platform SDKs, and no linters: the unit, contract and
#           service tests that need none of them (markers slow, llm, browser, openwebui, deploy left out).
set -euo pipefail
cd "$(dirname "$0")/.."
fast=0
if [ "${1:-}" = "--fast" ]; then fast=1; shift; fi
export HF_HUB_OFFLINE=1 ANONYMIZED_TELEMETRY=False TOKENIZERS_PARALLELISM=false
if [ "$fast" = 1 ]; then
  scripts/install.sh fast
  scripts/install_helm.sh >/dev/null
  scripts/install_ocr.sh >/dev/null         # Debian tesseract-ocr (kor, eng) and fonts-nanum for tests/ingest OCR
  set -- -m "not slow and not llm and not browser and not openwebui and not deploy" "$@"
else
  scripts/install.sh dev
  scripts/install_helm.sh
  scripts/install_browser.sh >/dev/null     # Debian chromium for the browser tests (apt)
  scripts/install_ocr.sh >/dev/null         # Debian tesseract-ocr (kor, eng) and fonts-nanum for the OCR tests
  scripts/install_openwebui.sh >/dev/null   # Open WebUI in its own .venv-openwebui for the e2e check
  scripts/install_deploy.sh >/dev/null      # hera, kfp, kubeflow-katib, kserve in .venv-deploy (tests/deploy)
  scripts/install_clients.sh >/dev/null     # LlamaIndex's OpenAILike and the Node SDK in .venv-clients (tests/clients)
  echo "== ruff"; .venv/bin/ruff check .
  echo "== ruff format"; .venv/bin/ruff format --check .
  echo "== mypy"; .venv/bin/mypy
fi
echo "== pytest"
set +e
.venv/bin/pytest -q -ra "$@"
rc=$?
set -e
# pytest exits 5 when it collected no test: that is not a pass.
if [ "$rc" -eq 5 ]; then echo "no tests were collected" >&2; exit 1; fi
exit "$rc"
