#!/usr/bin/env bash
# Install the third-party clients the conformance suite (tests/clients) drives against a real `rag serve`,
# where they cannot live in the project's .venv:
#   - LlamaIndex's OpenAILike (llama-index-llms-openai-like) in .venv-clients: it pins openai < 3,
#     older than the openai SDK the project's own dev extra uses;
#   - the official Node SDK (`openai` from npm) in .venv-clients/node (Node 20 or newer on PATH).
# Usage: scripts/install_clients.sh       (prints the virtualenv on success; cheap when up to date)
# Environment: PYTHON (default python3), CLIENTS_VENV (default .venv-clients), LLAMAINDEX_SPEC, NODE_OPENAI_SPEC.
set -euo pipefail
cd "$(dirname "$0")/.."

venv="${CLIENTS_VENV:-.venv-clients}"
py_spec="${LLAMAINDEX_SPEC:-llama-index-llms-openai-like>=0.8,<0.9}"
node_spec="${NODE_OPENAI_SPEC:-openai@^7}"
stamp="$venv/.installed"
want="$py_spec $node_spec"

if [ -x "$venv/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
  echo "$venv"
  exit 0
fi
if [ ! -x "$venv/bin/python" ]; then
  "${PYTHON:-python3}" -m venv "$venv"
fi
echo "installing $py_spec into $venv ..." >&2
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$py_spec" >&2
if ! command -v npm >/dev/null; then
  echo "npm not found: install Node 20 or newer (Debian: apt-get install nodejs npm)" >&2
  exit 1
fi
mkdir -p "$venv/node"
[ -f "$venv/node/package.json" ] || echo '{"name": "rag-conformance-clients", "private": true}' > "$venv/node/package.json"
echo "installing $node_spec into $venv/node ..." >&2
npm install --prefix "$venv/node" --no-audit --no-fund --silent "$node_spec" >&2
echo "$want" > "$stamp"
echo "$venv"
