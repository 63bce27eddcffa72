#!/usr/bin/env bash
# Install the development extras, then lint, type-check and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install.sh dev
scripts/install_helm.sh
scripts/install_browser.sh >/dev/null     # Debian chromium for the browser tests (apt)
scripts/install_openwebui.sh >/dev/null   # Open WebUI in its own .venv-openwebui for the e2e check
scripts/install_deploy.sh >/dev/null      # hera, kfp, kubeflow-katib, kserve in .venv-deploy (tests/deploy)
export HF_HUB_OFFLINE=1 ANONYMIZED_TELEMETRY=False TOKENIZERS_PARALLELISM=false
echo "== ruff"; .venv/bin/ruff check .
echo "== ruff format"; .venv/bin/ruff format --check .
echo "== mypy"; .venv/bin/mypy
echo "== pytest"
set +e
.venv/bin/pytest -q -ra "$@"
rc=$?
set -e
# pytest exits 5 when it collected no test: that is not a pass.
if [ "$rc" -eq 5 ]; then echo "no tests were collected" >&2; exit 1; fi
exit "$rc"
