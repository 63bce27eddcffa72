"""Kubeflow Pipelines v2 (kfp SDK): ingest in parallel shards, then evaluate and gate, as one pipeline.

The same flow as the Argo template (``deploy/argo.py``) in KFP's terms: a ``dsl.ParallelFor`` over the shard
specs (``["0/4", "1/4", ...]``), documents from a NAS PVC (``docs_pvc``) or S3 (``docs_pvc`` empty), then
``rag eval run`` and ``rag eval report --min GATE``; a failed gate fails that task and the run. KFP cannot mount
a PVC named after a loop item, so the shards share one ReadWriteMany PVC for sync state, each writing its own
file (the worker names it by shard). Settings are read key by key from the chart's ConfigMap and an optional
Secret (KFP has no envFrom): the keys are every ``RAG_*`` variable of the sections these commands use.
Caching is off: a re-run must ingest what changed since the last one.
"""

# No `from __future__ import annotations`: kfp reads the components' annotations as types, not strings.
from typing import Any

from kfp import dsl, kubernetes
from pydantic import BaseModel, SecretStr

from deploy import commands as c
from rag.config import Settings

PIPELINE_NAME = "rag-ingest-eval"
# Sections of rag.config.Settings the ingest and eval commands read.
SECTIONS = ("data_dir", "log_level", "store", "embed", "chat", "retrieval", "ingest")


def setting_keys() -> tuple[list[str], list[str]]:
    """The ``RAG_*`` variables of :data:`SECTIONS`: (plain ones, from the ConfigMap; secret ones, from the Secret)."""
    plain: list[str] = []
    secret: list[str] = []
    for name in SECTIONS:
        field = Settings.model_fields[name]
        ann = field.annotation
        leaves = (
            [(f"RAG_{name.upper()}__{sub.upper()}", f.annotation) for sub, f in ann.model_fields.items()]
            if isinstance(ann, type) and issubclass(ann, BaseModel)
            else [(f"RAG_{name.upper()}", ann)]
        )
        for env, annotation in leaves:
            (secret if SecretStr in (annotation, *getattr(annotation, "__args__", ())) else plain).append(env)
    return plain, secret


def _configure(task: Any, config_map: Any, secret: Any, cpu: str, memory: str, limit: str) -> Any:
    """Settings, security context, resources and no caching for one task."""
    plain, secret_keys = setting_keys()
    kubernetes.use_config_map_as_env(task, config_map, {k: k for k in plain}, optional=True)
    kubernetes.use_secret_as_env(task, secret, {k: k for k in secret_keys}, optional=True)
    kubernetes.set_security_context(task, run_as_user=c.UID, run_as_group=c.UID, run_as_non_root=True)
    kubernetes.empty_dir_mount(task, volume_name="tmp", mount_path=c.TMP_MOUNT)
    task.set_cpu_request(cpu).set_memory_request(memory).set_memory_limit(limit)
    task.set_caching_options(False)
    return task


def build(image: str = c.IMAGE) -> Any:
    """The pipeline function (components bound to ``image``), ready for ``kfp.compiler``."""

    @dsl.container_component
    def ingest_shard(source: str, shard: str):  # type: ignore[no-untyped-def]
        """``rag ingest SOURCE --shard i/N``."""
        return dsl.ContainerSpec(image=image, command=c.ingest(source, shard))

    @dsl.container_component
    def eval_run(cases_file: str, target: str, run_id: str):  # type: ignore[no-untyped-def]
        """``rag eval run`` on the case file into the runs PVC, one folder per pipeline run."""
        dataset = dsl.ConcatPlaceholder([f"{c.CASES_MOUNT}/", cases_file])
        out = dsl.ConcatPlaceholder([f"{c.RUNS_MOUNT}/", run_id])
        return dsl.ContainerSpec(image=image, command=c.eval_run(dataset, target, out))

    @dsl.container_component
    def eval_gate(run_id: str, gate: str):  # type: ignore[no-untyped-def]
        """``rag eval report RUN --min GATE``: exit 3, failing the run, when the gate fails."""
        run = dsl.ConcatPlaceholder([f"{c.RUNS_MOUNT}/", run_id])
        return dsl.ContainerSpec(image=image, command=c.eval_report(run, gate))

    def ingest_all(source: Any, shards: Any, state_pvc: Any, docs_pvc: Any, config_map: Any, secret: Any) -> Any:
        """One ingest task per shard spec; the docs PVC is mounted when there is one."""
        with dsl.ParallelFor(shards, parallelism=0) as shard:
            task = ingest_shard(source=source, shard=shard).set_display_name("ingest shard")
            _configure(task, config_map, secret, "1", "3Gi", "6Gi")
            task.set_retry(num_retries=2)
            kubernetes.mount_pvc(task, pvc_name=state_pvc, mount_path=c.STATE_MOUNT)
            if docs_pvc is not None:
                kubernetes.mount_pvc(task, pvc_name=docs_pvc, mount_path=c.DOCS_MOUNT)
        return task

    @dsl.pipeline(
        name=PIPELINE_NAME,
        description="Ingest a source in parallel shards, then evaluate the collection; "
        "a failed quality gate fails the run.",
    )
    def ingest_eval(  # type: ignore[no-untyped-def]
        source: str = c.DOCS_MOUNT,
        shards: list = ["0/4", "1/4", "2/4", "3/4"],  # noqa: B006 - KFP records the default in the pipeline spec
        docs_pvc: str = "rag-docs",
        state_pvc: str = "rag-ingest-state",
        config_map: str = "onprem-rag-config",
        secret: str = "onprem-rag-env",
        cases_configmap: str = "rag-eval-cases",
        cases_file: str = c.CASES_FILE,
        runs_pvc: str = "rag-eval-runs",
        eval_target: str = c.EVAL_TARGET,
        gate: str = c.EVAL_GATE,
    ):
        """Shards of ``rag ingest``, then ``rag eval run`` and ``rag eval report --min``."""
        with dsl.If(docs_pvc != "", name="documents-on-a-pvc"):
            nas = ingest_all(source, shards, state_pvc, docs_pvc, config_map, secret)
        with dsl.Else(name="documents-in-s3"):
            s3 = ingest_all(source, shards, state_pvc, None, config_map, secret)
        run = eval_run(cases_file=cases_file, target=eval_target, run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER)
        run.set_display_name("eval run").after(nas, s3)
        _configure(run, config_map, secret, "1", "3Gi", "6Gi")
        kubernetes.use_config_map_as_volume(run, cases_configmap, mount_path=c.CASES_MOUNT)
        kubernetes.mount_pvc(run, pvc_name=runs_pvc, mount_path=c.RUNS_MOUNT)
        gate_task = eval_gate(run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER, gate=gate)
        gate_task.set_display_name("eval gate").after(run)
        _configure(gate_task, config_map, secret, "200m", "1Gi", "2Gi")
        kubernetes.mount_pvc(gate_task, pvc_name=runs_pvc, mount_path=c.RUNS_MOUNT)

    return ingest_eval


def compile_to(path: str, image: str = c.IMAGE) -> None:
    """Compile the pipeline to a YAML file (KFP's IR: a PipelineSpec and its Kubernetes platform spec)."""
    from kfp import compiler

    compiler.Compiler().compile(build(image), package_path=path)
