"""The ``rag`` command lines the workflows run, and what the three platforms share: image, paths, settings.

Each function takes the platform's placeholders as plain strings (``{{inputs.parameters.x}}`` for Argo, a
pipeline channel for KFP, ``${trialParameters.x}`` for Katib) and returns the container's argv.
"""

from __future__ import annotations

from typing import Any

# The image the Containerfile builds (entry point `rag`); the chart's default repository and appVersion.
IMAGE = "registry.local/onprem-rag/onprem-rag:0.1.0"

# Where volumes are mounted in every pod (the image's RAG_DATA_DIR is /var/lib/rag; / is read-only).
DOCS_MOUNT = "/data/docs"
STATE_MOUNT = "/var/lib/rag"
CASES_MOUNT = "/cases"
RUNS_MOUNT = "/runs"
EVAL_DATA_MOUNT = "/eval"
TMP_MOUNT = "/tmp"

# The image runs as this user on a read-only root filesystem; volumes are made writable for its group.
UID = 10001

# The eval's defaults: the bundled extractive answerer needs no model server; the gate is a retrieval
# metric at the default cutoff (retrieval.k = 5), which a case file with gold sources measures.
EVAL_TARGET = "extractive://"
EVAL_GATE = "hit@5=0.8"
CASES_FILE = "cases.jsonl"


def ingest(source: Any, shard: Any) -> list[Any]:
    """``rag ingest SOURCE --shard i/N``: one shard of the source into the configured collection."""
    return ["rag", "ingest", source, "--shard", shard]


def eval_run(dataset: Any, target: Any, out: Any, *global_options: Any) -> list[Any]:
    """``rag eval run --dataset FILE -t TARGET --out DIR``: evaluate the collection, write a run folder."""
    return ["rag", *global_options, "eval", "run", "--dataset", dataset, "-t", target, "--out", out]


def eval_report(run: Any, gate: Any) -> list[Any]:
    """``rag eval report RUN --min METRIC=VALUE``: summarise the run; exit 3 (failing the step) on a failed gate."""
    return ["rag", "eval", "report", run, "--min", gate]


def with_globals(argv: list[Any], store: Any, collection: Any, embed: Any) -> list[Any]:
    """The same command with ``rag``'s global options (store URL, collection, embedder URL) in front."""
    return [argv[0], "--store", store, "--collection", collection, "--embed", embed, *argv[1:]]


def katib_trial(beir: str, variant: str, out: str) -> list[str]:
    """One Katib trial: ingest the BEIR corpus into memory, score retrieval with one setting, print metric lines.

    ``variant`` is a retrieval setting (``k=10,candidates=50,...``); ``--katib`` prints ``name=value`` lines
    for Katib's StdOut metrics collector.
    """
    return ["rag", "eval", "run", "--beir", beir, "--ingest", "--retrieval", "-t", variant, "--out", out, "--katib"]


def pod_security() -> dict[str, Any]:
    """The pod security context every workflow pod gets (as plain Kubernetes JSON)."""
    return {"runAsNonRoot": True, "runAsUser": UID, "runAsGroup": UID, "fsGroup": UID}


def container_security() -> dict[str, Any]:
    """The container security context: read-only root filesystem, no privilege escalation, no capabilities."""
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
