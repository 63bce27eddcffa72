#!/usr/bin/env bash
# Install Open WebUI into its own virtualenv (.venv-openwebui) for the Open WebUI end-to-end test.
# Usage: scripts/install_openwebui.sh          (prints the open-webui executable on success)
#
# Why a separate virtualenv: Open WebUI pins many libraries (fastapi, pydantic, chromadb, ...) at
# versions that conflict with ours; the test talks to it over HTTP only.
# Re-running is cheap: nothing is reinstalled while the stamp names the wanted spec.
# Environment: PYTHON (default python3; Open WebUI needs 3.11 or 3.12), OPENWEBUI_SPEC (default
# below), OPENWEBUI_VENV (default .venv-openwebui), TORCH_SPEC (default torch==2.13.0, the CPU build).
set -euo pipefail
cd "$(dirname "$0")/.."

spec="${OPENWEBUI_SPEC:-open-webui>=0.12.4,<0.13}"
venv="${OPENWEBUI_VENV:-.venv-openwebui}"
stamp="$venv/.installed"
exe="$venv/bin/open-webui"

if [ -x "$exe" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$spec" ]; then
  echo "$exe"
  exit 0
fi

if [ ! -x "$venv/bin/python" ]; then
  "${PYTHON:-python3}" -m venv "$venv"
fi
pip="$venv/bin/python -m pip"
$pip install --quiet --disable-pip-version-check --upgrade "pip>=24" >&2
# The CPU build of torch first (Open WebUI pulls sentence-transformers): an unpinned torch
# resolves to a multi-GB CUDA build.
if ! "$venv/bin/python" -c "import torch" 2>/dev/null; then
  echo "installing ${TORCH_SPEC:-torch==2.13.0} into $venv ..." >&2
  $pip install --quiet --disable-pip-version-check "${TORCH_SPEC:-torch==2.13.0}" >&2
fi
echo "installing $spec into $venv (several minutes) ..." >&2
$pip install --quiet --disable-pip-version-check "$spec" >&2
"$venv/bin/python" -c "import importlib.metadata as m; print('open-webui', m.version('open-webui'))" >&2
echo "$spec" > "$stamp"
echo "$exe"
