#!/usr/bin/env bash
# Install, ingest the bundled sample documents, and serve the API and web console on 127.0.0.1:8000.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install.sh run
export HF_HUB_OFFLINE=1 ANONYMIZED_TELEMETRY=False
.venv/bin/rag ingest examples/docs
exec .venv/bin/rag serve
