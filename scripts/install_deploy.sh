#!/usr/bin/env bash
# Install the platform SDKs into their own virtualenv (.venv-deploy): what `make pipelines` renders
# deploy/ with (hera, kfp, kfp-kubernetes, kubeflow-katib) and what tests/deploy run `rag kserve` with
# (kserve). Usage: scripts/install_deploy.sh          (prints the venv's python on success)
#
# Why a separate virtualenv: these SDKs pin libraries that the main .venv has at other versions
# (kserve and kfp want protobuf 6 and pandas 2; kfp wants kubernetes < 31 and an exact requests;
# kubeflow-katib >= 0.17 wants protobuf < 5). In a venv of its own they resolve together.
#
# The versions are exact: the compiled pipeline records its kfp version, and tests/deploy compare a
# fresh render with the checked-in YAML. kubeflow-katib stays at 0.14, the newest release without a
# protobuf pin (0.15/0.16 pin protobuf 3, 0.17+ protobuf 4, both below kfp's >= 6.31); its Experiment
# models match 0.19's except the newer feasibleSpace.distribution, which deploy/ does not use.
#
# onprem-rag itself goes in without its dependencies (no torch): only what `rag`'s entry point imports
# at start-up is added, so `.venv-deploy/bin/rag kserve ...` runs; other commands need the main .venv.
# Re-running is cheap: nothing is reinstalled while the stamp matches this script.
# Environment: PYTHON (default python3), DEPLOY_VENV (default .venv-deploy).
set -euo pipefail
cd "$(dirname "$0")/.."

venv="${DEPLOY_VENV:-.venv-deploy}"
specs=(
  "hera==7.1.0"
  "kfp==2.17.3"
  "kfp-kubernetes==2.17.3"
  "kubeflow-katib==0.14.0"
  "kserve==0.21.0"
  # What `rag` imports at start-up (ui.cli, eval.cli, rag.config); the rest comes with kserve.
  "typer>=0.12,<1"
  "rich>=13,<16"
  "pydantic-settings>=2.6,<3"
  "jsonschema>=4.18,<5"
)
stamp="$venv/.installed"
want=$(cat "$0" | sha256sum | cut -c1-16)

if [ -x "$venv/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
  echo "$venv/bin/python"
  exit 0
fi

if [ ! -x "$venv/bin/python" ]; then
  "${PYTHON:-python3}" -m venv "$venv"
fi
pip="$venv/bin/python -m pip"
$pip install --quiet --disable-pip-version-check --upgrade "pip>=24" >&2
echo "installing the platform SDKs into $venv (a few minutes the first time) ..." >&2
# --prefer-binary: kfp-server-api ships only an sdist; everything else as wheels.
$pip install --quiet --disable-pip-version-check --prefer-binary "${specs[@]}" >&2
$pip install --quiet --disable-pip-version-check --no-deps -e . >&2
echo "$want" > "$stamp"
echo "$venv/bin/python"
