#!/usr/bin/env bash
# The ingestion benchmark's contenders (LangChain, LlamaIndex and their Chroma / Hugging Face adapters) in
# their own virtualenv, .venv-bench, layered over the project's .venv: their pins (huggingface_hub < 2) would
# move packages the project's own tests run with, so they never go into .venv itself. Also wrk (Debian), the
# HTTP load generator of benchmarks/service.py. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v wrk >/dev/null; then
  command -v apt-get >/dev/null || { echo "install_bench.sh: install wrk (benchmarks/service.py needs it)" >&2; exit 1; }
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends wrk >&2
fi
BASE=.venv
VENV=.venv-bench
test -x "$BASE/bin/python" || { echo "no $BASE: run scripts/install.sh first" >&2; exit 1; }
if [ ! -x "$VENV/bin/python" ]; then
  "$BASE/bin/python" -m venv "$VENV"
fi
site=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
base_site=$("$BASE/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
# After this venv's own packages: everything the project installed (torch, chromadb, sentence-transformers).
echo "$base_site" > "$site/zz-project-venv.pth"
# The adapters alone; their dependencies come from the project's venv (same as the bench extra's ranges).
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps \
  "langchain-chroma>=0.2,<2" "langchain-huggingface>=0.1,<2" \
  "llama-index-vector-stores-chroma>=0.4,<0.6" "llama-index-embeddings-huggingface>=0.5,<0.7"
"$VENV/bin/python" -c "import langchain_chroma, langchain_huggingface, llama_index.vector_stores.chroma, llama_index.embeddings.huggingface"
echo "$VENV ready"
