"""Argo Workflows (built with hera): a WorkflowTemplate that ingests in N shards, then gates on an eval; a CronWorkflow.

``rag-ingest-eval`` runs ``rag ingest SOURCE --shard i/N`` for i in 0..N-1 in parallel (documents from a NAS
PVC, or from S3 when ``docs-pvc`` is empty; each shard's sync state on its own PVC ``<state-pvc-prefix>-<i>``),
waits for all, then ``rag eval run`` on the case file and ``rag eval report RUN --min GATE``, whose exit code 3
on a failed gate fails the workflow. Settings come from the chart's ConfigMap (``RAG_*`` variables) and an
optional Secret. ``rag-ingest-eval-nightly`` submits it on a schedule (Argo 4: ``schedules``, a list).
"""

from __future__ import annotations

from typing import Any

from hera.workflows import (
    ConfigMapEnvFrom,
    Container,
    CronWorkflow,
    Parameter,
    Resources,
    RetryStrategy,
    SecretEnvFrom,
    Steps,
    WorkflowTemplate,
)
from hera.workflows import models as m

from deploy import commands as c

TEMPLATE_NAME = "rag-ingest-eval"
CRON_NAME = "rag-ingest-eval-nightly"
LABELS = {"app.kubernetes.io/name": "onprem-rag", "app.kubernetes.io/component": "ingest-eval"}

# (name, default, description): the workflow's parameters, as `argo submit -p NAME=VALUE` overrides them.
PARAMETERS = (
    ("image", "", "The onprem-rag image."),
    (
        "source",
        c.DOCS_MOUNT,
        f"What to ingest: a folder on the docs PVC (mounted at {c.DOCS_MOUNT}) or s3://bucket/prefix.",
    ),
    ("shards", "4", "Number of ingest pods; pod i runs `rag ingest SOURCE --shard i/N`."),
    ("docs-pvc", "rag-docs", "PVC with the documents (NAS), mounted read-only; empty for an s3:// source."),
    ("state-pvc-prefix", "rag-ingest-state", "Shard i keeps its sync state on the PVC <prefix>-<i>."),
    ("config-map", "onprem-rag-config", "ConfigMap of RAG_* settings (the chart's <release>-config)."),
    ("secret", "onprem-rag-env", "Optional Secret of RAG_* variables: S3 keys, store and model API keys."),
    ("cases-configmap", "rag-eval-cases", "ConfigMap holding the eval case file."),
    ("cases-file", c.CASES_FILE, "The case file's key in that ConfigMap (.jsonl or .yaml)."),
    ("runs-pvc", "rag-eval-runs", "PVC for eval run folders; each run in <workflow name>/."),
    ("eval-target", c.EVAL_TARGET, "Target of `rag eval run -t` (a chat backend URL or the service)."),
    ("gate", c.EVAL_GATE, "Quality gate METRIC=VALUE for `rag eval report --min`; failing it fails the workflow."),
)


def _p(name: str) -> str:
    return f"{{{{workflow.parameters.{name}}}}}"


def _pvc(name: str, claim: str, mount: str, read_only: bool = False) -> tuple[m.Volume, m.VolumeMount]:
    source = m.PersistentVolumeClaimVolumeSource(claim_name=claim, read_only=read_only or None)
    return m.Volume(name=name, persistent_volume_claim=source), m.VolumeMount(
        name=name, mount_path=mount, read_only=read_only or None
    )


def _tmp() -> tuple[m.Volume, m.VolumeMount]:
    return m.Volume(name="tmp", empty_dir=m.EmptyDirVolumeSource()), m.VolumeMount(name="tmp", mount_path=c.TMP_MOUNT)


def _container(name: str, command: list[Any], mounts: list[tuple[m.Volume, m.VolumeMount]], **kwargs: Any) -> Container:
    """A template running one ``rag`` command with the workflow's settings, volumes and security context."""
    mounts = [*mounts, _tmp()]
    return Container(
        name=name,
        image=_p("image"),
        command=command,
        env_from=[
            ConfigMapEnvFrom(name=_p("config-map"), optional=False),
            SecretEnvFrom(name=_p("secret"), optional=True),
        ],
        volumes=[v for v, _ in mounts],
        volume_mounts=[vm for _, vm in mounts],
        security_context=m.SecurityContext(**c.container_security()),
        **kwargs,
    )


def workflow_template(image: str = c.IMAGE) -> WorkflowTemplate:
    """The ``rag-ingest-eval`` WorkflowTemplate; ``image`` is the default of its ``image`` parameter."""
    defaults = {"image": image}
    with WorkflowTemplate(
        name=TEMPLATE_NAME,
        labels=LABELS,
        annotations={
            "workflows.argoproj.io/description": "Ingest a source in N parallel shards, then evaluate; "
            "a failed quality gate fails the workflow."
        },
        entrypoint="main",
        arguments=[Parameter(name=n, value=defaults.get(n, v), description=d) for n, v, d in PARAMETERS],
        security_context=m.PodSecurityContext(**c.pod_security()),
        pod_gc=m.PodGC(strategy="OnPodSuccess"),
    ) as wt:
        shard = f"{{{{inputs.parameters.index}}}}/{_p('shards')}"
        state = _pvc("state", f"{_p('state-pvc-prefix')}-{{{{inputs.parameters.index}}}}", c.STATE_MOUNT)
        ingest_kwargs: dict[str, Any] = {
            "inputs": [Parameter(name="index")],
            "resources": Resources(cpu_request="1", memory_request="3Gi", memory_limit="6Gi"),
            # 3 = a backend (store, embedder) was unavailable: worth another try; 1 = documents failed to parse.
            "retry_strategy": RetryStrategy(limit="2", expression="asInt(lastRetry.exitCode) == 3"),
        }
        ingest_nas = _container(
            "ingest-shard-nas",
            c.ingest(_p("source"), shard),
            [_pvc("docs", _p("docs-pvc"), c.DOCS_MOUNT, read_only=True), state],
            **ingest_kwargs,
        )
        ingest_s3 = _container("ingest-shard-s3", c.ingest(_p("source"), shard), [state], **ingest_kwargs)
        runs = _pvc("runs", _p("runs-pvc"), c.RUNS_MOUNT)
        run_folder = f"{c.RUNS_MOUNT}/{{{{workflow.name}}}}"
        cases = (
            m.Volume(name="cases", config_map=m.ConfigMapVolumeSource(name=_p("cases-configmap"))),
            m.VolumeMount(name="cases", mount_path=c.CASES_MOUNT, read_only=True),
        )
        eval_run = _container(
            "eval-run",
            c.eval_run(f"{c.CASES_MOUNT}/{_p('cases-file')}", _p("eval-target"), run_folder),
            [cases, runs],
            resources=Resources(cpu_request="1", memory_request="3Gi", memory_limit="6Gi"),
        )
        eval_gate = _container(
            "eval-gate",
            c.eval_report(run_folder, _p("gate")),
            [runs],
            resources=Resources(cpu_request="200m", memory_request="1Gi", memory_limit="2Gi"),
        )
        with Steps(name="main") as steps:
            sequence = m.Sequence(count=_p("shards"))
            with steps.parallel():
                ingest_nas(
                    name="ingest-nas",
                    arguments={"index": "{{item}}"},
                    with_sequence=sequence,
                    when=f"'{_p('docs-pvc')}' != ''",
                )
                ingest_s3(
                    name="ingest-s3",
                    arguments={"index": "{{item}}"},
                    with_sequence=sequence,
                    when=f"'{_p('docs-pvc')}' == ''",
                )
            eval_run(name="eval-run")
            eval_gate(name="eval-gate")
    return wt


def cron_workflow() -> CronWorkflow:
    """``rag-ingest-eval-nightly``: submits the template every night; a run still going blocks the next."""
    return CronWorkflow(
        name=CRON_NAME,
        labels=LABELS,
        schedules=["0 2 * * *"],
        concurrency_policy="Forbid",
        starting_deadline_seconds=3600,
        successful_jobs_history_limit=3,
        failed_jobs_history_limit=3,
        workflow_template_ref=m.WorkflowTemplateRef(name=TEMPLATE_NAME),
    )


def documents(image: str = c.IMAGE) -> dict[str, dict[str, Any]]:
    """The rendered objects by file name."""
    return {
        "argo/workflowtemplate.yaml": workflow_template(image).to_dict(),
        "argo/cronworkflow.yaml": cron_workflow().to_dict(),
    }
